"""End to end through the browser (headless Chromium), on real faces and a real SMTP server:
intake of a report (photos dropped onto the form, an unusable photo refused) and of a case, the
lead, blind two-person review with evidence, the identification, notification approval by a
second reviewer, the e-mail received; then the audit trail, the case file PDF, an ad-hoc search,
user administration, the withdrawal and its correction. Screenshots of the key pages go to
docs/screenshots/.

The identities are those of the workflow's end-to-end test (tests/workflow/test_end_to_end.py):
with these four reports the mated probe clears the review threshold and no two reports do.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from webtest import IMAGES_LOADED, SPECIAL, Inbox, browser_login, drop_files, face_images, screenshot, wait_until

from facetrace.store.accounts import User, get_user
from facetrace.store.audit import list_events, verify_chain
from facetrace.workflow import PhotoInput, Workflow

OTHER_REPORTS = ["Aaron_Peirsol", "Elton_John", "Michael_Jordan"]
SOUGHT = "Kelly_Clarkson"


def _seed_other_reports(app: FastAPI) -> None:
    """Three reports registered beforehand (through the workflow service, not the browser)."""
    service = app.state.service
    with service.db.sessions() as session:
        ivan: User = get_user(session, "ivan")
    wf = Workflow(service.gallery, source="test")
    for name in OTHER_REPORTS:
        wf.reports.create_report(
            ivan,
            name=name.replace("_", " "),
            reported_by="family, by phone",
            source="tracing request form",
            legal_basis="consent of the family",
            consent=True,
            consent_date="2024-02-01",
            photos=[PhotoInput(p.name, p.read_bytes()) for p in face_images(name)[:2]],
        )


def _no_overflow(page: Any) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_intake_to_email_through_the_browser(web_app: FastAPI, web_server: str, web_smtp: Inbox, page: Any) -> None:
    base = web_server
    _seed_other_reports(web_app)
    kelly = face_images(SOUGHT)

    # -- intake: the report, photos dropped onto the form ------------------------------------------
    browser_login(page, base, "ivan")
    page.goto(f"{base}/reports/new")
    page.fill("#name", "Kelly Clarkson")
    page.fill("#date_of_birth", "1982-04-24")
    page.fill("#description", "Last seen in Irpin, March 2024. Small scar above the left eyebrow.")
    page.fill("#reported_by", "Jeanne Taylor (mother), in person at the Kyiv office")
    page.fill("#source", "tracing request form")
    page.fill("#legal_basis", "consent of the family")
    page.check("#consent")
    page.fill("#consent_date", "2024-03-02")
    page.fill("#contact_name_1", "Jeanne Taylor")
    page.fill("#contact_relation_1", "mother")
    page.fill("#contact_email_1", "jeanne@family.example")
    page.select_option("#contact_language_1", "uk")
    page.click("[data-add-contact]")
    page.fill("#contact_name_2", "Jason Clarkson")
    page.fill("#contact_relation_2", "brother")
    page.fill("#contact_email_2", "jason@family.example")
    page.select_option("#contact_language_2", "ru")
    # A photo without a face is refused with its reason, and blocks the form until removed.
    drop_files(page, "[data-dropzone]", [kelly[0], kelly[1], SPECIAL / "no_face.png"])
    page.wait_for_selector(".dz-item.refused")
    wait_until(page, "() => document.querySelectorAll('.dz-item.usable').length === 2")
    refused = page.inner_text(".dz-item.refused")
    assert "no face found" in refused
    assert page.is_disabled("[data-submit]")
    usable = page.inner_text(".dz-item.usable >> nth=0")
    assert "1 face found" in usable and "quality" in usable
    assert page.locator(".dz-item.usable svg rect.box").count() == 2  # each detected face boxed
    screenshot(page, "report-intake", full_page=True)
    page.click(".dz-item.refused button")
    wait_until(page, "() => !document.querySelector('[data-submit]').disabled")
    page.click("[data-submit]")
    page.wait_for_url(re.compile(r".*/reports/R-\d+\?msg=report_created"))
    report_url = page.url.split("?")[0]
    assert "Kelly Clarkson" in page.inner_text("h1")
    assert page.locator(".photos figure").count() == 2
    assert page.locator(".photos svg rect.box").count() == 2
    assert "Jeanne Taylor" in page.inner_text("#contacts-h + table")
    wait_until(page, IMAGES_LOADED)
    screenshot(page, "report", full_page=True)

    # -- intake: the case; its search against the reports finds the lead -----------------------------
    page.goto(f"{base}/cases/new")
    drop_files(page, "[data-dropzone]", [kelly[-1]])
    page.wait_for_selector(".dz-item.usable")
    page.select_option("#condition", "deceased")
    page.fill("#found_at", "2024-04-11")
    page.fill("#found_place", "Irpin, Ukraine")
    page.fill("#holding_organisation", "Kyiv Regional Forensic Bureau")
    page.click("[data-submit]")
    page.wait_for_url(re.compile(r".*/cases/C-\d+\?msg=case_created"))
    case_url = page.url.split("?")[0]
    # The lead of the sought person's report (whatever other pairs the calibration lets through).
    report_ref = report_url.rsplit("/", 1)[1]
    row = page.locator("#leads-h ~ table tbody tr", has=page.locator(f"a[href='/reports/{report_ref}']"))
    assert row.count() == 1, page.inner_text("main")
    lead_path = row.locator("a[href^='/leads/']").get_attribute("href")
    assert lead_path
    wait_until(page, IMAGES_LOADED)
    screenshot(page, "case", full_page=True)

    # -- first examiner: dashboard queue, lead side by side, evidence, confirmation ---------------------
    browser_login(page, base, "olena")
    assert int(page.inner_text("#count-new-leads")) >= 1
    screenshot(page, "dashboard")
    page.goto(base + lead_path)
    # The two faces compared, big, side by side; every reference face of the report beside them.
    assert page.locator(".compare .side .face.big img.crop").count() == 2
    assert page.locator("#reference-faces img.crop").count() == 2
    plain = page.inner_text(".score .plain")
    assert re.search(
        r"A false match this strong happens in (about|fewer than) 1 of [\d,]+ searches of a gallery this size", plain
    )
    assert "(4 persons)" in plain
    page.select_option("#kind", "dna")  # a primary identifier: the identification is confirmed, the family told
    page.fill("#ev_description", "DNA match report: Kelly Clarkson, born 1982-04-24, and her mother's sample")
    page.fill("#ev_reference", "LAB-2024-0411")
    page.click("#evidence-form button[type=submit]")
    page.wait_for_url(re.compile(r".*msg=evidence_added"))
    page.check("input[name=decision][value=confirm]")
    page.fill("#rationale", "Same eyebrow shape, nose and chin; scar position agrees; passport corroborates.")
    page.click("#review-form button[type=submit]")
    page.wait_for_url(re.compile(r".*msg=review_recorded"))
    assert "Same eyebrow shape" in page.inner_text("ol.reviews")
    wait_until(page, IMAGES_LOADED)
    screenshot(page, "lead-review", full_page=True)

    # -- second reviewer: blind until they decide --------------------------------------------------------
    browser_login(page, base, "petro")
    assert int(page.inner_text("#count-second-review")) >= 1
    page.goto(base + lead_path)
    main = page.inner_text("main")
    assert "Blind review" in page.inner_text("#blind-note")
    assert "Same eyebrow shape" not in main  # the first examiner's rationale and decision are hidden
    assert page.locator("ol.reviews").count() == 0
    screenshot(page, "lead-blind-review", full_page=True)
    page.check("input[name=decision][value=confirm]")
    page.fill("#rationale", "Independent comparison: ear shape and hairline agree; document evidence checked.")
    page.click("#review-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/identifications/\d+\?msg=identification_confirmed"))
    ident_url = page.url.split("?")[0]
    assert "olena" in page.inner_text("main") and "petro" in page.inner_text("main")
    assert page.locator("#notes-h + table tbody tr").count() == 2
    screenshot(page, "identification", full_page=True)
    # The drafter cannot approve their own draft.
    page.click("#notes-h + table a >> nth=0")
    assert "a different reviewer must approve" in page.inner_text("main")

    # -- approval by a second reviewer; the e-mail arrives ----------------------------------------------
    browser_login(page, base, "maria")
    assert page.inner_text("#count-approve") == "2"
    page.goto(f"{base}/notifications?status=draft")
    for _ in range(2):
        page.click("main table a[href^='/notifications/'] >> nth=0")
        subject = page.inner_text("#mail-subject")
        assert subject and page.inner_text("#mail-body").strip()
        page.click("#approve-form button[type=submit]")
        page.wait_for_url(re.compile(r".*msg=approved"))
        assert "sent" in page.inner_text("#delivery-status")
        page.goto(f"{base}/notifications?status=draft")
    page.goto(f"{base}/notifications?status=sent")
    page.click("main table a[href^='/notifications/'] >> nth=0")
    assert _no_overflow(page)
    screenshot(page, "notification", full_page=True)
    jeanne = web_smtp.to("jeanne@family.example")
    jason = web_smtp.to("jason@family.example")
    assert len(jeanne) == 1 and len(jason) == 1
    assert jeanne[0]["Content-Language"] == "uk" and jason[0]["Content-Language"] == "ru"
    assert not [p for p in jeanne[0].walk() if p.get_content_disposition() == "attachment"]  # no photo unless chosen

    # -- the case file as PDF ---------------------------------------------------------------------------
    pdf = page.request.get(f"{case_url}/report.pdf")
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF") and len(pdf.body()) > 20_000  # photos and face crops inside

    # -- ad-hoc search (examiner) -------------------------------------------------------------------------
    browser_login(page, base, "olena")
    page.goto(f"{base}/search")
    page.fill("#case_reference", "C-walk-in-17")
    page.fill("#purpose", "identify a patient brought in unconscious")
    page.set_input_files("#image-input", str(face_images("Elton_John")[-1]))
    page.wait_for_selector(".dz-item.usable")
    page.click("[data-submit]")
    page.wait_for_selector("article.result")
    assert "Elton John" in page.inner_text("article.result >> nth=0")
    wait_until(page, IMAGES_LOADED)
    screenshot(page, "search", full_page=True)

    # -- audit trail (auditor) ----------------------------------------------------------------------------
    browser_login(page, base, "anna")
    page.goto(f"{base}/audit?verify=1")
    assert "intact" in page.inner_text("#chain-status")
    page.fill("#action", "lead.review")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r".*action=lead.review"))
    assert page.locator("table.audit tbody tr").count() == 2
    page.fill("#action", "")
    page.click("form.filters button[type=submit]")
    screenshot(page, "audit")

    # -- user administration (admin) ----------------------------------------------------------------------
    browser_login(page, base, "root")
    page.goto(f"{base}/admin/users")
    page.fill("#nu_username", "oksana")
    page.fill("#nu_display", "Oksana Melnyk")
    page.fill("#nu_password", "a-long-enough-password")
    page.check("input[name=roles][value=examiner]")
    page.click("#new-user-form button[type=submit]")
    page.wait_for_url(re.compile(r".*msg=user_created"))
    assert "oksana" in page.inner_text("main table")
    screenshot(page, "users")

    # -- withdrawal and correction ----------------------------------------------------------------------
    browser_login(page, base, "petro")
    page.goto(ident_url)
    page.fill("#reason", "DNA result excludes the identification (lab report 24-0512).")
    page.dialogs.clear()
    page.click("button.danger")
    page.wait_for_url(re.compile(r".*msg=withdrawn"))
    assert page.dialogs and "Withdraw identification" in page.dialogs[0]
    assert page.locator("#notes-h + table tbody tr").count() == 4  # two sent, two corrections drafted
    browser_login(page, base, "maria")
    page.goto(f"{base}/notifications?status=draft")
    for _ in range(2):
        page.click("main table a[href^='/notifications/'] >> nth=0")
        page.click("#approve-form button[type=submit]")
        page.wait_for_url(re.compile(r".*msg=approved"))
        page.goto(f"{base}/notifications?status=draft")
    assert len(web_smtp.to("jeanne@family.example")) == 2 and len(web_smtp.to("jason@family.example")) == 2
    page.goto(report_url)
    assert "missing" in page.inner_text(".titlebar")

    # -- every view of biometric data was audited; the trail is intact ----------------------------------
    with web_app.state.service.db.sessions() as session:
        views, total = list_events(session, action="media.view", actor="olena")
        assert total > 0 and all(e.outcome == "ok" for e in views)
        assert not verify_chain(session)
    assert not [d for d in page.dialogs if "Withdraw" not in d]  # no injected dialog anywhere


def test_layout_fits_tablet_and_desktop_and_works_by_keyboard(web_server: str, page: Any) -> None:
    base = web_server
    # Sign in with the keyboard only: the user name field has the focus.
    page.goto(f"{base}/login")
    wait_until(page, "() => document.activeElement && document.activeElement.id === 'username'")  # autofocus
    page.keyboard.type("olena")
    page.keyboard.press("Tab")
    page.keyboard.type("correct-horse-battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/")
    # The skip link is the first stop of the tab order and moves the focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    paths = ["/", "/reports", "/cases/new", "/leads", "/search", "/notifications", "/identifications"]
    for listing, prefix in (("/notifications", "/notifications/"), ("/identifications", "/identifications/")):
        page.goto(base + listing)
        links = page.locator(f"main table a[href^='{prefix}']")
        if links.count():  # the records made by the flow test above
            paths.append(str(links.first.get_attribute("href")))
    for path in paths:
        for width, height in ((1280, 800), (800, 1100)):
            page.set_viewport_size({"width": width, "height": height})
            page.goto(base + path)
            assert _no_overflow(page), f"{path} overflows at {width}px"
    page.goto(f"{base}/leads")
    first = page.locator("main table a[href^='/leads/']")
    if first.count():
        page.set_viewport_size({"width": 800, "height": 1100})
        first.first.click()
        wait_until(page, IMAGES_LOADED)
        assert _no_overflow(page)
        screenshot(page, "lead-tablet")
