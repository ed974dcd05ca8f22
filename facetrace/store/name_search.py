"""Search stored rows by name, across scripts and spellings, the same way on SQLite and PostgreSQL.

The database selects the candidates (their id, stored ``name_key`` and whether the text as typed
matched literally, e.g. a reference); :func:`facetrace.store.names.rank_keys` ranks them in Python
(exact keys, then contained, then close spellings), so both databases rank alike without an
extension (no ``pg_trgm``, no ICU). The page is then read by id, in ranked order.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from facetrace.store.names import NameMatch, rank_keys

T = TypeVar("T")


def match_view(match: NameMatch) -> dict[str, Any]:
    """Return how a row matched a name query: ``{"tier": "exact" | "contains" | "close", "score"}``."""
    return {"tier": match.tier.name.lower(), "score": match.score}


def ranked_matches(session: Session, candidates: Select[int, str, bool], query: str) -> list[NameMatch]:
    """Return the matches of ``query`` among ``candidates``, best first.

    ``candidates`` selects ``(id, name_key, literal)`` rows in the order ties should keep (for
    example newest first); ``literal`` is a boolean expression (the text as typed found in a
    reference or name), whose rows match at least as *contains*.
    """
    rows = session.execute(candidates).all()
    return rank_keys(query, ((int(r[0]), str(r[1] or "")) for r in rows), literal=[int(r[0]) for r in rows if r[2]])


def rows_in_order(session: Session, model: type[T], ids: list[int]) -> list[T]:
    """Return the rows of ``model`` with these ids, in the order of ``ids`` (missing ones skipped)."""
    if not ids:
        return []
    id_column = model.id  # type: ignore[attr-defined]
    found = {row.id: row for row in session.execute(select(model).where(id_column.in_(ids))).scalars()}  # type: ignore[attr-defined]
    return [found[i] for i in ids if i in found]
