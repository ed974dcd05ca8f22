"""The whole schema in one place: every table registered on :data:`Base`, and the columns among them
that are encrypted at rest (read from the models, so a new encrypted column is never forgotten by key rotation).

It imports every model module, which :mod:`facetrace.store.crypto` (imported by the models) cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass

import facetrace.store.accounts  # noqa: F401  (registers its tables on Base)
import facetrace.store.jobs  # noqa: F401
import facetrace.store.rate_buckets  # noqa: F401
import facetrace.store.reconciliation_models  # noqa: F401  (marks, effects, primary references)
import facetrace.store.settings_store  # noqa: F401
import facetrace.store.workflow_models  # noqa: F401
from facetrace.store.crypto import EncryptedBytes, EncryptedJSON, EncryptedText
from facetrace.store.models import Base


@dataclass(frozen=True)
class EncryptedColumn:
    """One encrypted column, as ``facetrace key rotate`` walks them."""

    table: str
    column: str
    kind: str  # "bytes" | "text" | "json"

    @property
    def context(self) -> bytes:
        return f"{self.table}.{self.column}".encode()


def encrypted_columns() -> list[EncryptedColumn]:
    """Return every encrypted column of the schema (read from the models, so none is forgotten)."""
    kinds = {EncryptedBytes: "bytes", EncryptedText: "text", EncryptedJSON: "json"}
    out = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            kind = kinds.get(type(column.type))
            if kind is not None:
                context = column.type.context  # type: ignore[attr-defined]
                if context != f"{table.name}.{column.name}":
                    raise AssertionError(f"{table.name}.{column.name} is encrypted under the context {context}")
                out.append(EncryptedColumn(table.name, column.name, kind))
    return out
