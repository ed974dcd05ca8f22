"""Rate limit of the search endpoints (image search, compare, video search, and the web search
forms): a token bucket per signed-in user, or per client address for a caller without valid
credentials, refilled at ``Settings.search_rate_per_minute`` up to ``Settings.search_rate_burst``.

A refused request gets 429 ``rate_limited`` with ``Retry-After``; the first refusal of a run of
them is audited (``search.rate_limited``), not every one, so that a flood cannot flood the trail.

On SQLite (one server process) the buckets live in the process's memory; a restart forgets them,
which costs at most one burst. On PostgreSQL, where several server processes share the work, they
live in the database (:mod:`facetrace.store.rate_buckets`), so that a client spreading its searches
over the processes gets the same limit. (Login throttling is in the database on both.)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.exc import IntegrityError

from facetrace.errors import FacetraceError
from facetrace.store.db import Database
from facetrace.store.rate_buckets import RateBucket, forget_full_buckets, take_shared_token, take_token
from facetrace.usecases.actors import Actor, record_event
from facetrace.usecases.service import Service

MAX_BUCKETS = 10_000  # beyond this, full (idle) buckets are forgotten: many addresses must not fill memory


class RateLimited(FacetraceError):
    """Too many searches in a short time; ``retry_after`` in seconds."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Buckets(Protocol):
    def take(self, key: str, per_minute: float, burst: int) -> tuple[bool, float, bool]:
        """Take one token from ``key``'s bucket.

        Returns ``(admitted, wait, first_refusal)``: whether the request may go on, the seconds
        until a token is back when it may not, and whether this is the first refusal of a run.
        """
        ...


class TokenBuckets:
    """Token buckets by key in this process's memory, safe to use from the server's worker threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, RateBucket] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def take(self, key: str, per_minute: float, burst: int) -> tuple[bool, float, bool]:
        """See :meth:`Buckets.take`."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._forget_idle(now, per_minute / 60.0, max(1, burst))
                bucket = self._buckets[key] = RateBucket(
                    key=key, tokens=float(max(1, burst)), updated=now, refusing=False
                )
            taken = take_token(bucket, now, per_minute, burst)
            return taken.admitted, taken.wait, taken.first_refusal

    def _forget_idle(self, now: float, rate: float, capacity: int) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * rate >= capacity]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:  # all busy: drop the oldest rather than grow without bound
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].updated)[: MAX_BUCKETS // 10]
            for key in oldest:
                del self._buckets[key]


class SharedBuckets:
    """Token buckets in the database, shared by every process of a PostgreSQL deployment."""

    FORGET_EVERY = 1000  # takes between two deletions of idle (full) buckets

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        self._takes = 0

    def take(self, key: str, per_minute: float, burst: int) -> tuple[bool, float, bool]:
        """See :meth:`Buckets.take`."""
        for attempt in range(2):
            try:
                with self.db.session() as session:
                    taken = take_shared_token(session, key, self._clock(), per_minute, burst)
                break
            except IntegrityError:  # another process created this key's bucket at the same moment
                if attempt:
                    raise
        self._takes += 1
        if self._takes % self.FORGET_EVERY == 0:
            with self.db.session() as session:
                forget_full_buckets(session, self._clock(), per_minute, burst)
        return taken.admitted, taken.wait, taken.first_refusal


def buckets_for(db: Database) -> Buckets:
    """Return the search buckets for a server on ``db``: in memory for SQLite, shared for PostgreSQL."""
    return TokenBuckets() if db.single_process else SharedBuckets(db)


def charge_search(
    service: Service, buckets: Buckets, actor: Actor | None, *, source: str | None, method: str, path: str
) -> None:
    """Charge one search to the caller's bucket (the signed-in user's, else the client address's).

    Raises:
        RateLimited: the bucket is empty; the first refusal of a run is audited (``search.rate_limited``).
    """
    settings = service.settings
    if settings.search_rate_per_minute <= 0:
        return  # switched off (FACETRACE_SEARCH_RATE_PER_MINUTE=0), e.g. for a load test
    key = f"user:{actor.user.id}" if actor is not None else f"addr:{source}"
    admitted, wait, first = buckets.take(key, settings.search_rate_per_minute, settings.search_rate_burst)
    if admitted:
        return
    retry_after = max(1, math.ceil(wait))
    if first:
        record_event(
            service,
            actor,
            "search.rate_limited",
            outcome="denied",
            source=source,
            detail={
                "method": method,
                "path": path,
                "per_minute": settings.search_rate_per_minute,
                "burst": settings.search_rate_burst,
            },
        )
    raise RateLimited(
        f"too many searches: at most {settings.search_rate_per_minute:g} a minute "
        f"(bursts of {settings.search_rate_burst}); try again in {retry_after} seconds",
        retry_after,
    )
