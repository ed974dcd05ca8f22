"""The web UI: server-rendered pages (Jinja2) for intake, examiners, reviewers, auditors and
administrators, over the same workflow, roles and audit trail as the API.

:data:`router` holds every page, the authenticated (and audited) routes of photos and face
crops, and the package's own static files; ``facetrace.api.app.create_app`` includes it.
"""

from facetrace.web.routes import router

__all__ = ["router"]
