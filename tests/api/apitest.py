"""Helpers of the service tests, imported by tests/api/conftest.py and the test modules."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from facetrace.config import Settings
from facetrace.server import create_app
from facetrace.store.accounts import ROLES, User, create_token, hash_password
from facetrace.usecases.service import Service

FACES_DIR = Path(__file__).resolve().parents[1] / "data" / "faces"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
PASSWORD = "correct horse battery staple"
# Hashed once: Argon2 is slow on purpose, and every fixture makes several users.
PASSWORD_HASH = hash_password(PASSWORD)
# Identities enrolled in ``gallery_api`` (2 images each; their 3rd image is a mated probe).
GALLERY = ("Aaron_Peirsol", "Bill_Paxton", "Cesar_Gaviria", "Elton_John")
# Callers of the authorisation tests: one user per role, one with no role.
IDENTITIES = (*ROLES, "norole")


def wait_for_faces(timeout: float = 120.0) -> Path:
    """Return tests/data/faces once it holds images (a colleague commits them); skip if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if FACES_DIR.is_dir() and all(len(list((FACES_DIR / n).glob("*.jpg"))) >= 3 for n in GALLERY):
            return FACES_DIR
        time.sleep(2)
    pytest.skip("tests/data/faces is missing")


def face_images(name: str) -> list[Path]:
    """Return the sorted images of one identity of tests/data/faces."""
    return sorted((wait_for_faces() / name).glob("*.jpg"))


@dataclass
class Api:
    """A running test server: its client, app, service, and a bearer-token header per identity."""

    client: TestClient
    service: Service
    backend: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)

    @property
    def app(self) -> Any:
        return self.client.app

    def as_(self, identity: str) -> dict[str, str]:
        """Return the Authorization header of ``identity`` (a role name, or ``norole``)."""
        return self.headers[identity]

    def renew_token(self, identity: str) -> None:
        """Issue ``identity`` a new API token (after a call that revoked theirs, such as a logout)."""
        with self.service.db.session() as session:
            user = session.get(User, self.user_ids[identity])
            assert user is not None
            _, secret = create_token(session, user, "tests", days=1)
        self.headers[identity] = {"Authorization": f"Bearer {secret}"}

    def audit(self, action: str | None = None) -> list[dict[str, Any]]:
        """Return the audit events (oldest first), optionally of one action."""
        from facetrace.store.audit import list_events

        with self.service.db.sessions() as session:
            rows, _ = list_events(session, limit=100000, action=action, newest_first=False)
            return [e.as_dict() for e in rows]


def make_settings(home: Path, database_url: str, **overrides: Any) -> Settings:
    """Settings for a test server: one analysis process and one enroll worker (light on shared CPUs)."""
    values: dict[str, Any] = {
        "home": home,
        "database_url": database_url,
        "analysis_processes": 1,
        "workers": 1,
        "job_workers": 1,
        "calibration_path": None,
        "vector_url": None,
        **overrides,
    }
    return Settings(**values)


def add_users(
    service: Service, identities: tuple[str, ...] = IDENTITIES
) -> tuple[dict[str, dict[str, str]], dict[str, int]]:
    """Create one user per identity (named after it; ``norole`` holds no role) with an API token."""
    headers, ids = {}, {}
    with service.db.session() as session:
        for name in identities:
            roles = [name] if name in ROLES else []
            user = User(username=name, display_name=name, password_hash=PASSWORD_HASH, roles=roles, disabled=False)
            session.add(user)
            session.flush()
            _, secret = create_token(session, user, "tests", days=1)
            headers[name] = {"Authorization": f"Bearer {secret}"}
            ids[name] = user.id
    return headers, ids


def start_api(home: Path, database_url: str, backend: str, **overrides: Any) -> Iterator[Api]:
    """Create the app, enter its lifespan, add the users; close everything afterwards."""
    app = create_app(make_settings(home, database_url, **overrides))
    service: Service = app.state.service
    headers, ids = add_users(service)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        yield Api(client, service, backend, headers, ids)


def upload(path: Path, field_name: str = "image") -> tuple[str, tuple[str, bytes, str]]:
    """Return a multipart file entry for ``path``."""
    return field_name, (path.name, path.read_bytes(), "image/jpeg")


def make_zip(files: dict[str, bytes]) -> bytes:
    """Return a zip archive holding ``files`` (name -> content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def wait_job(api: Api, job_id: int, headers: dict[str, str], timeout: float = 120) -> dict[str, Any]:
    """Poll a job until it is no longer queued or running; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
        if job["state"] not in ("queued", "running"):
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")
