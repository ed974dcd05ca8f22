"""File-system helpers shared by every layer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from facetrace.faults import fault_point


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
