"""bayou: document information extraction with H2OVL-Mississippi."""

__version__ = "0.1.0"
