"""parallel-gateway: a caching, key-isolating gateway for Parallel's Task API."""

__version__ = "0.1.0"
