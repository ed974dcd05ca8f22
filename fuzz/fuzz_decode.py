"""Fuzz target: the still-image decoder (``facetrace.vision.decode.decode_image``).

Any input must either decode to an RGB ``uint8`` array of at most ``MAX_PIXELS`` pixels, or
raise a :class:`facetrace.errors.FacetraceError` (what a user sees as a clear error). Any
other exception, a failed check, a hang or a memory blow-up is a crash. See ``fuzz/README.md``.

    .venv/bin/python fuzz/fuzz_decode.py -max_total_time=300 CORPUS_COPY fuzz/corpus/decode
"""

from __future__ import annotations

import sys
from typing import Any

# A small limit keeps each run fast; the guard is the same code whatever the limit.
MAX_PIXELS = 1_000_000

_decode: Any = None
_error: type[Exception] = Exception


def load() -> None:
    """Import the code under test (inside ``atheris.instrument_imports`` when fuzzing)."""
    global _decode, _error
    from facetrace.errors import FacetraceError
    from facetrace.vision.decode import decode_image

    _decode, _error = decode_image, FacetraceError


def check(data: bytes) -> None:
    """Decode ``data``; return when it is handled correctly, raise (a crash) when not.

    Raises:
        AssertionError: the decoded array is not RGB uint8 within the pixel limit.
        Exception: anything the decoder raised that is not a FacetraceError.
    """
    if _decode is None:
        load()
    try:
        image = _decode(data, max_pixels=MAX_PIXELS, name="fuzz")
    except _error:
        return
    assert image.dtype.name == "uint8", image.dtype
    assert image.ndim == 3 and image.shape[2] == 3, image.shape
    assert 0 < image.shape[0] * image.shape[1] <= MAX_PIXELS, image.shape
    assert image.flags["C_CONTIGUOUS"]


def main() -> None:
    import warnings

    import atheris

    # Libraries warn about every odd field of a hostile file: noise, thousands of times a second.
    warnings.simplefilter("ignore")

    # Pillow's format plugins (header parsing) and our own code are Python: instrument them.
    with atheris.instrument_imports(include=["PIL", "facetrace"]):
        load()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
