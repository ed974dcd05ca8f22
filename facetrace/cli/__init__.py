"""Command line interface (``facetrace``)."""
