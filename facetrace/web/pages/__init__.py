"""The web pages, one module per area (mirroring :mod:`facetrace.api.routers`)."""
