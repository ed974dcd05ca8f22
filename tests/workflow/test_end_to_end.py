"""End to end on real faces (tests/data/faces), SQLite and PostgreSQL: reports enrolled from
photos, a case opened with another photo of one of them, the lead, two confirmations with
evidence, approval, the e-mail; then the withdrawal and the correction. And the negatives: a
case whose person is not in the gallery yields no lead; the same person reported twice is
flagged and merged.

Nothing here is random: the same photos give the same scores. The identities were picked, with
the gallery's scoring and shipped calibration of the time (cohort-normalised cosine; review
threshold -0.038 to -0.021 for galleries of 1 to 4 persons at FPIR 0.1), for wide margins: the
closest two reports score -0.067 (0.039 below the lowest threshold they meet), the mated probe
scores 0.091 (0.11 above), the other reports score at most -0.079 for it, and the distractor's
best score is -0.085 (0.065 below). If the scoring or the calibration changes, re-check these
margins rather than loosening the assertions. Note that at this review threshold about half of
the 40 committed distractors *do* reach a 4-report gallery (see docs/workflow.md).
"""

from __future__ import annotations

from typing import Any

from wftest import Inbox, distractor_image, face_images, photo

from facetrace.store.accounts import User
from facetrace.store.audit import verify_chain
from facetrace.workflow import Workflow

REPORTS = ["Andrew_Weissmann", "Kelly_Clarkson", "Michael_Jordan", "Naoto_Kan"]
SOUGHT = "Kelly_Clarkson"
DISTRACTOR = "Tonino_Guerra"  # never enrolled anywhere
FAMILY = [
    {"name": "Jeanne Taylor", "relation": "mother", "email": "jeanne@family.example", "language": "uk"},
    {"name": "Jason Clarkson", "relation": "brother", "email": "jason@family.example", "language": "ru"},
]


def _enroll_reports(wf: Workflow, users: dict[str, User]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in REPORTS:
        result = wf.reports.create_report(
            users["ivan"],
            name=name.replace("_", " "),
            reported_by="family, by phone",
            source="tracing request form",
            legal_basis="consent of the family",
            consent=True,
            consent_date="2024-02-01",
            contacts=FAMILY if name == SOUGHT else [],
            photos=[photo(p) for p in face_images(name)[:2]],
        )
        assert result["photos"] == {"enrolled": 2, "skipped": 0, "errors": []}, result["photos"]
        assert result["matching"]["duplicates_flagged"] == []
        out[name] = result
    assert wf.gallery.gallery_size() == len(REPORTS)
    return out


def test_end_to_end_identification_notification_and_correction(
    wf: Workflow, users: dict[str, User], smtp: Inbox
) -> None:
    reports = _enroll_reports(wf, users)
    sought = reports[SOUGHT]["report"]
    case = wf.cases.create_case(
        users["ivan"],
        condition="deceased",
        found_at="2024-04-11T09:30:00+03:00",
        found_place="Irpin, Ukraine",
        holding_organisation="Kyiv Regional Forensic Bureau",
        photos=[photo(face_images(SOUGHT)[-1])],
    )
    matching = case["matching"]
    assert matching["gallery_size"] == 4 and matching["review_fpir"] == 0.1
    (lead_id,) = matching["leads"]["created"]
    lead = wf.reviews.get_lead(users["olena"], lead_id)
    assert lead["report"]["reference"] == sought["reference"]
    assert lead["score"] >= lead["threshold"] == matching["threshold"]
    assert lead["fpir"] <= 0.1 and 0 < lead["fmr"] <= lead["fpir"]
    assert len(lead["case_face"]["box"]) == 4 and lead["case_face"]["quality"] > 20
    assert lead["report_face"]["image_id"] is not None and lead["report_face"]["quality"] > 20
    assert wf.cases.get_case(users["olena"], case["case"]["reference"])["status"] == "under_review"

    # Re-running the matching, in either direction, never duplicates the lead.
    again = wf.matching.match_case(users["olena"], case["case"]["reference"])
    assert again["leads"] == {"created": [], "updated": [], "unchanged": [lead_id]}
    assert wf.matching.match_report(users["olena"], sought["reference"])["leads"]["created"] == []
    assert wf.matching.match_all(users["olena"])["leads"]["created"] == []
    assert [x["id"] for x in wf.reviews.list_leads(users["olena"])] == [lead_id]

    # Two different users confirm, with evidence.
    wf.reviews.add_evidence(
        users["olena"], lead_id, kind="dental", description="Dental records match", reference="FO-2024-117"
    )
    first = wf.reviews.review_lead(users["olena"], lead_id, decision="confirm", rationale="Face and tattoo match")
    assert first["identification"] is None
    done = wf.reviews.review_lead(users["petro"], lead_id, decision="confirm", rationale="Independent check: match")
    ident = done["identification"]
    assert ident["status"] == "confirmed" and len(done["notifications"]["drafted"]) == 2
    assert wf.reports.get_report(users["olena"], sought["reference"])["status"] == "identified_deceased"

    # A second reviewer approves; the family receives the e-mail in their languages.
    for nid in done["notifications"]["drafted"]:
        wf.notifications.approve_notification(users["maria"], nid)
    assert wf.outbox.send_notifications(users["maria"])["sent"] == 2
    (mother,) = smtp.to("jeanne@family.example")
    (brother,) = smtp.to("jason@family.example")
    assert mother["Content-Language"] == "uk" and brother["Content-Language"] == "ru"
    for msg in (mother, brother):
        body = msg.get_body(preferencelist=("plain",)).get_content()
        assert "Kelly Clarkson" in body and case["case"]["reference"] in body and "Irpin" in body
        assert "2024-04-11" in body and "Tracing Service Kyiv" in body
        assert list(msg.iter_attachments()) == []
    assert "ідентифікація" in mother["Subject"] and "идентификация" in brother["Subject"]

    # Withdrawn: corrections go, through the same approval, to everyone who was notified.
    out = wf.identifications.withdraw_identification(users["maria"], ident["id"], reason="DNA excluded the match")
    assert out["notifications"]["cancelled"] == []
    corrections = out["notifications"]["corrections_drafted"]
    assert len(corrections) == 2
    for nid in corrections:
        wf.notifications.approve_notification(users["petro"], nid)
    assert wf.outbox.send_notifications(users["petro"])["sent"] == 2
    assert len(smtp.envelopes) == 4
    assert smtp.to("jeanne@family.example")[-1]["Subject"].startswith("Виправлення")
    assert smtp.to("jason@family.example")[-1]["Subject"].startswith("Исправление")
    assert wf.reports.get_report(users["olena"], sought["reference"])["status"] == "missing"
    assert wf.cases.get_case(users["olena"], case["case"]["reference"])["status"] == "open"
    assert wf.reviews.get_lead(users["olena"], lead_id)["status"] == "withdrawn"
    assert wf.outbox.send_notifications(users["petro"])["results"] == []  # nothing twice
    assert len(smtp.envelopes) == 4
    with wf.db.sessions() as session:
        assert verify_chain(session) == []


def test_a_case_whose_person_is_not_in_the_gallery_yields_no_lead(wf: Workflow, users: dict[str, User]) -> None:
    reports = _enroll_reports(wf, users)
    probe = distractor_image(DISTRACTOR)
    case = wf.cases.create_case(users["ivan"], condition="alive", photos=[photo(probe)])
    threshold = case["matching"]["threshold"]
    assert case["matching"]["leads"]["created"] == []
    # The best candidate, as the plain gallery search sees it, is below the review threshold.
    found = wf.gallery.search(probe.read_bytes(), name=probe.name, top_k=len(REPORTS)).to_dict()
    best = max(c["score"] for c in found["faces"][0]["candidates"])
    assert best < threshold, f"distractor {DISTRACTOR} scores {best:.4f} >= review threshold {threshold:.4f}"
    # And from the other direction, each report searched against the open cases.
    for result in reports.values():
        assert wf.matching.match_report(users["ivan"], result["report"]["reference"])["leads"]["created"] == []
    assert wf.reviews.list_leads(users["olena"]) == []
    assert wf.cases.get_case(users["olena"], case["case"]["reference"])["status"] == "open"


def test_a_report_finds_open_cases_and_duplicates_are_merged(wf: Workflow, users: dict[str, User]) -> None:
    images = face_images("Aaron_Peirsol")
    case = wf.cases.create_case(users["ivan"], condition="alive", photos=[photo(images[3])])
    assert case["matching"]["leads"]["created"] == []  # no reports yet
    common = {"reported_by": "hotline", "source": "phone", "legal_basis": "consent"}
    first = wf.reports.create_report(
        users["ivan"],
        name="Aaron Peirsol",
        photos=[photo(p) for p in images[:2]],
        contacts=[{"name": "Mother", "relation": "mother", "email": "mum@example.org"}],
        **common,
    )
    (lead_a,) = first["matching"]["leads"]["created"]  # the new report was searched against open cases
    second = wf.reports.create_report(
        users["olena"],
        name="A. Peirsol",
        photos=[photo(images[2])],
        contacts=[{"name": "Friend", "relation": "friend", "email": "friend@example.org"}],
        **common,
    )
    (lead_b,) = second["matching"]["leads"]["created"]
    (flag_id,) = second["matching"]["duplicates_flagged"]
    (flag,) = wf.matching.list_duplicates(users["olena"])
    assert flag["id"] == flag_id and flag["score"] >= second["matching"]["threshold"]
    assert {flag["report"]["reference"], flag["other_report"]["reference"]} == {
        first["report"]["reference"],
        second["report"]["reference"],
    }

    merged = wf.matching.merge_reports(
        users["olena"], second["report"]["reference"], first["report"]["reference"], rationale="Same person, same DOB"
    )
    assert merged["source"]["status"] == "merged"
    assert wf.matching.list_duplicates(users["olena"]) == []
    # Both histories are kept: the merged report, its lead (flagged) and its contact.
    assert wf.reviews.get_lead(users["olena"], lead_b)["flag"].startswith(
        f"report {second['report']['reference']} was merged"
    )
    target = wf.reports.get_report(users["olena"], first["report"]["reference"])
    assert target["merged_from"] == [second["report"]["reference"]]
    assert {c["email"] for c in target["contacts"]} == {"mum@example.org", "friend@example.org"}
    assert wf.reports.get_report(users["olena"], second["report"]["reference"])["leads"][0]["id"] == lead_b
    # Matching again creates nothing new: the merged person now stands for the target report.
    assert wf.matching.match_all(users["olena"])["leads"]["created"] == []
    assert sorted(x["id"] for x in wf.reviews.list_leads(users["olena"])) == sorted([lead_a, lead_b])
