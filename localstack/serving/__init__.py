"""The local deployment target: each flow version served by promptflow's own serving app in a process of its own
(flow_server.py), each endpoint an A/B router in front of its deployments (ab_router.py). Driven by
localstack/deployment/local_deployer.py; both start in a second or a few, listen on 127.0.0.1 only, and stop with
their whole process group."""
