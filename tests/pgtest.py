"""A fresh PostgreSQL database per test (or per session), on the server ``.ci/run`` starts.

The server's URL is in ``FACETRACE_TEST_POSTGRES_URL``; tests that need PostgreSQL skip cleanly
when it is unset. Each database has a unique name so that parallel runs never collide, and is
dropped (``WITH (FORCE)``: a test may leave connections open) afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ENV = "FACETRACE_TEST_POSTGRES_URL"


def postgres_available() -> bool:
    """Return whether a test PostgreSQL server is configured."""
    return bool(os.environ.get(POSTGRES_ENV))


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Create an empty database named ``PREFIX_<random>``; yield its SQLAlchemy URL; drop it afterwards.

    Skips the calling test when ``FACETRACE_TEST_POSTGRES_URL`` is unset.
    """
    if not postgres_available():
        pytest.skip(f"{POSTGRES_ENV} is not set")
    base = make_url(os.environ[POSTGRES_ENV])
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
