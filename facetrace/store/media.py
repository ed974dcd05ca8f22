"""Content-addressed media folder: each original file is stored once, under its sha256.

With a key configured, each file is sealed (AES-256-GCM, :mod:`facetrace.crypto`) and bound to its
file name; the name stays the sha256 of the plaintext (see docs/security.md for what that reveals).
Files written before the key was set stay readable; ``facetrace key rotate`` seals them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from facetrace.crypto import Keyring
from facetrace.errors import NotFoundError
from facetrace.fsutil import atomic_write


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def media_context(name: str) -> bytes:
    """The associated data of an encrypted media file: its name (the plaintext's sha256 and suffix)."""
    return b"media:" + name.encode()


class MediaStore:
    """Stores files as ``ab/cd/<sha256><suffix>`` below ``root``; writes are atomic."""

    def __init__(self, root: Path, *, keyring: Keyring | None = None) -> None:
        self.root = Path(root)
        self.keyring = keyring or Keyring()

    def relative_path(self, sha256: str, suffix: str) -> str:
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}{suffix.lower()}"

    def put(self, data: bytes, suffix: str) -> tuple[str, str]:
        """Store ``data``; return (sha256, path relative to the media root). Idempotent."""
        digest = sha256_bytes(data)
        rel = self.relative_path(digest, suffix)
        target = self.root / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, self.keyring.seal(data, media_context(target.name)), prefix=".tmp-")
        return digest, rel

    def path(self, rel: str) -> Path:
        """Return the absolute path of a stored file (its bytes may be encrypted: use :meth:`read`).

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
        """Return the original bytes of a stored file, decrypted.

        Raises:
            NotFoundError: no such file in the media folder.
            DecryptionError: its key is not configured, or it fails authentication.
        """
        path = self.path(rel)
        return self.keyring.open(path.read_bytes(), media_context(path.name))

    def files(self) -> list[Path]:
        """Return every stored file (not the temporary files of unfinished writes), sorted."""
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))

    def reseal(self, path: Path) -> bool:
        """Rewrite one stored file sealed with the keyring's primary key (atomically); return False when it
        already was. Raises DecryptionError when its current key is not in the keyring."""
        data = path.read_bytes()
        if self.keyring.is_current(data):
            return False
        context = media_context(path.name)
        atomic_write(path, self.keyring.seal(self.keyring.open(data, context), context), prefix=".tmp-")
        return True

    def delete(self, rel: str) -> bool:
        """Remove a stored file; return whether it existed."""
        target = self.root / rel
        existed = target.is_file()
        target.unlink(missing_ok=True)
        return existed

    def usage_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0
