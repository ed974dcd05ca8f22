"""The server's gallery with what only the server's has (the analysis pool, enrollment of uploads,
the cheap index consistency check), for the routes and checks that use it."""

from __future__ import annotations

from facetrace.api.service import ServiceGallery
from facetrace.usecases.service import Service


def server_gallery(service: Service) -> ServiceGallery:
    """Return ``service``'s gallery, which the composition root builds as a :class:`ServiceGallery`."""
    gallery = service.gallery
    assert isinstance(gallery, ServiceGallery), "facetrace.server builds the service with a ServiceGallery"
    return gallery
