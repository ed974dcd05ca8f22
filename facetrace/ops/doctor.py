"""Health checks of one deployment: configuration, database, index, model files, media, disk, SMTP, calibration
and the notification outbox. ``facetrace doctor`` prints them; a readiness endpoint may run a subset.

Each check returns ``ok``, ``warn`` (works, but needs attention), ``fail`` (something is broken or data is at
risk) or ``skip`` (does not apply). With ``fix``, safe repairs are made and the check is run again:

* index: brought in line with the database, or rebuilt from it when unreadable or its vectors are wrong
  (the database holds every template: nothing is lost);
* database: migrated when its schema is behind (never when it is ahead, or damaged: restore a backup);
* media: a missing photo cannot be recreated (its template still searches); the absence is recorded as an
  audit event for its image and person, once. A file whose content no longer matches its sha256 is moved
  to ``media/.quarantine/`` (so it is not shown as the original) and recorded the same way. Files no record
  refers to (left by an interrupted enrollment) and temporary files, older than ``orphan_min_age_s``, are
  deleted;
* nothing else is changed: notifications of unknown delivery need a person (``facetrace notification
  resolve``), a full disk needs space.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import smtplib
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from facetrace.config import Settings
from facetrace.crypto import DecryptionError
from facetrace.errors import FacetraceError
from facetrace.gallery import Gallery
from facetrace.gallery.calibration import Calibration
from facetrace.index.backends import IndexCorrupt, load_faiss_file, open_vector_index
from facetrace.index.checks import holds_exact_codes, templates_intact
from facetrace.index.ids import id_differences, unique_ids
from facetrace.store import settings_store
from facetrace.store.accounts import AuditEvent
from facetrace.store.audit import append_event
from facetrace.store.db import Database, alembic_config
from facetrace.store.media import sha256_bytes
from facetrace.store.models import Face, Image
from facetrace.store.workflow_models import Notification
from facetrace.vision import models

if TYPE_CHECKING:
    from facetrace.gallery import Gallery

log = logging.getLogger(__name__)

STATUSES = ("ok", "skip", "warn", "fail")  # in rising severity
EXIT_CODES = {"ok": 0, "skip": 0, "warn": 1, "fail": 2}
QUARANTINE = ".quarantine"
#: Templates of the index compared with those of the database (catches a damaged index whose ids look right);
#: all of them in a gallery this small.
VECTOR_SAMPLE = 2000
#: Templates searched in a compressed index (whose codes cannot be compared with the templates exactly).
COMPRESSED_SAMPLE = 200


@dataclass
class DoctorOptions:
    """What ``run_doctor`` checks and may repair."""

    fix: bool = False
    full_media: bool = False  # hash every media file (else a random sample of ``media_sample``)
    media_sample: int = 200
    disk_warn_percent: float = 10.0
    disk_fail_percent: float = 2.0
    disk_warn_mb: int | None = None  # default: Settings.ready_min_free_mb (512)
    smtp_timeout: float = 5.0
    orphan_min_age_s: float = 3600.0  # younger unreferenced media may belong to an enrollment in progress
    only: tuple[str, ...] | None = None  # run only these checks
    actor: str | None = None  # recorded in the audit events of repairs


@dataclass
class CheckResult:
    """The outcome of one check."""

    name: str
    status: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message, "detail": self.detail,
                "fixed": self.fixed}  # fmt: skip


@dataclass
class DoctorReport:
    """Every check's result; ``status`` is the worst of them."""

    checks: list[CheckResult]

    @property
    def status(self) -> str:
        worst = max((c.status for c in self.checks), key=STATUSES.index, default="ok")
        return "ok" if worst == "skip" else worst

    @property
    def exit_code(self) -> int:
        """0: all ok (or skipped); 1: warnings; 2: at least one failure."""
        return EXIT_CODES[self.status]

    def check(self, name: str) -> CheckResult:
        """Return the result of check ``name``. Raises KeyError when it did not run."""
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "checks": [c.as_dict() for c in self.checks],
        }


class _Context:
    """What the checks share: settings, options, and a gallery opened without migrating or repairing."""

    def __init__(self, settings: Settings, options: DoctorOptions) -> None:
        self.settings = settings
        self.options = options
        self._gallery: Gallery | None = None

    @property
    def gallery(self) -> Gallery:
        if self._gallery is None:
            # migrate=False: the doctor looks at the database as it is; only --fix migrates it.
            db = Database(self.settings.db_url, migrate=False, keyring=self.settings.keyring)
            self._gallery = Gallery(self.settings, db=db)
        return self._gallery

    def close(self) -> None:
        if self._gallery is not None:
            self._gallery.db.dispose()  # not Gallery.close(): that would save (write) the index

    def audit(self, action: str, records: list[str], detail: dict[str, Any]) -> None:
        with self.gallery.db.session() as session:
            append_event(
                session, actor=self.options.actor, action=action, records=records, source="doctor", detail=detail
            )


Check = Callable[[_Context], CheckResult]
Fixer = Callable[[_Context, CheckResult], list[str]]


# -- configuration ----------------------------------------------------------------------------------
def check_config(ctx: _Context) -> CheckResult:
    """Settings that cannot work, and whether the data home is writable."""
    s = ctx.settings
    problems: list[str] = []
    detail: dict[str, Any] = {"home": str(s.home), "database": _safe_url(s.db_url), "embedder": s.embedder}
    try:
        s.home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=s.home, prefix=".doctor-"):
            pass
    except OSError as exc:
        return CheckResult("config", "fail", f"the data home {s.home} is not writable: {exc.strerror or exc}", detail)
    if s.smtp_tls not in ("none", "starttls", "tls"):
        problems.append(f"FACETRACE_SMTP_TLS is {s.smtp_tls!r}; use none, starttls or tls")
    for name in ("policy_fpir", "review_fpir", "verify_fmr"):
        value = getattr(s, name)
        if not 0 < value < 1:
            problems.append(f"FACETRACE_{name.upper()} is {value}; it must be between 0 and 1")
    if s.calibration_path is not None and not Path(s.calibration_path).is_file():
        problems.append(f"FACETRACE_CALIBRATION_PATH {s.calibration_path} does not exist")
    if s.embedder.startswith("onnx:") and not Path(s.embedder.removeprefix("onnx:")).is_file():
        problems.append(f"the embedder model {s.embedder.removeprefix('onnx:')} does not exist")
    try:
        detail["encrypted"] = bool(getattr(s, "encrypted", False))
    except FacetraceError as exc:  # a refused key
        problems.append(exc.message)
    if problems:
        return CheckResult("config", "fail", "; ".join(problems), detail)
    return CheckResult("config", "ok", f"settings valid; data home {s.home} writable", detail)


# -- disk -------------------------------------------------------------------------------------------
def check_disk(ctx: _Context) -> CheckResult:
    """Free space where the data home (and a SQLite database elsewhere) lives."""
    opts = ctx.options
    warn_mb = opts.disk_warn_mb
    if warn_mb is None:  # the readiness endpoint's threshold, when the settings have it
        warn_mb = int(getattr(ctx.settings, "ready_min_free_mb", 512))
    places = [ctx.settings.home]
    url = ctx.settings.db_url
    if url.startswith("sqlite:///"):
        db_dir = Path(url.removeprefix("sqlite:///")).parent
        if db_dir.exists() and db_dir.stat().st_dev != ctx.settings.home.stat().st_dev:
            places.append(db_dir)
    status, messages, detail = "ok", [], {}
    for place in places:
        usage = shutil.disk_usage(place)
        percent = 100.0 * usage.free / usage.total if usage.total else 0.0
        detail[str(place)] = {"free_bytes": usage.free, "total_bytes": usage.total, "free_percent": round(percent, 1)}
        text_free = f"{place}: {usage.free / 2**20:.0f} MiB free ({percent:.1f}%)"
        if percent < opts.disk_fail_percent:
            status = "fail"
            messages.append(f"{text_free}, under {opts.disk_fail_percent}%: writes will fail")
        elif percent < opts.disk_warn_percent or usage.free < warn_mb * 2**20:
            status = _worse(status, "warn")
            messages.append(f"{text_free}, under {opts.disk_warn_percent}% or {warn_mb} MiB")
        else:
            messages.append(text_free)
    detail["thresholds"] = {"warn_percent": opts.disk_warn_percent, "fail_percent": opts.disk_fail_percent,
                            "warn_mb": warn_mb}  # fmt: skip
    return CheckResult("disk", status, "; ".join(messages), detail)


# -- database ---------------------------------------------------------------------------------------
def check_database(ctx: _Context) -> CheckResult:
    """Connect, compare the schema revision with this version's head, and (SQLite) run a quick integrity check."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    db = ctx.gallery.db
    try:
        current = db.current_revision()
    except Exception as exc:
        return CheckResult("database", "fail", f"cannot use the database {db.safe_url}: {_reason(exc)}")
    head = db.head_revision()
    detail: dict[str, Any] = {"url": db.safe_url, "revision": current, "head": head, "dialect": db.engine.dialect.name}
    if db.engine.dialect.name == "sqlite":
        try:
            with db.engine.connect() as conn:
                rows = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
        except Exception as exc:  # "database disk image is malformed" before the check can even run
            rows = [_reason(exc)]
        detail["quick_check"] = rows[:10]
        if rows != ["ok"]:
            return CheckResult(
                "database", "fail", f"SQLite quick_check found damage ({rows[0]}): restore the last backup", detail
            )
    if current == head:
        return CheckResult("database", "ok", f"{db.safe_url} answers; schema at head {head}", detail)
    if current is None:
        return CheckResult("database", "warn", "the database is empty: `facetrace init` creates it", detail)
    try:
        known = ScriptDirectory.from_config(alembic_config(db.url)).get_revision(current) is not None
    except CommandError:
        known = False
    if not known:
        return CheckResult(
            "database",
            "fail",
            f"schema revision {current} is unknown to this facetrace (head {head}): the database was written by "
            "a newer version; run that version",
            detail,
        )
    return CheckResult(
        "database", "warn", f"schema revision {current} is behind head {head}: the next command migrates it", detail
    )


def fix_database(ctx: _Context, result: CheckResult) -> list[str]:
    if result.status == "warn" and result.detail.get("revision") != result.detail.get("head"):
        ctx.gallery.db.migrate()
        return [f"migrated the schema to {result.detail.get('head')}"]
    return []


# -- model files ------------------------------------------------------------------------------------
def check_models(ctx: _Context) -> CheckResult:
    """The packaged model files exist, and the configured analyzer loads and embeds."""

    missing = []
    for name in models.MODEL_FILES:
        try:
            models.model_path(name)
        except FacetraceError:
            missing.append(name)
    if missing:
        return CheckResult("models", "fail", f"model files missing: {', '.join(missing)}", {"missing": missing})
    started = time.perf_counter()
    gallery = ctx.gallery
    analyzer = gallery.analyzer
    detail: dict[str, Any] = {"model_id": gallery.model_id, "files": list(models.MODEL_FILES)}
    if gallery.model_id.startswith("dlib"):  # a fixed 150x150 input: one blank chip proves the network runs
        vector = analyzer.embedder.embed_chips([np.zeros((150, 150, 3), dtype=np.uint8)])
        if vector.shape[0] != 1 or not np.isfinite(vector).all():
            return CheckResult("models", "fail", "the embedder returned no usable template", detail)
    detail["load_seconds"] = round(time.perf_counter() - started, 2)
    return CheckResult("models", "ok", f"model files present; {gallery.model_id} loads", detail)


# -- calibration ------------------------------------------------------------------------------------
def check_calibration(ctx: _Context) -> CheckResult:
    """The calibration in use was made for the gallery's model (else no candidate is ever called a match)."""

    calibration = Calibration.load(ctx.settings.calibration_path)
    model = ctx.gallery.model_id
    detail = {"calibration_model_id": calibration.model_id, "model_id": model,
              "path": str(ctx.settings.calibration_path) if ctx.settings.calibration_path else "built in"}  # fmt: skip
    if calibration.model_id != model:
        return CheckResult(
            "calibration",
            "warn",
            f"the calibration is for model {calibration.model_id}, the gallery uses {model}: no candidate is "
            "called a match until `facetrace calibrate` is run",
            detail,
        )
    return CheckResult("calibration", "ok", f"calibration made for {model}", detail)


# -- index ------------------------------------------------------------------------------------------
def _db_face_ids(gallery: Gallery) -> np.ndarray:
    with gallery.db.sessions() as session:
        ids = session.execute(
            select(Face.id).where(Face.model_id == gallery.model_id, Face.person_id.is_not(None))
        ).scalars()
        return np.array(sorted(ids), dtype=np.int64)


def _other_models(gallery: Gallery) -> dict[str, int]:
    with gallery.db.sessions() as session:
        rows = session.execute(
            select(Face.model_id, func.count(Face.id))
            .where(Face.model_id != gallery.model_id, Face.person_id.is_not(None))
            .group_by(Face.model_id)
        ).all()
    return {str(m): int(n) for m, n in rows}


def check_index(ctx: _Context) -> CheckResult:
    """The index holds exactly the database's templates of the gallery's model, readable and undamaged.

    The FAISS file is read directly (not through the gallery, which would repair it on open).
    """
    gallery = ctx.gallery
    db_ids = _db_face_ids(gallery)
    detail: dict[str, Any] = {"model_id": gallery.model_id, "database_templates": int(len(db_ids))}
    if others := _other_models(gallery):
        detail["other_models"] = others
    if ctx.settings.vector_url:
        index = open_vector_index(ctx.settings, gallery.model_id, dim=gallery.dim)
        try:
            held = np.asarray(index.ids(), dtype=np.int64)
            detail["backend"] = "milvus"
        finally:
            index.close()
        return _compare_ids("index", db_ids, held, detail, others)
    path = gallery.index_path
    detail.update({"backend": "faiss", "file": str(path)})
    if not path.exists():
        if not len(db_ids):
            return CheckResult("index", "ok", "no templates and no index file yet", detail)
        detail["problem"] = "missing"
        return CheckResult(
            "index", "fail", f"index file {path.name} is missing: rebuilt from the database on the next open", detail
        )
    try:
        index = load_faiss_file(path)
    except IndexCorrupt as exc:
        detail["problem"] = "corrupt"
        return CheckResult(
            "index", "fail", f"index file unreadable ({exc}): rebuilt from the database on the next open", detail
        )
    held = index.ids()
    detail.update({"factory": index.factory, "index_templates": len(index)})
    if not index.graph_matches_plan():
        detail["problem"] = "vectors"
        return CheckResult(
            "index",
            "fail",
            f"the index file does not match its parameters ({index.factory}): --fix rebuilds it",
            detail,
        )
    try:
        sidecar = json.loads(path.with_suffix(".json").read_text())
        detail["sidecar_count"] = sidecar.get("count")
    except (OSError, ValueError):
        sidecar = {}
    result = _compare_ids("index", db_ids, held, detail, others)
    # Ids can be right while vectors are not (bit rot): compare a sample with the database's templates.
    common = np.intersect1d(db_ids, held)
    if len(common):
        exact = holds_exact_codes(index)
        size = min(VECTOR_SAMPLE if exact else COMPRESSED_SAMPLE, len(common))
        sample = np.sort(np.random.default_rng().choice(common, size=size, replace=False))
        stored = gallery.stored_templates(sample)
        index.set_vector_source(gallery.stored_templates)
        try:
            ok = templates_intact(index, sample, stored)
        except KeyError:  # an exact index that lost a template it lists
            ok = np.zeros(len(sample), dtype=bool)
        bad = int((~ok).sum())
        detail["vectors_checked"] = int(len(sample))
        if bad > (0 if exact else max(2, len(sample) // 10)):
            detail["problem"] = "vectors"
            detail["vectors_wrong"] = bad
            return CheckResult(
                "index",
                "fail",
                f"{bad} of {len(sample)} sampled index vectors differ from the database's templates: the index "
                "file is damaged; `facetrace doctor --fix` rebuilds it",
                detail,
            )
    if result.status == "ok" and sidecar.get("count") not in (None, len(index)):
        result = CheckResult(
            "index", "warn", f"the sidecar says {sidecar.get('count')} templates, the index holds {len(index)}", detail
        )
    return result


def _compare_ids(
    name: str, db_ids: np.ndarray, held: np.ndarray, detail: dict[str, Any], others: dict[str, int]
) -> CheckResult:
    unique = unique_ids(held)
    missing, extra = id_differences(db_ids, unique)
    duplicated = int(len(held) - len(unique))
    detail.update({"missing": int(len(missing)), "extra": int(len(extra)), "duplicated": duplicated})
    if len(extra) or duplicated:
        detail["problem"] = "extra" if len(extra) else "duplicated"
        return CheckResult(
            name,
            "fail",
            f"the index holds {len(extra)} template(s) no longer in the database and {duplicated} duplicate(s) "
            f"(erased faces could still be found): `facetrace doctor --fix` repairs it",
            detail,
        )
    if len(missing):
        detail["problem"] = "missing_ids"
        return CheckResult(
            name,
            "warn",
            f"{len(missing)} template(s) of the database are not in the index file yet (an enrollment in "
            "progress, or an interrupted one): added on the next open, or by --fix",
            detail,
        )
    if others:
        listed = ", ".join(f"{n} of {m}" for m, n in others.items())
        return CheckResult(
            name, "warn", f"index matches the database; templates of other models are not searched: {listed}", detail
        )
    return CheckResult(name, "ok", f"index holds the database's {len(db_ids)} template(s)", detail)


def fix_index(ctx: _Context, result: CheckResult) -> list[str]:
    problem = result.detail.get("problem")
    if problem is None:
        return []
    gallery = ctx.gallery
    if problem in ("vectors", "duplicated") and not ctx.settings.vector_url:
        try:
            plan = load_faiss_file(gallery.index_path).plan
            factory = None if plan.auto else (plan.wanted or plan.factory)
        except (FileNotFoundError, IndexCorrupt):
            factory = None
        count = gallery.rebuild_index(factory=factory)
        gallery.wait_for_index_rebuild()
        return [f"rebuilt the index from the database: {count} template(s)"]
    index = gallery.index()  # opening repairs: unreadable -> rebuilt, ids brought in line, then saved
    index.save()
    gallery.wait_for_index_rebuild()
    return [f"index brought in line with the database: {len(index)} template(s)"]


# -- media ------------------------------------------------------------------------------------------
def check_media(ctx: _Context) -> CheckResult:
    """Every image record's file exists (all checked), its content matches its sha256 (a sample, or all with
    ``full_media``); files no record refers to and leftover temporary files are counted."""
    gallery = ctx.gallery
    media = gallery.media
    with gallery.db.sessions() as session:
        rows = session.execute(select(Image.id, Image.person_id, Image.media_path, Image.sha256)).all()
    by_path: dict[str, list[tuple[int, int | None, str]]] = {}
    for image_id, person_id, rel, digest in rows:
        by_path.setdefault(rel, []).append((int(image_id), person_id, digest))
    missing = [rel for rel in by_path if not (media.root / rel).is_file()]
    missing_set = set(missing)
    present = [rel for rel in by_path if rel not in missing_set]
    opts = ctx.options
    to_hash = present if opts.full_media else random.sample(present, min(len(present), opts.media_sample))
    altered = []
    for rel in to_hash:
        try:
            data = media.read(rel)
        except DecryptionError:  # an encrypted photo whose authentication tag fails was altered
            altered.append(rel)
            continue
        except FacetraceError:
            missing.append(rel)
            continue
        if sha256_bytes(data) not in {digest for _, _, digest in by_path[rel]}:
            altered.append(rel)
    orphans, temporary = _unreferenced(media.root, set(by_path))
    now = time.time()
    old_orphans = [p for p in orphans if now - p.stat().st_mtime >= opts.orphan_min_age_s]
    old_temporary = [p for p in temporary if now - p.stat().st_mtime >= opts.orphan_min_age_s]

    def images(rels: list[str]) -> list[dict[str, Any]]:
        return [{"image_id": i, "person_id": p, "path": rel} for rel in rels for i, p, _ in by_path[rel]]

    detail: dict[str, Any] = {
        "images": len(rows),
        "files": len(by_path),
        "hashed": len(to_hash),
        "full": opts.full_media,
        "missing": images(sorted(missing))[:1000],
        "altered": images(sorted(altered))[:1000],
        "missing_count": len(missing),
        "altered_count": len(altered),
        "unreferenced_files": len(orphans),
        "temporary_files": len(temporary),
        "removable": [str(p.relative_to(media.root)) for p in old_orphans + old_temporary][:1000],
    }
    problems = []
    # A missing photo already recorded in the audit trail (by --fix) is known: a warning, not a failure.
    recorded = _recorded_media_problems(gallery)
    new_missing = [e for e in detail["missing"] if tuple(_image_records(e)) not in recorded]
    detail["missing_recorded"] = len(detail["missing"]) - len(new_missing)
    if new_missing:
        problems.append(
            f"{len(missing)} photo file(s) missing (first: image {new_missing[0]['image_id']} of person "
            f"{new_missing[0]['person_id']}): the templates still search, the photos cannot be recreated "
            "from the database; restore them from a backup, or record their loss with --fix"
        )
    if altered:
        problems.append(
            f"{len(altered)} photo file(s) no longer match their sha256 (first: image "
            f"{detail['altered'][0]['image_id']} of person {detail['altered'][0]['person_id']})"
        )
    if problems:
        return CheckResult("media", "fail", "; ".join(problems), detail)
    warnings = []
    if missing:
        warnings.append(
            f"{len(missing)} photo file(s) missing, their loss recorded in the audit trail (the templates still "
            "search; restore the files from a backup if one has them)"
        )
    if old_orphans or old_temporary:
        warnings.append(
            f"{len(old_orphans)} file(s) no record refers to and {len(old_temporary)} temporary file(s), left by "
            "interrupted writes: --fix removes them"
        )
    if warnings:
        return CheckResult("media", "warn", "; ".join(warnings), detail)
    sampled = "all" if opts.full_media else f"{len(to_hash)} sampled"
    return CheckResult("media", "ok", f"{len(by_path)} photo file(s) present; {sampled} match their sha256", detail)


def _unreferenced(root: Path, referenced: set[str]) -> tuple[list[Path], list[Path]]:
    """Return (files no record refers to, temporary files) below the media root, outside the quarantine."""
    orphans: list[Path] = []
    temporary: list[Path] = []
    if not root.exists():
        return orphans, temporary
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts[0] == QUARANTINE or not path.is_file():
            continue
        if path.name.startswith("."):  # atomic_write's temporary files (.tmp-*), cut short by a crash
            temporary.append(path)
        elif rel.as_posix() not in referenced:
            orphans.append(path)
    return orphans, temporary


def _recorded_media_problems(gallery: Gallery) -> set[tuple[str, ...]]:
    """Return the records (``image:ID``, ``person:ID``) of photos whose loss or alteration the audit trail holds."""
    with gallery.db.sessions() as session:
        events = session.execute(
            select(AuditEvent.records).where(AuditEvent.action.in_(("media.missing", "media.altered")))
        ).scalars()
        return {tuple(records or []) for records in events}


def fix_media(ctx: _Context, result: CheckResult) -> list[str]:
    done: list[str] = []
    media = ctx.gallery.media
    recorded = _recorded_media_problems(ctx.gallery)
    for entry in result.detail.get("altered", []):
        source = media.root / entry["path"]
        if source.is_file():
            target = media.root / QUARANTINE / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)
            done.append(f"moved altered {entry['path']} to {QUARANTINE}/")
        records = _image_records(entry)
        ctx.audit("media.altered", records, {"path": entry["path"], "quarantined": True})
        recorded.add(tuple(records))
    recorded_missing = 0
    for entry in result.detail.get("missing", []):
        records = _image_records(entry)
        if tuple(records) in recorded:
            continue  # recorded by an earlier run (or as altered just now)
        ctx.audit(
            "media.missing",
            records,
            {"path": entry["path"], "note": "photo file missing; the template still searches; restore from a backup"},
        )
        recorded.add(tuple(records))
        recorded_missing += 1
    if recorded_missing:
        done.append(f"recorded {recorded_missing} missing photo(s) in the audit trail (they cannot be recreated)")
    removed = 0
    for rel in result.detail.get("removable", []):
        (media.root / rel).unlink(missing_ok=True)
        removed += 1
    if removed:
        done.append(f"removed {removed} unreferenced or temporary media file(s)")
    return done


def _image_records(entry: dict[str, Any]) -> list[str]:
    records = [f"image:{entry['image_id']}"]
    if entry.get("person_id") is not None:
        records.append(f"person:{entry['person_id']}")
    return records


# -- notification outbox ----------------------------------------------------------------------------
def check_outbox(ctx: _Context) -> CheckResult:
    """Notifications whose delivery needs a person: unknown, stuck in sending, or out of attempts."""
    settings = ctx.settings
    with ctx.gallery.db.sessions() as session:
        rows = session.execute(select(Notification.status, func.count(Notification.id)).group_by(Notification.status))
        counts = {str(status): int(n) for status, n in rows}
        exhausted = session.execute(
            select(func.count(Notification.id)).where(
                Notification.status == "failed", Notification.attempts >= settings.notification_max_attempts
            )
        ).scalar()
    detail = {"by_status": counts, "failed_out_of_attempts": int(exhausted or 0)}
    attention = counts.get("unknown", 0) + counts.get("sending", 0) + int(exhausted or 0)
    if attention:
        return CheckResult(
            "outbox",
            "warn",
            f"{counts.get('unknown', 0)} notification(s) of unknown delivery, {counts.get('sending', 0)} in sending "
            f"and {exhausted or 0} out of attempts need a person: check the mail log for their Message-ID, then "
            "`facetrace notification resolve` (they are never resent automatically)",
            detail,
        )
    return CheckResult("outbox", "ok", f"{sum(counts.values())} notification(s), none waiting for a person", detail)


# -- SMTP -------------------------------------------------------------------------------------------
def _mail_settings(ctx: _Context) -> tuple[Settings, bool]:
    """Return the settings in force (with what an admin saved) and whether an admin saved a mail server."""
    try:
        with ctx.gallery.db.sessions() as session:
            saved = settings_store.saved_values(session)
    except Exception:  # an older schema without the settings table: the environment's settings
        return ctx.settings, False
    return settings_store.merge(ctx.settings, saved), bool({"smtp_host", "smtp_port"} & set(saved))


def _smtp_configured(ctx: _Context, saved_server: bool) -> bool:
    """Whether an SMTP server is configured, or notifications exist that will need the default one."""
    if saved_server or {"smtp_host", "smtp_port"} & ctx.settings.model_fields_set:
        return True
    try:
        with ctx.gallery.db.sessions() as session:
            return bool(session.execute(select(func.count(Notification.id))).scalar())
    except Exception:  # no workflow tables yet
        return False


def check_smtp(ctx: _Context) -> CheckResult:
    """Connect to the configured SMTP server (the environment's, or the one an admin saved) and greet it
    (EHLO, STARTTLS if configured); nothing is sent."""
    s, saved_server = _mail_settings(ctx)
    where = f"{s.smtp_host}:{s.smtp_port}"
    detail: dict[str, Any] = {"server": where, "tls": s.smtp_tls}
    if not _smtp_configured(ctx, saved_server):
        message = "no SMTP server configured (FACETRACE_SMTP_HOST) and no notifications"
        return CheckResult("smtp", "skip", message, detail)
    timeout = min(ctx.options.smtp_timeout, s.smtp_timeout)
    started = time.perf_counter()
    try:
        context = ssl.create_default_context()
        if s.smtp_tls == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=timeout)
        try:
            code, reply = smtp.ehlo()
            if code != 250:
                return CheckResult("smtp", "fail", f"{where} refused EHLO: {code} {reply!r}", detail)
            if s.smtp_tls == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
        finally:
            try:
                smtp.quit()
            except Exception:
                smtp.close()
    except (OSError, smtplib.SMTPException) as exc:
        return CheckResult("smtp", "fail", f"cannot reach the SMTP server {where}: {_reason(exc)}", detail)
    detail["seconds"] = round(time.perf_counter() - started, 3)
    return CheckResult("smtp", "ok", f"SMTP server {where} answers", detail)


# -- running ----------------------------------------------------------------------------------------
#: Every check in the order run, with its repair (None: nothing safe to do automatically).
CHECKS: dict[str, tuple[Check, Fixer | None]] = {
    "config": (check_config, None),
    "disk": (check_disk, None),
    "database": (check_database, fix_database),
    "models": (check_models, None),
    "calibration": (check_calibration, None),
    "index": (check_index, fix_index),
    "media": (check_media, fix_media),
    "outbox": (check_outbox, None),
    "smtp": (check_smtp, None),
}
#: Checks that need the database to answer.
_NEEDS_DATABASE = {"index", "media", "outbox"}


def run_doctor(settings: Settings, options: DoctorOptions | None = None) -> DoctorReport:
    """Run the checks (``options.only``, else all); with ``options.fix`` repair what is safe and check again.

    Returns the report; never raises for what it finds (a check that cannot run is a failure).

    Raises:
        ValueError: ``options.only`` names an unknown check.
    """
    options = options or DoctorOptions()
    names = list(options.only or CHECKS)
    if unknown := [n for n in names if n not in CHECKS]:
        raise ValueError(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    ctx = _Context(settings, options)
    results: list[CheckResult] = []
    try:
        for name in CHECKS:
            if name not in names:
                continue
            database = next((r for r in results if r.name == "database"), None)
            if name in _NEEDS_DATABASE and database is not None:
                if database.status == "fail":
                    results.append(CheckResult(name, "skip", "skipped: the database is not usable"))
                    continue
                if database.detail.get("revision") is None:
                    results.append(CheckResult(name, "skip", "skipped: the database is empty"))
                    continue
            config_failed = any(r.name == "config" and r.status == "fail" for r in results)
            if config_failed and name not in ("config", "disk", "smtp"):
                results.append(CheckResult(name, "skip", "skipped: fix the configuration first"))
                continue
            check, fixer = CHECKS[name]
            result = _run_one(name, check, ctx)
            if options.fix and fixer is not None and result.status in ("warn", "fail"):
                try:
                    fixed = fixer(ctx, result)
                except Exception as exc:
                    log.warning("doctor: repairing %s failed", name, exc_info=True)
                    result.fixed.append(f"repair failed: {_reason(exc)}")
                else:
                    if fixed:
                        result = _run_one(name, check, ctx)
                        result.fixed = fixed
            results.append(result)
    finally:
        ctx.close()
    return DoctorReport(results)


def _run_one(name: str, check: Check, ctx: _Context) -> CheckResult:
    try:
        return check(ctx)
    except Exception as exc:
        log.debug("doctor: check %s could not run", name, exc_info=True)
        return CheckResult(name, "fail", f"the check could not run: {_reason(exc)}")


def _worse(a: str, b: str) -> str:
    return max(a, b, key=STATUSES.index)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FacetraceError):
        return exc.message
    orig = getattr(exc, "orig", None)
    return f"{type(exc).__name__}: {orig if orig is not None else exc}".strip()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid database url>"
