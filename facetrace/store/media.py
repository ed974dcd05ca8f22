"""Content-addressed media folder: each original file is stored once, under its sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from facetrace.errors import NotFoundError
from facetrace.fsutil import atomic_write


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MediaStore:
    """Stores files as ``ab/cd/<sha256><suffix>`` below ``root``; writes are atomic."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def relative_path(self, sha256: str, suffix: str) -> str:
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}{suffix.lower()}"

    def put(self, data: bytes, suffix: str) -> tuple[str, str]:
        """Store ``data``; return (sha256, path relative to the media root). Idempotent."""
        digest = sha256_bytes(data)
        rel = self.relative_path(digest, suffix)
        target = self.root / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data, prefix=".tmp-")
        return digest, rel

    def path(self, rel: str) -> Path:
        """Return the absolute path of a stored file.

        Raises:
            NotFoundError: ``rel`` escapes the media folder or the file is missing.
        """
        target = (self.root / rel).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise NotFoundError("media path outside the media folder")
        if not target.is_file():
            raise NotFoundError(f"media file {rel} is missing")
        return target

    def read(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def delete(self, rel: str) -> bool:
        """Remove a stored file; return whether it existed."""
        target = self.root / rel
        existed = target.is_file()
        target.unlink(missing_ok=True)
        return existed

    def usage_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0
