"""The REST API (FastAPI): ``facetrace.api.app.create_app()``, served by ``facetrace serve``."""
