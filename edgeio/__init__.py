"""edgeio: shared core of the toolkit (errors, units, the results store)."""

__version__ = "0.1.0"
