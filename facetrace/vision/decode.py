"""Decode still images safely into RGB ``uint8`` arrays.

Pillow does the decoding; the pixel limit is checked from the header, before any pixel is
decoded, so that a decompression bomb never allocates its full size.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from facetrace.errors import ImageError, ImageTooLargeError
from facetrace.fsutil import reading

if TYPE_CHECKING:  # the pipeline decodes with this module
    from facetrace.vision.pipeline import Face

DEFAULT_MAX_PIXELS = 50_000_000
# Formats we accept; MPO is what many cameras write for JPEG.
ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"}
# The Pillow plugins allowed to open a file (the JPEG plugin opens MPO files too).
OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}

# Never silently accept a truncated file: a half-decoded face gives a wrong embedding.
ImageFile.LOAD_TRUNCATED_IMAGES = False
EXIF_ORIENTATION = 0x0112
ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class ImageInput:
    """An encoded image and the name it came with (a file name, an upload's name): what enrollment,
    search and analysis take. Files are read into one at the edges (command line, manifests, jobs).

    ``faces``: the image's faces, largest first, when the same engine already analysed it (an intake
    form checks each photo before it is stored), so that it is not analysed twice; None: not yet.
    """

    name: str
    data: bytes
    faces: tuple[Face, ...] | None = None

    @classmethod
    def read(cls, path: str | Path) -> ImageInput:
        """Return the bytes of the file at ``path``, named by its file name.

        Raises:
            OSError: the file cannot be read.
        """
        path = Path(path)
        return cls(path.name, path.read_bytes())


def image_width_height(data: bytes, *, oriented: bool) -> tuple[int, int]:
    """Return (width, height) of an encoded image, reading only its header.

    ``oriented``: as displayed, with the EXIF orientation applied (the frame face boxes are measured
    in); else the stored pixel grid (what the image records of the gallery hold).

    Raises:
        ImageError: the header cannot be read.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            orientation = img.getexif().get(EXIF_ORIENTATION, 1) if oriented else 1
    except Exception as exc:
        raise ImageError(f"cannot read the image: {exc}") from None
    return (height, width) if orientation in ROTATING_ORIENTATIONS else (width, height)


def sniff_image_format(data: bytes) -> str | None:
    """Return the image format named by the file's magic bytes, or None when unknown."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes into an RGB ``uint8`` array of shape (H, W, 3).

    EXIF orientation is applied; grayscale, palette, CMYK and alpha images become RGB
    (alpha is composited on white). For animated GIFs the first frame is used.

    Raises:
        ImageError: empty data, not an image, an unsupported format, or a truncated file.
        ImageTooLargeError: more than ``max_pixels`` pixels (a decompression bomb guard).
    """
    if not data:
        raise ImageError(f"{name}: empty file")
    if sniff_image_format(data) is None:
        raise ImageError(f"{name}: not a supported image (JPEG, PNG, WebP, BMP, TIFF or GIF)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only our formats' plugins may parse the file: a damaged JPEG must not fall through
            # to Pillow's other plugins (more code reading hostile bytes, for nothing).
            img = Image.open(io.BytesIO(data), formats=OPEN_FORMATS)
            if img.format not in ACCEPTED_FORMATS:
                raise ImageError(f"{name}: unsupported image format {img.format}")
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageError(f"{name}: image has no pixels")
            if width * height > max_pixels:
                raise ImageTooLargeError(f"{name}: {width}x{height} pixels exceeds the limit of {max_pixels:,} pixels")
            img.seek(0)
            img.load()
            oriented: Image.Image = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb(oriented)
    except (ImageError, ImageTooLargeError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses a header over its own limit before ours is checked: say ours, not Pillow's.
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
        size = re.search(r"\((\d+) pixels\)", str(exc))
        image = f"image of {size.group(1)} pixels" if size else "image"
        raise ImageTooLargeError(f"{name}: {image} exceeds the limit of {limit:,} pixels") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = "truncated or corrupt" if "truncated" in str(exc) or isinstance(exc, EOFError) else str(exc)
        raise ImageError(f"{name}: cannot decode image ({reason})") from None
    except Exception as exc:
        # Pillow's format plugins raise other exceptions too on hostile files (a TIFF strip
        # offset of the wrong type gives TypeError: found by fuzz/fuzz_decode.py). Whatever
        # the type, the file is corrupt: say so rather than fail with an internal error.
        raise ImageError(f"{name}: cannot decode image (corrupt file: {type(exc).__name__})") from None
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max() if arr.size and arr.max() > 0 else 1.0
        # Clipped: a 32-bit image may hold negative values, which a cast to uint8 would wrap.
        return Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode the image file at ``path`` (see :func:`decode_image`).

    Raises:
        ImageError: the file is missing, unreadable, or not a usable image.
        ImageTooLargeError: the image has more than ``max_pixels`` pixels.
    """
    path = Path(path)
    with reading(path.name, ImageError, "an image"):
        data = path.read_bytes()
    return decode_image(data, max_pixels=max_pixels, name=path.name)
