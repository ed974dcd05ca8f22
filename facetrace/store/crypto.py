"""Encrypted database columns: SQLAlchemy types that seal values with the deployment's keyring.

The keyring belongs to the engine (``engine.dialect.facetrace_keyring``, set by
:class:`facetrace.store.db.Database`), so two databases with different keys can be open in one process.
Every value is bound to its table and column (the GCM associated data), so a ciphertext moved into
another column does not decrypt. Plaintext values (written before a key was configured) are read as
they are; ``facetrace key rotate`` rewrites them.

Encrypted columns cannot be searched by value (each encryption uses a fresh nonce): no query of
facetrace filters or sorts on them.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, LargeBinary, String, Text
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.types import TypeDecorator, TypeEngine

from facetrace.crypto import TEXT_PREFIX, Keyring

_NO_KEYS = Keyring()
_ATTRIBUTE = "facetrace_keyring"


def attach_keyring(engine: Engine, keyring: Keyring) -> None:
    """Make ``engine``'s encrypted columns seal and open values with ``keyring``."""
    setattr(engine.dialect, _ATTRIBUTE, keyring)


def keyring_of(dialect: Dialect) -> Keyring:
    """Return the keyring attached to ``dialect`` (an empty one when none is)."""
    keyring = getattr(dialect, _ATTRIBUTE, None)
    return keyring if isinstance(keyring, Keyring) else _NO_KEYS


class EncryptedBytes(TypeDecorator[bytes]):
    """Binary values (e.g. float32 templates) sealed with AES-256-GCM; stored as a BLOB / BYTEA."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context
        self._aad = context.encode()

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        return None if value is None else keyring_of(dialect).seal(bytes(value), self._aad)

    def process_result_value(self, value: Any, dialect: Dialect) -> bytes | None:
        return None if value is None else keyring_of(dialect).open(bytes(value), self._aad)


class EncryptedText(TypeDecorator[str]):
    """Text values sealed as ``"fte1:" + base64``.

    ``length`` is the column's declared length on SQLite (which does not enforce it, so existing
    files keep their schema); elsewhere the column is TEXT, as ciphertext is about 4/3 of the
    plaintext plus 60 characters (migration ``0005``).
    """

    impl = Text
    cache_ok = True

    def __init__(self, context: str, length: int | None = None) -> None:
        super().__init__()
        self.context = context
        self.length = length
        self._aad = context.encode()

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # Not dialect.type_descriptor(): PostgreSQL's adaptation of Text would render VARCHAR.
        if dialect.name == "sqlite" and self.length:
            return String(self.length)
        return Text()

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else keyring_of(dialect).seal_text(value, self._aad)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else keyring_of(dialect).open_text(str(value), self._aad)


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON document sealed as one JSON string ``"fte1:..."``; a plain JSON document is read as is."""

    impl = JSON
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context
        self._aad = context.encode()

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        keyring = keyring_of(dialect)
        if value is None or not keyring.enabled:
            return value
        return keyring.seal_text(json.dumps(value, separators=(",", ":")), self._aad)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, str) and value.startswith(TEXT_PREFIX):
            return json.loads(keyring_of(dialect).open_text(value, self._aad))
        return value
