"""Fuzz target: the enroll manifest parser (``facetrace.gallery.sources.read_manifest``) and the
API import path (``facetrace.usecases.jobs.extract_archive`` then ``import_items``).

An input starting with ``PK`` is an uploaded zip archive; anything else is the text of a CSV
manifest. Either must give enroll items and refused rows, or raise a
:class:`facetrace.errors.FacetraceError`; no item may name an image outside the manifest's (or
the archive's) folder, and nothing may be written outside it. Any other exception, a failed
check, a hang or a memory blow-up is a crash. See ``fuzz/README.md``.

    .venv/bin/python fuzz/fuzz_manifest.py -max_total_time=300 CORPUS_COPY fuzz/corpus/manifest
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

MAX_ARCHIVE_BYTES = 1 << 20

_mod: dict[str, Any] = {}
_work: Path | None = None


def load() -> None:
    """Import the code under test (inside ``atheris.instrument_imports`` when fuzzing)."""
    from facetrace.errors import FacetraceError
    from facetrace.gallery.sources import read_manifest
    from facetrace.usecases.jobs import extract_archive, import_items

    _mod.update(read_manifest=read_manifest, extract=extract_archive, import_items=import_items, error=FacetraceError)


def _workdir() -> Path:
    global _work
    if _work is None:
        _work = Path(tempfile.mkdtemp(prefix="facetrace-fuzz-manifest-"))
        atexit.register(shutil.rmtree, _work, True)
    return _work


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _check_items(items: list[Any], folder: Path) -> None:
    for item in items:
        assert item.external_id and item.name and item.source and item.legal_basis, item
        for image in item.images:
            assert _inside(image, folder), f"{image} is outside {folder}"


def check(data: bytes) -> None:
    """Parse ``data`` as a manifest or import archive; raise (a crash) when it is mishandled.

    Raises:
        AssertionError: an item names an image outside the folder, or a file was written outside it.
        Exception: anything raised that is not a FacetraceError.
    """
    if not _mod:
        load()
    work = _workdir()
    # Each run gets a fresh folder inside a fixed parent: whatever it leaves is removed next run.
    shutil.rmtree(work / "in", ignore_errors=True)
    folder = work / "in" / "upload"
    folder.mkdir(parents=True)
    (work / "in" / "outside.jpg").write_bytes(b"")  # a file a traversal could name
    error = _mod["error"]
    try:
        if data.startswith(b"PK"):
            source = folder / "archive.zip"
            source.write_bytes(data)
            dest = folder / "x"
            dest.mkdir()
            try:
                _mod["extract"](source, dest, max_bytes=MAX_ARCHIVE_BYTES)
                items, _problems = _mod["import_items"](dest, {"source": "fuzz", "legal_basis": "fuzz"})
            finally:
                written = [Path(root) / name for root, dirs, files in os.walk(work / "in") for name in dirs + files]
                extra = [p for p in written if not _inside(p, folder) and p.name != "outside.jpg"]
                assert not extra, f"written outside the upload folder: {extra}"
                assert (work / "in" / "outside.jpg").read_bytes() == b"", "a file outside was overwritten"
            _check_items(items, dest)
        else:
            manifest = folder / "manifest.csv"
            manifest.write_bytes(data)
            items, problems = _mod["read_manifest"](manifest)
            _check_items(items, folder)
            assert all(p.where and p.message for p in problems)
    except error as exc:
        # The CLI prints the message as one line; the API puts it in a JSON body.
        assert exc.message.strip() and "\n" not in exc.message, repr(exc.message)


def main() -> None:
    import warnings

    import atheris

    # Libraries warn about every odd field of a hostile file: noise, thousands of times a second.
    warnings.simplefilter("ignore")

    with atheris.instrument_imports(include=["csv", "zipfile", "facetrace"]):
        load()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
