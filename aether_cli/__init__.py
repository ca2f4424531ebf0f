"""aether: run any LLM agent indefinitely with bounded context."""

__version__ = "0.1.0"
