"""What to enroll: an IDENTITY/IMAGE folder or a CSV manifest, read into :class:`EnrollItem` s."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from facetrace.errors import ManifestError
from facetrace.vision.decode import IMAGE_SUFFIXES

REQUIRED_COLUMNS = ("external_id", "name", "image", "source", "legal_basis")
CONTACT_COLUMNS = ("contact_name", "contact_relation", "contact_email", "contact_phone", "contact_language")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass
class EnrollItem:
    """One person to enroll with their reference images and provenance."""

    external_id: str
    name: str
    images: list[Path]
    source: str
    legal_basis: str
    attributes: dict[str, Any] = field(default_factory=dict)
    collected_at: datetime | None = None
    retain_until: datetime | None = None  # erase after this moment (`facetrace retention apply`)


@dataclass
class SourceProblem:
    """A row or file that could not be turned into an enroll item."""

    where: str
    message: str


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def read_folder(folder: Path, *, source: str, legal_basis: str) -> list[EnrollItem]:
    """Return one item per IDENTITY sub-folder that holds images (sorted by name).

    Raises:
        ManifestError: ``folder`` is not a folder or holds no identity folder with images.
    """
    if not folder.is_dir():
        raise ManifestError(f"{folder}: not a folder")
    items = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = sorted(p for p in sub.iterdir() if is_image_file(p))
        if images:
            items.append(
                EnrollItem(
                    external_id=sub.name,
                    name=sub.name.replace("_", " "),
                    images=images,
                    source=source,
                    legal_basis=legal_basis,
                )
            )
    if not items:
        raise ManifestError(f"{folder}: no IDENTITY/IMAGE folders with images found")
    return items


def _contained(base: Path, relative: str) -> Path | None:
    """Resolve ``relative`` under ``base``; None when it is absolute or leaves ``base``.

    Raises:
        RuntimeError: the path runs into a symbolic link loop (Python 3.11's ``Path.resolve``).
    """
    if not relative or Path(relative).is_absolute() or relative.startswith(("\\", "~")):
        return None
    target = (base / relative).resolve()
    return target if target.is_relative_to(base.resolve()) else None


def _aware(value: datetime) -> datetime:
    """Return ``value`` with a time zone (a bare date or naive time is taken as UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def read_manifest(path: Path) -> tuple[list[EnrollItem], list[SourceProblem]]:
    """Parse a CSV manifest; return the valid items and the rows refused, with reasons.

    Columns: external_id, name, image (paths relative to the manifest, ``;``-separated),
    source, legal_basis; optional collected_at (ISO date), retain_until (ISO date or date-time:
    the person is erased after it), contact_* columns, and any other
    column, kept as metadata. Rows with the same external_id are merged.

    Raises:
        ManifestError: the file is unreadable, not CSV text, too big, lacks a required column, or
            names a column twice.
    """
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path.name}: manifest larger than {MAX_MANIFEST_BYTES // 2**20} MiB")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path.name}: manifest is not UTF-8 text") from None
    except OSError as exc:
        raise ManifestError(f"{path.name}: cannot read manifest ({exc.strerror})") from None
    if "\x00" in text:
        raise ManifestError(f"{path.name}: manifest is not text")
    # newline="": a quoted field may hold line breaks (an address, a note); keep them, and
    # number each row by the line where it starts.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict[str | Any, str | Any]]] = []
    try:
        header = [c.strip() for c in (reader.fieldnames or [])]
        start = reader.line_num + 1
        for raw in reader:
            rows.append((start, raw))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ManifestError(f"{path.name}: not valid CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(f"{path.name}: missing column(s) {', '.join(missing)}")
    # Two columns of one name: all but the last would be dropped without a word. (Unnamed
    # columns, as spreadsheets add at the end, are ignored anyway.)
    duplicates = sorted({c for c in header if c and header.count(c) > 1})
    if duplicates:
        names = ", ".join(repr(c[:40]) for c in duplicates[:5])
        raise ManifestError(f"{path.name}: column(s) {names} appear more than once")
    base = path.parent
    items: dict[str, EnrollItem] = {}
    problems: list[SourceProblem] = []
    for number, raw in rows:
        row = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in raw.items()}
        where = f"{path.name} line {number}"
        empty = [c for c in REQUIRED_COLUMNS if not row.get(c)]
        if empty:
            problems.append(SourceProblem(where, f"empty required field(s) {', '.join(empty)}"))
            continue
        images: list[Path] = []
        refused = False
        for rel in (p.strip() for p in row["image"].split(";") if p.strip()):
            try:
                target = _contained(base, rel)
            except RuntimeError:  # a link loop (tests/test_properties.py)
                problems.append(SourceProblem(where, f"image path {rel!r} cannot be resolved (a link loop); refused"))
                refused = True
                break
            if target is None:
                problems.append(SourceProblem(where, f"image path {rel!r} leaves the manifest's folder; refused"))
                refused = True
                break
            images.append(target)
        if refused:
            continue
        collected_at = None
        if row.get("collected_at"):
            try:
                collected_at = datetime.fromisoformat(row["collected_at"])
            except ValueError:
                problems.append(SourceProblem(where, f"collected_at {row['collected_at']!r} is not an ISO date"))
                continue
        retain_until = None
        if row.get("retain_until"):
            try:
                retain_until = _aware(datetime.fromisoformat(row["retain_until"]))
            except ValueError:
                problems.append(SourceProblem(where, f"retain_until {row['retain_until']!r} is not an ISO date"))
                continue
        contact = {c.removeprefix("contact_"): row[c] for c in CONTACT_COLUMNS if row.get(c)}
        known = REQUIRED_COLUMNS + CONTACT_COLUMNS + ("collected_at", "retain_until")
        extra = {k: v for k, v in row.items() if k not in known and v}
        item = items.get(row["external_id"])
        if item is None:
            item = EnrollItem(
                external_id=row["external_id"],
                name=row["name"],
                images=[],
                source=row["source"],
                legal_basis=row["legal_basis"],
                attributes=extra,
                collected_at=collected_at,
                retain_until=retain_until,
            )
            items[item.external_id] = item
        elif retain_until is not None and (item.retain_until is None or retain_until < item.retain_until):
            item.retain_until = retain_until  # rows of one person disagree: the earliest date wins
        item.images.extend(p for p in images if p not in item.images)
        if contact:
            contacts = item.attributes.setdefault("contacts", [])
            if contact not in contacts:
                contacts.append(contact)
    return list(items.values()), problems
