"""Day one, through the browser only (headless Chromium), from an empty install to a delivered e-mail on a
loopback SMTP server: first-run setup, the settings with an SMTP test message, the users, a report with a
contact, a case, the lead, two reviews with evidence, the identification, the approval, the e-mail received,
then the withdrawal and the correction received. Nothing is configured outside the browser: no user, no
organisation, no mail server. Each step is photographed at 1280 px and at 390 px (a phone) into
docs/screenshots/day-one-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from webtest import IMAGES_LOADED, Inbox, drop_files, face_images, screenshot, serve, wait_until

from facetrace.config import get_settings
from facetrace.server import create_app
from facetrace.store.audit import verify_chain
from facetrace.usecases.setup import open_setup

PASSWORD = "a long day-one password"
SOUGHT = "Kelly_Clarkson"
TEAM = {  # user name -> roles, created by the admin in the browser
    "ivan": ["intake"],
    "olena": ["examiner"],
    "petro": ["reviewer"],
    "maria": ["reviewer"],
}


@pytest.fixture()
def empty_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FastAPI, str]]:
    """A server over an empty data home with nothing configured (no mail server, no organisation), served
    on loopback; (the app, its base URL)."""
    for name in ("FACETRACE_DATABASE_URL", "FACETRACE_VECTOR_URL", "FACETRACE_CALIBRATION_PATH"):
        monkeypatch.delenv(name, raising=False)
    settings = get_settings(home=tmp_path / "home", workers=1, analysis_processes=1)
    configured = {"smtp_host", "smtp_sender", "organisation_name", "organisation_contact"} & settings.model_fields_set
    assert not configured, f"the environment configures {configured}"
    app = create_app(settings)
    with serve(app) as base:
        yield app, base
    app.state.service.close()


def _shoot(page: Any, step: str) -> None:
    """Photograph the page at desktop and phone width; the phone layout must not scroll sideways."""
    for width, height, label in ((1280, 800, "1280"), (390, 844, "390")):
        page.set_viewport_size({"width": width, "height": height})
        wait_until(page, IMAGES_LOADED)
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1"), (step, width)
        screenshot(page, f"day-one-{step}-{label}", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def _sign_in(page: Any, base: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def _approve_drafts(page: Any, base: str, expected: int) -> None:
    page.goto(f"{base}/notifications?status=draft")
    for _ in range(expected):
        page.click("main table a[href^='/notifications/'] >> nth=0")
        assert page.inner_text("#mail-body").strip()
        page.click("#approve-form button[type=submit]")
        page.wait_for_url(re.compile(r".*msg=approved"))
        assert "sent" in page.inner_text("#delivery-status")
        page.goto(f"{base}/notifications?status=draft")


def test_day_one_from_an_empty_install_to_a_delivered_email(
    empty_install: tuple[FastAPI, str], web_smtp: Inbox, page: Any
) -> None:
    app, base = empty_install
    service = app.state.service

    # -- first run: the sign-in page says where the setup link is; the link creates the admin ---------
    page.goto(f"{base}/login")
    assert "First run: no account exists yet" in page.inner_text("main")
    token = open_setup(service)  # what `facetrace serve` prints as the last line of its start-up output
    page.goto(f"{base}/setup?token={token}")
    page.fill("#username", "root")
    page.fill("#display_name", "Roza Admin")
    page.fill("#password", PASSWORD)
    page.fill("#password_again", PASSWORD)
    _shoot(page, "01-setup")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/\?msg=first_admin"))
    assert "Roza Admin" in page.inner_text("body")

    # -- settings: organisation and mail server, then a test message that arrives ------------------------
    page.goto(f"{base}/admin/settings")
    assert page.locator("#notifications-blocked").count() == 1  # nothing set: notifications blocked
    page.fill("#s_organisation_name", "Tracing Service Kyiv")
    page.fill("#s_organisation_contact", "tracing@ident.example.org")
    page.fill("#s_smtp_host", web_smtp.host)
    page.fill("#s_smtp_port", str(web_smtp.port))
    page.select_option("#s_smtp_tls", "none")
    page.fill("#s_smtp_sender", "Identification team <notify@ident.example.org>")
    page.click("#settings-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/admin/settings.*"))
    assert page.locator("#notifications-blocked").count() == 0, page.inner_text("main")
    page.fill("#test_to", "admin@ident.example.org")
    page.click("#smtp-test-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/admin/settings.*"))
    assert "accepted by the mail server" in page.inner_text("#smtp-test-last")
    assert len(web_smtp.to("admin@ident.example.org")) == 1
    _shoot(page, "02-settings")

    # -- the team: one account per person, roles ticked --------------------------------------------------
    for username, roles in TEAM.items():
        page.goto(f"{base}/admin/users")
        page.fill("#nu_username", username)
        page.fill("#nu_display", username.title())
        page.fill("#nu_password", PASSWORD)
        for role in roles:
            page.check(f"#new-user-form input[name=roles][value={role}]")
        page.click("#new-user-form button[type=submit]")
        page.wait_for_url(re.compile(r".*msg=user_created"))
    assert all(name in page.inner_text("main") for name in TEAM)
    _shoot(page, "03-users")

    # -- intake: the report with its family contact and photos; the case -----------------------------
    kelly = face_images(SOUGHT)
    _sign_in(page, base, "ivan")
    page.goto(f"{base}/reports/new")
    page.fill("#name", "Kelly Clarkson")
    page.fill("#reported_by", "Jeanne Taylor (mother), in person")
    page.fill("#source", "tracing request form")
    page.fill("#legal_basis", "consent of the family")
    page.fill("#contact_name_1", "Jeanne Taylor")
    page.fill("#contact_relation_1", "mother")
    page.fill("#contact_email_1", "jeanne@family.example")
    drop_files(page, "[data-dropzone]", kelly[:2])
    wait_until(page, "() => document.querySelectorAll('.dz-item.usable').length === 2")
    page.click("[data-submit]")
    page.wait_for_url(re.compile(r".*/reports/R-\d+\?msg=report_created"))
    report_url = page.url.split("?")[0]
    _shoot(page, "04-report")
    page.goto(f"{base}/cases/new")
    drop_files(page, "[data-dropzone]", [kelly[-1]])
    page.wait_for_selector(".dz-item.usable")
    page.select_option("#condition", "deceased")
    page.fill("#found_place", "Irpin, Ukraine")
    page.click("[data-submit]")
    page.wait_for_url(re.compile(r".*/cases/C-\d+\?msg=case_created"))
    lead_link = page.locator("a[href^='/leads/']").first
    lead_path = lead_link.get_attribute("href")
    assert lead_path, page.inner_text("main")
    _shoot(page, "05-case")

    # -- two reviews, evidence: the identification -----------------------------------------------------------
    _sign_in(page, base, "olena")
    page.goto(base + lead_path)
    page.select_option("#kind", "dna")  # a primary identifier: the identification is confirmed, the family told
    page.fill("#ev_description", "DNA match report: Kelly Clarkson and her mother's reference sample")
    page.fill("#ev_reference", "LAB-2024-0411")
    page.click("#evidence-form button[type=submit]")
    page.wait_for_url(re.compile(r".*msg=evidence_added"))
    page.check("input[name=decision][value=confirm]")
    page.fill("#rationale", "Eyebrows, nose and chin agree; the passport corroborates.")
    page.click("#review-form button[type=submit]")
    page.wait_for_url(re.compile(r".*msg=review_recorded"))
    # The two faces zoom and pan together (a script of facetrace's own; no external asset).
    transforms = "() => Array.from(document.querySelectorAll('[data-zoom] img')).map(i => i.style.transform)"
    page.click("[data-zoom-action=in]")
    page.click("[data-zoom-action=in]")
    assert page.inner_text("#zoom-level") == "156%"
    box = page.locator("[data-zoom] >> nth=0").bounding_box()
    assert box
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2 + 20, steps=4)
    page.mouse.up()
    probe_face, reference_face = page.evaluate(transforms)
    assert (
        probe_face == reference_face and "scale(1.563)" in probe_face and not probe_face.startswith("translate(0%, 0%)")
    )
    page.locator("[data-zoom] >> nth=1").focus()
    page.keyboard.press("-")
    assert page.inner_text("#zoom-level") == "125%"
    page.click("[data-zoom-action=reset]")
    assert page.evaluate(transforms) == ["translate(0%, 0%) scale(1)"] * 2
    _shoot(page, "06-lead")
    _sign_in(page, base, "petro")
    waiting = page.locator("#waiting li[data-kind=second_review] a")
    assert waiting.count() == 1 and waiting.get_attribute("href") == lead_path
    page.goto(base + lead_path)
    page.check("input[name=decision][value=confirm]")
    page.fill("#rationale", "Independent comparison: ears and hairline agree; passport checked.")
    page.click("#review-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/identifications/\d+\?msg=identification_confirmed"))
    ident_url = page.url.split("?")[0]
    _shoot(page, "07-identification")

    # -- approval by another reviewer; the letter arrives ---------------------------------------------------
    _sign_in(page, base, "maria")
    assert page.locator("#waiting li[data-kind=approve]").count() == 1  # petro drafted: maria approves
    _approve_drafts(page, base, 1)
    page.goto(f"{base}/notifications?status=sent")
    page.click("main table a[href^='/notifications/'] >> nth=0")
    # The whole letter is readable, on a phone too: no box to scroll inside.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate(
        "() => { const b = document.getElementById('mail-body'); return b.scrollHeight <= b.clientHeight + 1; }"
    )
    _shoot(page, "08-notification")
    letters = web_smtp.to("jeanne@family.example")
    assert len(letters) == 1
    body = letters[0].get_body(preferencelist=("plain",))
    assert body is not None and "Tracing Service Kyiv" in body.get_content()
    assert "facetrace@localhost" not in letters[0].as_string()  # the settings made in the browser, no placeholder

    # -- withdrawal; the correction arrives ----------------------------------------------------------------
    _sign_in(page, base, "petro")
    page.goto(ident_url)
    page.fill("#reason", "DNA result excludes the identification (lab report 24-0512).")
    page.click("button.danger")
    page.wait_for_url(re.compile(r".*msg=withdrawn"))
    _sign_in(page, base, "maria")
    _approve_drafts(page, base, 1)
    assert len(web_smtp.to("jeanne@family.example")) == 2
    page.goto(report_url)
    assert "missing" in page.inner_text(".titlebar")
    _shoot(page, "09-correction")
    with service.db.sessions() as session:
        assert not verify_chain(session)
