"""Discrete-event simulation of a CATO deployment (`cato-bench simulate`): virtual time,
replicas that follow an engine profile, and the server's own router, queues, slack
allocation and autoscaler objects driving them."""
