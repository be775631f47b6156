"""The platform's use cases, one function each, over the adapters; no HTTP, no FastAPI."""
