"""`genaiops`: the console command for people and pipelines — upload a dataset and follow it, publish and wait for
events, run an experiment on this machine, list and decide approvals, open reports. A driving adapter like
functions/: it talks to the app only through storage, the bus and its HTTP routes, and reads the local stack's
settings by default."""
