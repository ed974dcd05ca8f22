"""Errors that reach a user: each carries a stable code and a one-line message.

The CLI prints them as one line on stderr, the API as ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations


class FacetraceError(Exception):
    """Base of every error meant for a user. ``status`` is the HTTP status the API uses."""

    code = "error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImageError(FacetraceError):
    """An input image that cannot be used: not an image, truncated, empty or too large."""

    code = "bad_image"
    status = 422


class ImageTooLargeError(ImageError):
    code = "image_too_large"
    status = 413


class VideoError(FacetraceError):
    code = "bad_video"
    status = 422


class VideoTooLargeError(VideoError):
    """A video over the configured limits (file size, duration, resolution or frame count)."""

    code = "video_too_large"
    status = 413


class CancelledError(FacetraceError):
    """A long job (e.g. a video search) stopped because its caller asked it to."""

    code = "cancelled"
    status = 409


class NoFaceError(FacetraceError):
    code = "no_face"
    status = 422


class PoorQualityError(FacetraceError):
    """A face too poor to compare (below ``FACETRACE_MIN_QUALITY``): it would only add false matches."""

    code = "poor_quality"
    status = 422


class ManifestError(FacetraceError):
    code = "bad_manifest"
    status = 422


class NotFoundError(FacetraceError):
    code = "not_found"
    status = 404


class ConflictError(FacetraceError):
    code = "conflict"
    status = 409


class ConfigError(FacetraceError):
    code = "config"
    status = 500


class PermissionDenied(FacetraceError):
    code = "forbidden"
    status = 403


class DiskFullError(FacetraceError):
    """A write failed because the disk (or the user's quota) is full: nothing half-written was kept."""

    code = "disk_full"
    status = 507


#: errno values of a full disk or an exhausted quota.
_DISK_FULL_ERRNOS = {28, 122}  # ENOSPC, EDQUOT (Linux)


def disk_full_error(exc: BaseException, where: str = "") -> DiskFullError | None:
    """Return a :class:`DiskFullError` when ``exc`` (or its cause) says the disk or quota is full, else None.

    Recognises OSError ENOSPC/EDQUOT, SQLite's SQLITE_FULL and PostgreSQL's disk_full (SQLSTATE 53100),
    also when wrapped by SQLAlchemy (``exc.orig``).
    """
    seen: BaseException | None = exc
    for _ in range(4):  # the exception, SQLAlchemy's driver error, and their causes
        if seen is None:
            break
        if isinstance(seen, DiskFullError):
            return seen
        full = (
            (isinstance(seen, OSError) and seen.errno in _DISK_FULL_ERRNOS)
            or getattr(seen, "sqlite_errorcode", None) == 13  # SQLITE_FULL
            or getattr(seen, "sqlstate", None) == "53100"
            # SQLite's message, and C++ libraries (FAISS) that report strerror in a RuntimeError
            or any(text in str(seen) for text in ("database or disk is full", "No space left", "Disk quota exceeded"))
        )
        if full:
            place = f" ({where})" if where else ""
            return DiskFullError(f"the disk is full{place}: free some space, then run the same command again")
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


class PolicyError(FacetraceError):
    """An action that the identification policy forbids (two-person rule, evidence...)."""

    code = "policy"
    status = 409
