"""Biometric media (authenticated, every view audited) and the web UI's own static files."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import FileResponse, Response

from facetrace.errors import NotFoundError
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Reader
from facetrace.web import images, services
from facetrace.web.deps import NO_STORE, view, web_router
from facetrace.web.render import STATIC_DIR

router = web_router()
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml", ".png": "image/png"}


@router.get("/media/images/{image_id}")
def media_image(image_id: int, actor: Reader, service: ServiceDep) -> Response:
    """A stored photo of a case or report, re-encoded (EXIF orientation applied, metadata
    dropped). Every view is audited."""
    ref = services.image_ref(service.db, image_id)
    rgb = images.load_rgb(service.gallery.media.read(ref.media_path), service.settings.max_pixels)
    data = images.encode_jpeg(rgb, max_side=2000)
    view(service, actor, "media.view", ref.records, kind="photo")
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


@router.get("/media/faces/{face_id}")
def media_face(face_id: int, request: Request, actor: Reader, service: ServiceDep) -> Response:
    """A face crop (``size`` pixels on its longer side, 64-800). Every view is audited."""
    try:
        size = max(64, min(int(request.query_params.get("size", "320")), 800))
    except ValueError:
        size = 320
    ref = services.face_ref(service.db, face_id)
    if ref.box is None:
        raise NotFoundError(f"no face {face_id}")
    rgb = images.load_rgb(service.gallery.media.read(ref.media_path), service.settings.max_pixels)
    data = images.face_crop_jpeg(rgb, ref.box, size=size)
    view(service, actor, "media.view", ref.records, kind="face crop")
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


@router.get("/static/{path:path}")
def static(path: str) -> Response:
    """The web UI's own scripts, styles and icons (shipped with the package)."""
    root = STATIC_DIR.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file() or target.suffix not in STATIC_TYPES:
        raise NotFoundError(f"no static file {path!r}")
    return FileResponse(
        target, media_type=STATIC_TYPES[target.suffix], headers={"Cache-Control": "public, max-age=3600"}
    )
