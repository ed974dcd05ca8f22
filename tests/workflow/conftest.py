"""Fixtures of the workflow tests: a database on each backend, users with roles, a real SMTP
server on loopback (aiosmtpd), and helpers that build records without the face pipeline.

- ``backend``: "sqlite" and "postgresql" (the latter skipped unless FACETRACE_TEST_POSTGRES_URL
  is set; each test then gets a fresh database, dropped afterwards).
- ``smtp``: an :class:`Inbox` served by aiosmtpd on 127.0.0.1 and a free port.
- ``wf_settings`` / ``wf``: settings (data home in ``tmp_path``, SMTP pointed at ``smtp``) and a
  :class:`facetrace.workflow.Workflow` over them.
- ``users``: ivan (intake), olena (examiner), petro and maria (reviewer), anna (auditor),
  taras (examiner and reviewer), dmytro (disabled reviewer).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgtest import fresh_database
from wftest import Inbox, free_port, serving

from facetrace.config import Settings, get_settings
from facetrace.gallery import Gallery
from facetrace.store.accounts import User
from facetrace.workflow import Workflow

POSTGRES_ENV = "FACETRACE_TEST_POSTGRES_URL"


# -- databases -------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend of this test run."""
    if request.param == "postgresql" and not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    return str(request.param)


@pytest.fixture()
def database_url(backend: str, tmp_path: Path) -> Iterator[str | None]:
    """None for SQLite (the data home's file); for PostgreSQL a fresh database, dropped afterwards."""
    if backend == "sqlite":
        yield None
        return
    with fresh_database("facetrace_wf") as url:
        yield url


# -- SMTP ----------------------------------------------------------------------------------------
@pytest.fixture()
def smtp() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 and a free port."""
    with serving(Inbox(port=free_port())) as inbox:
        yield inbox


# -- workflow ------------------------------------------------------------------------------------
@pytest.fixture()
def wf_settings(tmp_path: Path, database_url: str | None, smtp: Inbox, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a fresh data home, the test database and the loopback SMTP server."""
    for name in ("FACETRACE_DATABASE_URL", "FACETRACE_VECTOR_URL", "FACETRACE_CALIBRATION_PATH"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("FACETRACE_HOME", str(home))
    return get_settings(
        home=home,
        workers=1,
        database_url=database_url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_sender="Identification team <notify@ident.example.org>",
        smtp_timeout=10.0,
        organisation_name="Tracing Service Kyiv",
        organisation_contact="+380 44 000 00 00, tracing@ident.example.org",
    )


@pytest.fixture()
def wf(wf_settings: Settings) -> Iterator[Workflow]:
    """A workflow over an empty gallery."""
    gallery = Gallery(wf_settings)
    yield Workflow(gallery, source="test")
    gallery.close()


@pytest.fixture()
def users(wf: Workflow) -> dict[str, User]:
    """Users with roles (password hashes are placeholders: these tests never sign in)."""
    spec = {
        "ivan": ["intake"],
        "olena": ["examiner"],
        "petro": ["reviewer"],
        "maria": ["reviewer"],
        "anna": ["auditor"],
        "taras": ["examiner", "reviewer"],
        "dmytro": ["reviewer"],
    }
    out = {}
    with wf.db.session() as session:
        for name, roles in spec.items():
            user = User(username=name, display_name=name.title(), password_hash="!", roles=roles, disabled=False)
            session.add(user)
            session.flush()
            out[name] = user
        out["dmytro"].disabled = True
    with wf.db.sessions() as session:
        return {name: session.get(User, u.id) for name, u in out.items()}  # type: ignore[misc]
