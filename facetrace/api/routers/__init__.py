"""One router per API resource, each mounted under ``/api/v1``."""
