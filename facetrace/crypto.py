"""Encryption at rest with an operator-supplied key: AES-256-GCM from ``cryptography``.

Every encrypted value is self-describing::

    b"FTE1" | key id (8 bytes) | nonce (12 bytes) | ciphertext + GCM tag (16 bytes)

- The key id (the first 8 bytes of a domain-separated SHA-256 of the key) says which key sealed the
  value, so several keys can be live during a rotation and a rerun of an interrupted rotation knows
  what is left to do.
- The nonce is random per value (96 bits; at most about 2**32 values per key keep the collision
  chance negligible, far above the size of any gallery).
- The associated data binds a value to where it belongs (``"faces.embedding"``, ``"media:<path>"``):
  a ciphertext copied into another column or file fails authentication instead of decrypting.
- A value without the prefix is plaintext (written before a key was configured): it stays readable,
  so turning encryption on for an existing gallery works, and ``facetrace key rotate`` encrypts it.

Text columns hold ``"fte1:" + base64(...)`` of the same bytes. This module sits beside
``facetrace.fsutil`` below every layer: the index, the store and the CLI all use it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from facetrace.errors import ConfigError, FacetraceError

log = logging.getLogger(__name__)

MAGIC = b"FTE1"
TEXT_PREFIX = "fte1:"
KEY_BYTES = 32
KEY_ID_BYTES = 8
NONCE_BYTES = 12
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES
TAG_BYTES = 16


class DecryptionError(FacetraceError):
    """A stored value cannot be decrypted: its key is not configured, or the key or data is wrong."""

    code = "decryption_failed"
    status = 500


def key_id(key: bytes) -> bytes:
    """Return the 8-byte id of ``key`` (stored in each ciphertext; reveals nothing usable about the key)."""
    return hashlib.sha256(b"facetrace key id\x00" + key).digest()[:KEY_ID_BYTES]


def generate_key() -> bytes:
    """Return a new random 256-bit key."""
    return AESGCM.generate_key(bit_length=256)


def encode_key(key: bytes) -> str:
    """Return the base64 text form of a key (what a key file and ``FACETRACE_KEY`` hold)."""
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str, *, where: str) -> bytes:
    """Return the 32-byte key written as base64 in ``text``.

    Raises:
        ConfigError: ``text`` is not base64 of exactly 32 bytes (``where`` names its origin).
    """
    try:
        key = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: not a base64 key (create one with `facetrace key generate PATH`)") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{where}: the key must be 256 bits (32 bytes in base64), not {len(key)} bytes")
    return key


def read_key_file(path: Path, *, home: Path | None = None) -> bytes:
    """Return the key stored in the key file ``path``.

    Raises:
        ConfigError: the file is missing or unreadable, readable by other users (not mode 0600/0400),
            lies inside the data home ``home`` (the key must not be stored beside the data), or does not
            hold a base64 256-bit key.
    """
    path = Path(path).expanduser()
    if home is not None and _inside(path, home):
        raise ConfigError(
            f"key file {path} is inside the data home {home}: keep the key apart from the data it protects "
            "(another disk, a secrets mount, a hardware token)"
        )
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"key file {path} is not a regular file")
    if os.name == "posix" and info.st_mode & 0o077:
        raise ConfigError(
            f"key file {path} is readable by other users (mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from None
    return decode_key(text, where=f"key file {path}")


def write_key_file(path: Path, key: bytes) -> None:
    """Create the key file ``path`` (mode 0600) holding ``key`` in base64.

    Raises:
        ConfigError: the file exists already (a key is never overwritten) or cannot be created.
    """
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists: a key file is never overwritten (it may be the only copy)") from None
    except OSError as exc:
        raise ConfigError(f"cannot create key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(encode_key(key) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(Path(folder).expanduser().resolve())
    except OSError:
        return False


def is_encrypted(blob: bytes | None) -> bool:
    """Return whether ``blob`` is a facetrace ciphertext (else it is plaintext from before encryption)."""
    return blob is not None and len(blob) >= HEADER_BYTES + TAG_BYTES and blob[: len(MAGIC)] == MAGIC


def key_id_of(blob: bytes) -> bytes | None:
    """Return the key id inside ciphertext ``blob``; None for plaintext."""
    return blob[len(MAGIC) : len(MAGIC) + KEY_ID_BYTES] if is_encrypted(blob) else None


class Keyring:
    """The keys of one deployment: the first seals new values, every one of them opens values.

    An empty keyring means "no encryption": :meth:`seal` returns plaintext unchanged (and
    :meth:`open` still refuses ciphertexts, naming the key id they need).
    """

    def __init__(self, keys: Iterable[bytes] = ()) -> None:
        self._keys: dict[bytes, AESGCM] = {}
        self.primary_id: bytes | None = None
        for key in keys:
            if len(key) != KEY_BYTES:
                raise ConfigError(f"an encryption key must be {KEY_BYTES} bytes")
            kid = key_id(key)
            if kid not in self._keys:
                self._keys[kid] = AESGCM(key)
            if self.primary_id is None:
                self.primary_id = kid

    def plus(self, other: Keyring) -> Keyring:
        """Return a keyring that seals with this one's primary key and opens with the keys of both."""
        out = Keyring()
        out._keys = {**self._keys, **{k: v for k, v in other._keys.items() if k not in self._keys}}
        out.primary_id = self.primary_id
        return out

    @property
    def enabled(self) -> bool:
        """Whether new values are encrypted."""
        return self.primary_id is not None

    @property
    def key_ids(self) -> list[str]:
        """The hex ids of the keys held, the sealing key first."""
        return [kid.hex() for kid in self._keys]

    def is_current(self, blob: bytes | None) -> bool:
        """Return whether ``blob`` is as this keyring would write it now (sealed with the primary key, or
        plaintext when encryption is off); a rotation rewrites the other values."""
        if blob is None:
            return True
        return key_id_of(blob) == self.primary_id

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """Return ``plaintext`` encrypted with the primary key and bound to ``context``; unchanged when
        the keyring is empty."""
        if self.primary_id is None:
            return plaintext
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.primary_id].encrypt(nonce, plaintext, context)
        return MAGIC + self.primary_id + nonce + sealed

    def open(self, blob: bytes, context: bytes) -> bytes:
        """Return the plaintext of ``blob`` (returned as is when it is not a ciphertext).

        Raises:
            DecryptionError: the key that sealed it is not configured, or authentication failed (wrong
                key, tampered data, or a value moved from another column or file).
        """
        kid = key_id_of(blob)
        if kid is None:
            return blob
        aead = self._keys.get(kid)
        if aead is None:
            have = ", ".join(self.key_ids) or "none (set FACETRACE_KEY_FILE or FACETRACE_KEY)"
            raise DecryptionError(
                f"data encrypted with key {kid.hex()} but that key is not configured (keys configured: {have})"
            )
        nonce = blob[len(MAGIC) + KEY_ID_BYTES : HEADER_BYTES]
        try:
            return aead.decrypt(nonce, blob[HEADER_BYTES:], context)
        except InvalidTag:
            where = context.decode("utf-8", "replace")
            raise DecryptionError(f"{where}: stored data failed authentication (tampered or misplaced)") from None

    def seal_text(self, text: str, context: bytes) -> str:
        """Return ``text`` sealed as ``"fte1:" + base64``; unchanged when the keyring is empty."""
        if self.primary_id is None:
            return text
        return TEXT_PREFIX + base64.b64encode(self.seal(text.encode("utf-8"), context)).decode("ascii")

    def open_text(self, text: str, context: bytes) -> str:
        """Return the plaintext of a value written by :meth:`seal_text` (plaintext is returned as is).

        Raises:
            DecryptionError: as :meth:`open`, or a ``fte1:`` value that is not valid base64.
        """
        blob = text_blob(text)
        if blob is None:
            return text
        return self.open(blob, context).decode("utf-8")

    def is_current_text(self, text: str | None) -> bool:
        """As :meth:`is_current`, for a value of a text column."""
        if text is None:
            return True
        blob = text_blob(text)
        return self.primary_id is None if blob is None else self.is_current(blob)


def text_blob(text: str) -> bytes | None:
    """Return the ciphertext bytes of a sealed text value; None for plaintext.

    Raises:
        DecryptionError: the value has the ``fte1:`` prefix but is not valid base64.
    """
    if not text.startswith(TEXT_PREFIX):
        return None
    try:
        blob = base64.b64decode(text[len(TEXT_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError("an encrypted text value is damaged (not base64)") from None
    if not is_encrypted(blob):
        raise DecryptionError("an encrypted text value is damaged (no header)")
    return blob


def keyring_from(
    *, key_file: Path | None, key: str | None, previous_key_file: Path | None = None, home: Path | None = None
) -> Keyring:
    """Return the keyring of a deployment: ``key_file`` (else ``key``, base64) seals; ``key`` (when both are
    given) and ``previous_key_file`` only open values (a rotation in progress).

    Raises:
        ConfigError: a key file is refused (see :func:`read_key_file`) or a key is malformed.
    """
    keys: list[bytes] = []
    if key_file is not None:
        keys.append(read_key_file(key_file, home=home))
    if key:
        keys.append(decode_key(key, where="FACETRACE_KEY"))
    if previous_key_file is not None:
        if not keys:
            raise ConfigError("FACETRACE_PREVIOUS_KEY_FILE is set but no current key (FACETRACE_KEY_FILE)")
        keys.append(read_key_file(previous_key_file, home=home))
    return Keyring(keys)
