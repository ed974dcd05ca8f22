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


class PolicyError(FacetraceError):
    """An action that the identification policy forbids (two-person rule, evidence...)."""

    code = "policy"
    status = 409
