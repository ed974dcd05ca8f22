"""File-system helpers shared by every layer."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from facetrace.errors import FacetraceError
from facetrace.faults import fault_point


@contextmanager
def reading(label: str, error: type[FacetraceError] = FacetraceError, what: str = "a file") -> Iterator[None]:
    """Turn the OSError of reading the file ``label`` into one line of ``error`` (a user's error):
    "file not found", "is a folder, not ``what``" or "cannot read (why)".

    Raises:
        error: the file could not be read.
    """
    try:
        yield
    except FileNotFoundError:
        raise error(f"{label}: file not found") from None
    except IsADirectoryError:
        raise error(f"{label}: is a folder, not {what}") from None
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror})") from None


def read_bytes(path: Path, *, label: str | None = None, error: type[FacetraceError] = FacetraceError) -> bytes:
    """Return the bytes of the file at ``path``.

    Raises:
        error: the file is missing, a folder or unreadable (one line naming ``label``, default the path).
    """
    with reading(label or str(path), error):
        return path.read_bytes()


def atomic_write(path: Path, data: bytes, *, prefix: str | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of it:
    a temporary file in the same folder, fsync, then rename. Raises OSError (e.g. disk full)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        fault_point("write.before_replace")
        os.replace(tmp, path)
        fault_point("write.after_replace")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
