"""Search token buckets kept in the database, so that several server processes share one limit.

One row per key (a user or a client address). Taking a token locks the key's row for the length of
a short transaction (``SELECT ... FOR UPDATE``), so concurrent requests through different processes
are counted one after the other. The arithmetic is :func:`take_token`, also used by the in-memory
buckets of a single-process server (:mod:`facetrace.usecases.ratelimit`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Boolean, Float, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from facetrace.store.models import Base


class RateBucket(Base):
    """The token bucket of one user or client address."""

    __tablename__ = "rate_buckets"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)  # wall-clock seconds (processes share no monotonic clock)
    refusing: Mapped[bool] = mapped_column(Boolean)  # refused since the last admitted request


@dataclass
class Taken:
    """What taking a token decided."""

    admitted: bool
    wait: float  # seconds until a token is back, when refused
    first_refusal: bool  # the first refusal since the last admitted request (the one to audit)


def take_token(bucket: RateBucket, now: float, per_minute: float, burst: int) -> Taken:
    """Refill ``bucket`` up to ``now`` at ``per_minute`` (capacity ``burst``) and take one token from it."""
    rate = per_minute / 60.0
    capacity = float(max(1, burst))
    bucket.tokens = min(capacity, bucket.tokens + max(0.0, now - bucket.updated) * rate)
    bucket.updated = now
    if bucket.tokens >= 1.0:
        bucket.tokens -= 1.0
        bucket.refusing = False
        return Taken(True, 0.0, False)
    first = not bucket.refusing
    bucket.refusing = True
    return Taken(False, (1.0 - bucket.tokens) / rate, first)


def take_shared_token(session: Session, key: str, now: float, per_minute: float, burst: int) -> Taken:
    """Take a token from ``key``'s bucket in the database (created full on first use)."""
    bucket = session.execute(select(RateBucket).where(RateBucket.key == key).with_for_update()).scalar()
    if bucket is None:
        # Two processes may create the same key at once: the loser's insert fails on the primary
        # key and its caller retries (see facetrace.usecases.ratelimit.SharedBuckets).
        bucket = RateBucket(key=key, tokens=float(max(1, burst)), updated=now, refusing=False)
        session.add(bucket)
    return take_token(bucket, now, per_minute, burst)


def forget_full_buckets(session: Session, now: float, per_minute: float, burst: int) -> int:
    """Delete the buckets that have refilled completely (idle keys); return how many."""
    capacity = float(max(1, burst))
    rate = per_minute / 60.0
    result = session.execute(
        delete(RateBucket).where(RateBucket.tokens + (now - RateBucket.updated) * rate >= capacity)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
