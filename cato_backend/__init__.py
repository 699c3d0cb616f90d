"""CATO backend: SLA-aware serving of coding tasks over a pool of LLM replicas."""

__version__ = "0.1.0"
