"""Production monitoring: the requests a deployment served (production logs) and the statistics watched over them."""
