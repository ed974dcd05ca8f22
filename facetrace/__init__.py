"""facetrace: self-hosted face identification for humanitarian identification."""

__version__ = "0.1.0"
