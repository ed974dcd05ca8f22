"""The case file as PDF (fpdf2, pure Python): the case, its photos with faces boxed, the
candidates with their scores in plain words and the case face's quality band, the reviews,
evidence, identifications and notifications, and an excerpt of the audit trail.

Text is set in DejaVu Sans (the TTF that ships with matplotlib, already a dependency), so that
Cyrillic and other names print; without it the PDF falls back to a core font.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from facetrace.errors import FacetraceError
from facetrace.gallery.quality_bands import quality_band
from facetrace.store.accounts import User
from facetrace.usecases.service import Service
from facetrace.web import images, services
from facetrace.web.facts import BASIS_WORDS, CASE_KIND_LABELS, LEVEL_WORDS, PRIMARY_LABELS, descriptor_rows
from facetrace.workflow import Workflow

MARGIN = 15.0
FACE_MM = 55.0
PHOTO_MM = 85.0


def _font_dir() -> Path | None:
    spec = importlib.util.find_spec("matplotlib")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    return folder if (folder / "DejaVuSans.ttf").is_file() else None


class CaseFile(FPDF):
    """An A4 document with a running header and page numbers."""

    def __init__(self, title: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.doc_title = title
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(True, MARGIN)
        fonts = _font_dir()
        if fonts is not None:
            self.add_font("DejaVu", "", str(fonts / "DejaVuSans.ttf"))
            self.add_font("DejaVu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
            self.base_font = "DejaVu"
        else:
            self.base_font = "Helvetica"
        self.set_title(title)
        self.set_creator("facetrace")

    def clean(self, text: str) -> str:
        """Return text printable in the current font (core fonts only know Latin-1)."""
        if self.base_font == "DejaVu":
            return text
        return text.encode("latin-1", "replace").decode("latin-1")

    def header(self) -> None:
        self.set_font(self.base_font, "", 8)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, self.clean(f"{self.doc_title} · CONFIDENTIAL: biometric and personal data"), align="L")
        self.cell(0, 5, f"page {self.page_no()}/{{nb}}", align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)
        self.ln(2)

    def heading(self, text: str, size: int = 13) -> None:
        if self.get_y() > self.h - MARGIN - 25:
            self.add_page()
        self.ln(2)
        self.set_font(self.base_font, "B", size)
        self.multi_cell(0, 7, self.clean(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(self.base_font, "", 10)

    def para(self, text: str, size: int = 10) -> None:
        self.set_font(self.base_font, "", size)
        self.multi_cell(0, 5, self.clean(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def facts(self, rows: list[tuple[str, str]]) -> None:
        for label, value in rows:
            self.set_font(self.base_font, "B", 10)
            self.cell(45, 5.5, self.clean(label))
            self.set_font(self.base_font, "", 10)
            self.multi_cell(0, 5.5, self.clean(value or "—"), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def pictures(self, jpegs: list[tuple[bytes, str, float, float]], width_mm: float) -> None:
        """Place (jpeg, caption, width px, height px) pictures in rows."""
        per_row = max(1, int((self.w - 2 * MARGIN + 5) // (width_mm + 5)))
        for start in range(0, len(jpegs), per_row):
            row = jpegs[start : start + per_row]
            tallest = max(width_mm * h / max(w, 1) for _, _, w, h in row)
            if self.get_y() + tallest + 10 > self.h - MARGIN:
                self.add_page()
            top = self.get_y()
            for n, (data, caption, w, h) in enumerate(row):
                x = MARGIN + n * (width_mm + 5)
                self.image(data, x=x, y=top, w=width_mm, h=width_mm * h / max(w, 1))
                self.set_xy(x, top + width_mm * h / max(w, 1) + 1)
                self.set_font(self.base_font, "", 8)
                self.multi_cell(width_mm, 4, self.clean(caption), align="L")
            self.set_xy(MARGIN, top + tallest + 10)
        self.set_font(self.base_font, "", 10)


def _date(value: str | None) -> str:
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _level_of(ident: dict[str, Any] | None) -> str:
    """Return an identification's number, status and level in words ("" when none)."""
    if not ident:
        return ""
    level = LEVEL_WORDS.get(ident.get("level") or "", str(ident.get("level") or ""))
    return f"{ident['id']} ({ident['status']}), {level}".rstrip(", ")


def build_case_pdf(wf: Workflow, service: Service, user: User, reference: str) -> tuple[bytes, str, list[str]]:
    """Return the case file of case ``reference`` as PDF bytes, its file name, and the records
    it contains (for the export's audit event). Review decisions of leads still under blind
    review are left out for a user who has not reviewed them.

    Raises:
        NotFoundError, PermissionDenied: as :meth:`CaseService.get_case`.
    """
    # One export, one audit event (case.export, naming every record read here): the reads are not audited apiece.
    case = wf.cases.get_case(user, reference, audited=False)
    leads = [wf.reviews.get_lead(user, lead["id"], audited=False) for lead in case["leads"]]  # blinded
    idents = [wf.identifications.get_identification(user, i["id"], audited=False) for i in case["identifications"]]
    records = [f"case:{case['id']}", *(f"lead:{lead['id']}" for lead in leads)]
    records += [f"identification:{i['id']}" for i in idents]
    settings = service.settings
    media = service.gallery.media
    paths = services.image_paths(service.db, [p["image_id"] for p in case["photos"]])
    decoded: dict[int, Any] = {}

    def rgb_of(image_id: int | None) -> Any:
        if image_id is None:
            return None
        if image_id not in decoded:
            path = paths.get(image_id) or services.image_paths(service.db, [image_id]).get(image_id)
            try:
                decoded[image_id] = images.load_rgb(media.read(path), settings.max_pixels) if path else None
            except (FacetraceError, OSError):
                decoded[image_id] = None
        return decoded[image_id]

    pdf = CaseFile(f"Case file {case['reference']}")
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.heading(f"Case file {case['reference']}", 16)
    pdf.para(
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by {user.username} with facetrace. "
        "A face match is a lead, not proof: identifications rest on two examiners and corroborating evidence."
    )
    pdf.heading("The case")
    pdf.facts(
        [
            ("Reference", case["reference"]),
            ("Status", case["status"].replace("_", " ")),
            ("Condition", case["condition"]),
            ("Found on", _date(case["found_at"])),
            ("Found at", case["found_place"]),
            ("Held by", case["holding_organisation"]),
            ("Description", case["description"]),
            ("Opened", _date(case["created_at"])),
        ]
    )
    # What the case records beyond the face (read with the export's one audit event: facts() records none).
    facts = wf.reconciliation.facts(user, "case", case["reference"])
    pdf.heading("Beyond the face")
    kind_words = CASE_KIND_LABELS.get(facts["kind"], str(facts["kind"]).replace("_", " "))
    parent = f", part of case {facts['parent_case']}" if facts.get("parent_case") else ""
    pdf.facts([("Kind of case", kind_words + parent), *descriptor_rows(facts["descriptors"], "case")])
    for mark in facts["marks"]:
        photos = len(mark["photo_image_ids"])
        pdf.para(f"Mark: {mark['summary']}" + (f" ({photos} photo{'s' if photos != 1 else ''})" if photos else ""))
    for effect in facts["effects"]:
        detail = ", ".join(x for x in (effect["colour"], effect["inscription"], effect["description"]) if x)
        pdf.para(f"Personal effect: {effect['kind'].replace('_', ' ')}" + (f": {detail}" if detail else ""))
    for ref in facts["primary_references"]:
        held = f", held by {ref['holder']}" if ref["holder"] else ""
        sample = f" ({ref['sample_reference']})" if ref["sample_reference"] else ""
        pdf.para(f"{PRIMARY_LABELS.get(ref['kind'], ref['kind'])}: {ref['status']}{held}{sample}")
    if not (facts["marks"] or facts["effects"] or facts["primary_references"]):
        pdf.para("No mark, personal effect or primary identifier reference recorded.")

    pdf.heading(f"Photos ({len(case['photos'])})")
    pictures = []
    for number, photo in enumerate(case["photos"], start=1):
        rgb = rgb_of(photo["image_id"])
        if rgb is None:
            continue
        boxed = images.draw_boxes(rgb, [f["box"] for f in photo["faces"]])
        qualities = ", ".join(f"face {n + 1}: quality {f['quality']:.0f}" for n, f in enumerate(photo["faces"]))
        pictures.append(
            (
                images.encode_jpeg(boxed, max_side=1200),
                f"Photo {number}: {photo['name']} (image {photo['image_id']}). {qualities}",
                float(rgb.shape[1]),
                float(rgb.shape[0]),
            )
        )
    if pictures:
        pdf.pictures(pictures, PHOTO_MM)
    else:
        pdf.para("No photo.")

    pdf.heading(f"Candidates ({len(leads)} lead{'s' if len(leads) != 1 else ''})")
    if not leads:
        pdf.para("No report scored above the review threshold for this case.")
    for lead in leads:
        report = lead["report"] or {}
        pdf.heading(
            f"Lead {lead['id']}: report {report.get('reference', lead['report_id'])}, {report.get('name', '')}", 11
        )
        probe = lead["case_face"] or {}
        # The case face's quality band: what its quality means for the error rates (a marks lead has no face).
        band = quality_band(probe["quality"], min_quality=settings.min_quality) if "quality" in probe else None
        pdf.facts(
            [
                ("Score", f"{lead['score']:.3f} (review threshold {lead['threshold']:.3f})"),
                ("False-match risk", services.fpir_words(lead["fpir"], lead["gallery_size"])),
                ("", services.fmr_words(lead["fmr"])),
                *([("Case face", f"quality {probe['quality']:.0f}, {band.label}. {band.advice}")] if band else []),
                ("Basis", BASIS_WORDS.get(lead.get("basis") or "face", str(lead.get("basis")))),
                ("Status", lead["status"].replace("_", " ")),
                ("Flag", lead["flag"] or ""),
                ("Identification", _level_of(lead.get("identification"))),
            ]
        )
        faces = []
        sides = ((probe, "case face (probe)"), (lead["report_face"] or {}, "reference face"))
        for side, label in sides:  # a marks lead has no face
            rgb = rgb_of(side.get("image_id"))
            if rgb is None or not side.get("box"):
                continue
            crop = images.face_crop_jpeg(rgb, side["box"], size=360)
            shown = f"{label}, quality {side['quality']:.0f}" + (f", {band.label}" if band and side is probe else "")
            faces.append((crop, shown, 360.0, 360.0))
        if faces:
            pdf.pictures(faces, FACE_MM)
        if lead.get("blind"):
            pdf.para(f"Reviews: {lead['hidden_reviews']} hidden (blind review: {user.username} has not decided yet).")
        elif lead["reviews"]:
            for rv in lead["reviews"]:
                pdf.para(
                    f"Review by {rv['reviewer']} on {_date(rv['created_at'])}: {rv['decision']}. {rv['rationale']}"
                )
        else:
            pdf.para("Reviews: none yet.")
        for item in lead["evidence"]:
            ref = f" ({item['reference']})" if item["reference"] else ""
            pdf.para(
                f"Evidence: {item['kind'].replace('_', ' ')}{ref}: {item['description']} "
                f"(recorded by {item['recorded_by']}, {_date(item['created_at'])})"
            )

    pdf.heading("Identifications")
    if not idents:
        pdf.para("None.")
    for ident in idents:
        rows = [
            ("Identification", f"{ident['id']} ({ident['status']})"),
            ("Report", f"{ident['report']['reference']}: {ident['report']['name']}" if ident["report"] else ""),
            ("Confirmed by", f"{ident['first_confirmed_by']} and {ident['second_confirmed_by']}"),
            ("Confirmed", _date(ident["confirmed_at"])),
            ("Evidence items", str(ident["evidence_count"])),
            (
                "Level",
                LEVEL_WORDS.get(ident.get("level") or "", str(ident.get("level")))
                + (f": {ident['level_basis']}" if ident.get("level_basis") else ""),
            ),
        ]
        if ident["status"] == "withdrawn":
            rows.append(
                (
                    "Withdrawn",
                    f"{_date(ident['withdrawn_at'])} by {ident['withdrawn_by']}: {ident['withdrawal_reason']}",
                )
            )
        pdf.facts(rows)
        for note in ident["notifications"]:
            sent = f", sent {_date(note['sent_at'])}" if note["sent_at"] else ""
            pdf.para(
                f"Notification {note['id']} ({note['kind']}, {note['language']}) to {note['recipient']}: "
                f"{note['status']}{sent}"
            )

    pdf.heading("Audit excerpt")
    history = services.record_history(service.db, records, limit=80)
    pdf.set_font(pdf.base_font, "", 8)
    for event in reversed(history):
        pdf.multi_cell(
            0,
            4,
            pdf.clean(
                f"#{event['id']} {_date(event['at'])} {event['actor'] or 'system'} {event['action']} "
                f"[{', '.join(event['records'])}] {event['outcome']}"
            ),
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    if not history:
        pdf.para("No events.")
    data = bytes(pdf.output())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in case["reference"])
    return data, f"case-{safe}.pdf", records
