"""Services: plain functions over ports. Handlers call exactly one of them."""
