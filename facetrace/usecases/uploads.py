"""Uploaded images as the use-cases take them: read within a limit, their type sniffed from their
bytes (the client's file name and content type are not trusted), and a safe file name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Protocol

from facetrace.errors import ImageError, ImageTooLargeError
from facetrace.usecases.errors import UnsupportedMediaType
from facetrace.vision.decode import sniff_image_format

SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}


class ImageSource(Protocol):
    """An image a use-case reads when it needs it (inside its audit, so that a refusal is recorded)."""

    def read(self, limit: int) -> tuple[bytes, str]:
        """Return the image's bytes and a safe file name. Raises ImageError subclasses."""
        ...


@dataclass(frozen=True)
class UploadedImage:
    """An uploaded file, not read yet: its binary stream and the name the client gave it."""

    file: BinaryIO
    filename: str | None

    def read(self, limit: int) -> tuple[bytes, str]:
        """Read the upload; return its bytes and a safe file name with the suffix of its sniffed type.

        Raises:
            ImageTooLargeError: more than ``limit`` bytes.
            ImageError: empty.
            UnsupportedMediaType: the bytes are not a supported image format.
        """
        data = self.file.read(limit + 1)
        name = safe_name(self.filename or "upload", default="upload")
        if len(data) > limit:
            raise ImageTooLargeError(f"{name}: larger than the upload limit of {limit:,} bytes")
        if not data:
            raise ImageError(f"{name}: empty file")
        kind = sniff_image_format(data)
        if kind is None:
            raise UnsupportedMediaType(f"{name}: not a supported image (JPEG, PNG, WebP, BMP, TIFF or GIF)")
        stem = name.rsplit(".", 1)[0] if "." in name else name
        return data, (stem or "upload") + SUFFIXES[kind]


@dataclass(frozen=True)
class ImageBytes:
    """An image already read and checked (by :meth:`UploadedImage.read`)."""

    data: bytes
    name: str

    def read(self, limit: int) -> tuple[bytes, str]:
        """Return the bytes and name as they were read (``limit`` was applied then)."""
        return self.data, self.name


def safe_name(name: str, *, default: str) -> str:
    """Return the last part of a client's file name with only safe characters (``default`` if none)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c if c.isalnum() or c in "._- " else "_" for c in base).strip(" .")
    return cleaned[:150] or default
