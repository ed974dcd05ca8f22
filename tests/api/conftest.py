"""Fixtures of the service tests (API, accounts, audit, jobs), each run on SQLite and PostgreSQL.

- ``pg_database_url`` (session): this session's PostgreSQL database, made with CREATE DATABASE and
  dropped at the end; skipped when ``FACETRACE_TEST_POSTGRES_URL`` is unset.
- ``backend``: "sqlite" or "postgresql" (parametrised: every test using it runs on both).
- ``database_factory``: ``make(backend, where)`` for tests that need both backends at once.
- ``database_url``: a fresh empty database: a SQLite file, or a new schema in the session's database.
- ``api``: a fresh server (empty database) with a TestClient and one user (and token) per role.
- ``gallery_api`` (session, per backend): a server with ``GALLERY`` identities enrolled (2 images
  each). Shared: tests may read and search it, and write only records they create themselves.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apitest import BACKENDS, GALLERY, Api, face_images, start_api
from sqlalchemy.engine import make_url

from facetrace.gallery.sources import EnrollItem


def _pg_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A PostgreSQL database of this test session (SQLAlchemy URL); dropped at the end."""
    base = os.environ.get("FACETRACE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("FACETRACE_TEST_POSTGRES_URL is not set")
    import psycopg

    name = f"facetrace_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_pg_conninfo(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_pg_conninfo(base), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_database_url(request: pytest.FixtureRequest, backend: str, where: Path) -> str:
    """Return the URL of a fresh empty database: a SQLite file in ``where``, or a new PostgreSQL schema."""
    if backend == "sqlite":
        return f"sqlite:///{where / 'facetrace.db'}"
    base: str = request.getfixturevalue("pg_database_url")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_conninfo(base), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def database_factory(request: pytest.FixtureRequest) -> Callable[[str, Path], str]:
    """Return ``make(backend, where)``: the URL of a fresh empty database of either backend."""
    return lambda backend, where: new_database_url(request, backend, where)


@pytest.fixture()
def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """The URL of a fresh, empty (not yet migrated) database of ``backend``."""
    return new_database_url(request, backend, tmp_path)


@pytest.fixture()
def api(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Api]:
    """A fresh server on an empty database, with one user (and token) per role."""
    url = new_database_url(request, backend, tmp_path)
    yield from start_api(tmp_path / "home", url, backend)


@pytest.fixture(scope="module", params=BACKENDS)
def module_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A fresh server (empty database) shared by the tests of one module, per backend."""
    backend = str(request.param)
    where = tmp_path_factory.mktemp(f"module-{backend}")
    yield from start_api(where / "home", new_database_url(request, backend, where), backend)


@pytest.fixture(scope="session", params=BACKENDS)
def gallery_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A server with the ``GALLERY`` identities enrolled (2 images each), shared by the session."""
    backend = str(request.param)
    where = tmp_path_factory.mktemp(f"gallery-{backend}")
    url = new_database_url(request, backend, where)
    for server in start_api(where / "home", url, backend):
        items = [
            EnrollItem(n, n.replace("_", " "), face_images(n)[:2], "LFW (test subset)", "test data") for n in GALLERY
        ]
        outcome = server.service.gallery.enroll(items, workers=1)
        assert not outcome.errors and outcome.images_enrolled == 2 * len(GALLERY), outcome.as_dict()
        yield server
