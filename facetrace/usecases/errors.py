"""Errors the use-cases raise beyond :mod:`facetrace.errors`: each carries its code and status, so
that the API answers them as JSON and the web pages as HTML without knowing where they came from."""

from __future__ import annotations

from sqlalchemy.exc import DataError

from facetrace.errors import FacetraceError, ImageError


class UnsupportedMediaType(ImageError):
    """An upload whose content (sniffed from its bytes, not its name) is not a supported image."""

    code = "unsupported_media_type"
    status = 415


class InvalidRequest(FacetraceError):
    """A request that passed schema validation but is still unusable (a blank field, bad JSON text...)."""

    code = "invalid_request"
    status = 422


class Unauthorized(FacetraceError):
    """No valid credentials: an unknown, revoked or expired API token, or no sign-in at all."""

    code = "unauthorized"
    status = 401


def value_out_of_range(exc: BaseException) -> InvalidRequest | None:
    """Return a 422 error when ``exc`` is the database refusing a value the request carried (an
    integer past 64 bits on SQLite; on PostgreSQL also past its column's type, text past its
    column's length, or text with a NUL character), else None. The statement failed, so its
    transaction is rolled back: nothing is stored. Validating every field at the boundary would be
    nicer, but this also catches the next field nobody thought of.
    """
    if isinstance(exc, DataError) or (isinstance(exc, OverflowError) and "SQLite INTEGER" in str(exc)):
        return InvalidRequest(
            "a value in the request cannot be stored: a number out of range, text too long, or a NUL character"
        )
    return None
