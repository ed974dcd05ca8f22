"""Pictures for the web pages and the PDF export: photos re-encoded without their metadata,
face crops, and photos with face boxes drawn.

Photos are decoded with the engine's own decoder (EXIF orientation applied, pixel limit
enforced), so that face boxes, which the engine measured on the oriented image, line up.
Re-encoding also drops EXIF metadata (GPS positions, camera serials) from what is shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from facetrace.errors import ImageError
from facetrace.vision.decode import decode_image


def load_rgb(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode an image to oriented RGB pixels. Raises ImageError."""
    return decode_image(data, max_pixels=max_pixels)


def _fit(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    height, width = rgb.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(rgb: np.ndarray, *, max_side: int | None = None, quality: int = 88) -> bytes:
    """Return JPEG bytes of RGB pixels, scaled down to ``max_side`` when larger."""
    out = _fit(rgb, max_side)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError("cannot encode the image")
    return bytes(buf)


def crop_box(rgb: np.ndarray, box: Sequence[int], *, margin: float = 0.4) -> np.ndarray:
    """Return the face at ``box`` (left, top, right, bottom) with ``margin`` of its size around it,
    clipped to the image."""
    height, width = rgb.shape[:2]
    left, top, right, bottom = (int(v) for v in box[:4])
    pad_x = int((right - left) * margin)
    pad_y = int((bottom - top) * margin)
    x0, y0 = max(0, left - pad_x), max(0, top - pad_y)
    x1, y1 = min(width, right + pad_x), min(height, bottom + pad_y)
    if x1 <= x0 or y1 <= y0:
        raise ImageError("the face box lies outside the image")
    return rgb[y0:y1, x0:x1]


def face_crop_jpeg(rgb: np.ndarray, box: Sequence[int], *, size: int = 400) -> bytes:
    """Return a JPEG of the face at ``box`` scaled so that its longer side is ``size`` pixels
    (small faces are scaled up, so that examiners compare them at the same size)."""
    crop = crop_box(rgb, box)
    height, width = crop.shape[:2]
    scale = size / max(height, width)
    interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    resized = cv2.resize(
        crop, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=interpolation
    )
    return encode_jpeg(resized, quality=90)


def draw_boxes(
    rgb: np.ndarray,
    boxes: Sequence[Sequence[int]],
    *,
    labels: Sequence[str] | None = None,
    highlight: int | None = None,
) -> np.ndarray:
    """Return a copy of ``rgb`` with numbered face boxes drawn (``highlight`` in green, others in
    amber), for the PDF export where no SVG overlay is possible."""
    out = rgb.copy()
    thickness = max(2, round(max(out.shape[:2]) / 250))
    for n, box in enumerate(boxes):
        left, top, right, bottom = (int(v) for v in box[:4])
        colour = (46, 160, 67) if highlight is None or n == highlight else (230, 160, 0)
        cv2.rectangle(out, (left, top), (right, bottom), colour, thickness)
        label = labels[n] if labels else str(n + 1)
        scale = max(0.5, thickness / 3)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, thickness // 2))
        y = max(th + 4, top - 4)
        cv2.rectangle(out, (left, y - th - 4), (left + tw + 4, y + 2), colour, -1)
        cv2.putText(
            out, label, (left + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, thickness // 2)
        )
    return out
