"""Readiness of one API server (``GET /api/v1/ready``): can it serve searches and enrollments now?

Cheap on purpose (load balancers and orchestrators poll it every few seconds): one query for the
schema revision, one grouped count to compare the loaded index with the database, a look at the
analysis pool and at the free disk space. The full checks (media files, model files, SMTP,
index file contents) are ``facetrace doctor``'s. The answer is public, so it says what failed but
no counts of persons or templates: the size of a gallery of missing persons is for the operators
(``/api/v1/metrics``), not for anyone who can reach the server.
"""

from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from facetrace.store.db import Database, alembic_config
from facetrace.usecases.service import Service

log = logging.getLogger(__name__)


@dataclass
class Check:
    """The outcome of one readiness check."""

    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


@functools.cache
def _head_revision() -> str | None:
    # The migration scripts ship with the code: read once per process, not per poll.
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def check_database(db: Database) -> Check:
    """The database answers and its schema is at the newest revision."""
    try:
        # A plain query rather than Alembic's context, which logs two lines per call.
        with db.engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:  # unreachable, refused, locked out...: the readiness answer says so
        log.warning("readiness: the database did not answer: %s", type(exc).__name__)
        return Check(False, f"unreachable ({type(exc).__name__})")
    head = _head_revision()
    if revision != head:
        return Check(False, f"schema at revision {revision}, expected {head}")
    return Check(True, f"answers, schema at revision {revision}")


def check_disk(service: Service) -> Check:
    """The data home has at least ``Settings.ready_min_free_mb`` free."""
    minimum = service.settings.ready_min_free_mb * 1024 * 1024
    try:
        free = shutil.disk_usage(service.settings.home).free
    except OSError as exc:
        return Check(False, f"the data home cannot be examined ({exc.strerror})")
    gib = free / 1024**3
    if free < minimum:
        return Check(False, f"{gib:.2f} GiB free in the data home, below the minimum of {minimum / 1024**3:.2f} GiB")
    return Check(True, f"{gib:.1f} GiB free in the data home")


def check_analysis(service: Service) -> Check:
    """The image analysis worker pool is usable (or analysis runs in the server process)."""
    pool = service.gallery.pool
    if pool is None:
        return Check(True, "images are analysed in the server process")
    ok, detail = pool.health()
    return Check(ok, detail)


def readiness(service: Service) -> dict[str, Check]:
    """Return every readiness check by name (database, index, analysis, jobs, disk)."""
    checks = {"database": check_database(service.db)}
    if checks["database"].ok:
        try:
            checks["index"] = Check(*service.gallery.index_consistency())
        except Exception as exc:
            checks["index"] = Check(False, f"cannot be checked ({type(exc).__name__})")
    else:
        checks["index"] = Check(False, "cannot be checked without the database")
    checks["analysis"] = check_analysis(service)
    stopping = service.jobs.stopping
    checks["jobs"] = Check(not stopping, "stopping: the server is shutting down" if stopping else "accepting jobs")
    checks["disk"] = check_disk(service)
    return checks
