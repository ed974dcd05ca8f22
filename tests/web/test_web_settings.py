"""The settings page, safe approval and the readiness checklist through the web pages (issue 15, items 2,
3 and 4), over a deployment that sets neither the organisation nor the mail server (so what an admin saves
applies), with a real SMTP server on loopback."""

from __future__ import annotations

import html
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from webtest import PASSWORD, USERS, Inbox, client_login, free_port, insert_lead

from facetrace.config import get_settings
from facetrace.server import create_app
from facetrace.store import settings_store
from facetrace.store.accounts import create_user, get_user
from facetrace.workflow import Workflow

SMTP_PASSWORD = "web-Secret-smtp-pw"


@pytest.fixture(scope="module")
def web_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The application over a fresh data home whose deployment sets no organisation and no mail server."""
    home = tmp_path_factory.mktemp("web-settings") / "home"
    with pytest.MonkeyPatch.context() as env:
        for key in settings_store.KEYS:
            env.delenv(settings_store.env_name(key), raising=False)
        settings = get_settings(
            home=home,
            database_url=None,
            vector_url=None,
            calibration_path=None,
            workers=1,
            analysis_processes=1,
            smtp_timeout=10.0,
        )
    app = create_app(settings)
    with app.state.service.db.session() as session:
        for name, roles in USERS.items():
            create_user(session, name, PASSWORD, roles, display_name=name.title())
    yield app
    app.state.service.close()


def signed_in(app: FastAPI, name: str) -> tuple[TestClient, str]:
    client = TestClient(app, base_url="http://127.0.0.1")
    return client, client_login(client, name)


def settings_form(csrf: str, **values: str) -> dict[str, str]:
    return {"csrf_token": csrf, **values}


def test_admin_saves_settings_and_sends_a_test_message(web_app: FastAPI, web_smtp: Inbox) -> None:
    client, csrf = signed_in(web_app, "root")
    first = client.get("/admin/settings")
    assert first.status_code == 200 and 'id="notifications-blocked"' in first.text
    assert re.search(r'id="origin_smtp_host">\s*<span class="badge">default', first.text)
    assert 'href="/admin/settings"' in client.get("/").text  # in the admin's navigation

    bad = client.post("/admin/settings", data=settings_form(csrf, smtp_port="twenty-five", smtp_host="mail.local"))
    assert bad.status_code == 422 and "Not saved." in bad.text
    assert bad.text.index("Not saved.") < bad.text.index('id="settings-form"')  # the error above the form
    assert 'value="twenty-five"' in bad.text and 'value="mail.local"' in bad.text  # the input is kept

    values = {
        "organisation_name": "Tracing Service Kyiv",
        "organisation_contact": "tracing@ident.example.org",
        "smtp_host": web_smtp.host,
        "smtp_port": str(web_smtp.port),
        "smtp_sender": "notify@ident.example.org",
        "smtp_user": "",
        "smtp_password": SMTP_PASSWORD,
    }
    saved = client.post("/admin/settings", data=settings_form(csrf, **values), follow_redirects=False)
    assert saved.status_code == 303 and "msg=settings_saved" in saved.headers["location"]
    shown = client.get("/admin/settings?msg=settings_saved")
    assert "The settings are saved" in shown.text and SMTP_PASSWORD not in shown.text
    assert 'id="notifications-blocked"' not in shown.text
    assert re.search(r'id="origin_smtp_host">\s*<span class="badge">saved', shown.text)

    assert "set: type a new one to replace it" in shown.text
    cleared = client.post("/admin/settings", data=settings_form(csrf, smtp_password_clear="yes"))
    assert cleared.status_code == 200 and 'placeholder="not set"' in cleared.text
    before = len(web_smtp.envelopes)
    sent = client.post("/admin/settings/smtp-test", data={"csrf_token": csrf, "to": "root@ident.example.org"})
    assert sent.status_code == 200 and "The test message was accepted" in sent.text, sent.text[-2000:]
    assert len(web_smtp.envelopes) == before + 1
    assert web_smtp.envelopes[-1].rcpt_tos == ["root@ident.example.org"]


def make_draft(app: FastAPI) -> int:
    """Establish an identification through the workflow (olena, then petro); return its drafted notification."""
    wf = Workflow(app.state.service.gallery, source="test")
    with app.state.service.db.sessions() as session:
        users = {name: get_user(session, name) for name in ("ivan", "olena", "petro")}
    report = wf.reports.create_report(
        users["ivan"],
        name="Olha Kovalenko",
        reported_by="her sister",
        source="family report form",
        legal_basis="consent of the family",
        consent=True,
        consent_date="2024-03-02",
        contacts=[{"name": "Iryna Kovalenko", "relation": "sister", "email": "iryna@family.example", "language": "uk"}],
    )
    case = wf.cases.create_case(
        users["ivan"], condition="deceased", found_at="2024-04-11", found_place="Irpin", holding_organisation="KRFB"
    )
    lead_id = insert_lead(
        app.state.service.db, case["case"]["id"], report["report"]["id"], fmr=1e-4, fpir=1e-3, gallery_size=1
    )
    wf.reviews.add_evidence(users["olena"], lead_id, kind="dna", description="DNA match report", reference="LAB-1")
    wf.reviews.review_lead(users["olena"], lead_id, decision="confirm", rationale="Same scar")
    result = wf.reviews.review_lead(users["petro"], lead_id, decision="confirm", rationale="Agree")
    (nid,) = result["notifications"]["drafted"]
    return int(nid)


def test_the_approval_notice_tells_a_failed_delivery_as_failed(web_app: FastAPI, web_smtp: Inbox) -> None:
    with web_app.state.service.db.session() as session:
        settings_store.save_values(
            session,
            {
                "organisation_name": "Tracing Service Kyiv",
                "organisation_contact": "tracing@ident.example.org",
                "smtp_host": "127.0.0.1",
                "smtp_port": free_port(),  # nothing listens there
                "smtp_sender": "notify@ident.example.org",
            },
            "root",
        )
    nid = make_draft(web_app)
    petro, _ = signed_in(web_app, "petro")
    own = petro.get(f"/notifications/{nid}")
    assert "a different reviewer must approve it (who may: maria)" in own.text

    # The drafter edits the letter: a bad edit keeps what was typed, with the error at the top.
    petro, petro_csrf = signed_in(web_app, "petro")
    added = "We are very sorry for your loss."
    refused = petro.post(f"/notifications/{nid}/edit", data={"csrf_token": petro_csrf, "subject": "", "body": added})
    assert refused.status_code == 422 and "subject is required" in refused.text and added in refused.text
    assert refused.text.index("subject is required") < refused.text.index('id="mail-body"')
    body = own.text.split('id="mail-body">', 1)[1].split("</pre>", 1)[0]
    subject = re.search(r'id="mail-subject">([^<]*)<', own.text)
    assert subject
    form = {"csrf_token": petro_csrf, "subject": html.unescape(subject.group(1)), "body": html.unescape(body) + added}
    saved = petro.post(f"/notifications/{nid}/edit", data=form, follow_redirects=False)
    assert saved.status_code == 303 and "msg=edited" in saved.headers["location"]

    maria, csrf = signed_in(web_app, "maria")
    letter = maria.get(f"/notifications/{nid}")
    assert "Tracing Service Kyiv" in letter.text and "facetrace@localhost" not in letter.text
    assert 'id="edited-note"' in letter.text and f"+{added}" in letter.text
    done = maria.post(f"/notifications/{nid}/approve", data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303 and "msg=approved_failed" in done.headers["location"], done.text[-1500:]
    banner = maria.get(done.headers["location"])
    assert '<div class="error" role="status">The notification is approved, but it was NOT sent' in banner.text
    assert "handed to the mail server" not in banner.text
    assert re.search(r'id="delivery-status">failed', banner.text)


def test_the_readiness_checklist_links_each_item_to_its_fix(
    web_app: FastAPI, tmp_path: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    client, _ = signed_in(web_app, "root")
    before = client.get("/")
    for key, fix in (("encryption", "/admin/settings#encryption"), ("backup", "/admin/settings#backup")):
        item = re.search(rf'<li id="check-{key}" class="todo">.*?</li>', before.text, re.S)
        assert item and f'href="{fix}"' in item.group(0), before.text[-3000:]
    assert '<li id="check-reviewers" class="ok">' in before.text  # petro and maria

    home = web_app.state.service.settings.home
    backup = run_cli("backup", tmp_path / "facetrace-backup.tar", env={"FACETRACE_HOME": str(home)})
    assert backup.returncode == 0, backup.stderr
    assert '<li id="check-backup" class="ok">' in client.get("/").text

    with web_app.state.service.db.session() as session:
        get_user(session, "maria").disabled = True
    try:
        after = client.get("/")
        item = re.search(r'<li id="check-reviewers" class="todo">.*?</li>', after.text, re.S)
        assert item and "1 enabled reviewer(s): petro" in item.group(0) and 'href="/admin/users"' in item.group(0)
    finally:
        with web_app.state.service.db.session() as session:
            get_user(session, "maria").disabled = False


def test_checklist_and_settings_are_for_admins_only(web_app: FastAPI) -> None:
    client, _ = signed_in(web_app, "petro")
    assert 'id="readiness"' not in client.get("/").text
    assert client.get("/admin/settings").status_code == 403


def test_the_languages_offered_for_contacts_follow_the_setting(web_app: FastAPI) -> None:
    root, csrf = signed_in(web_app, "root")
    saved = root.post("/admin/settings", data={"csrf_token": csrf, "notification_languages": "uk, pl"})
    assert saved.status_code == 200 and "The settings are saved" in saved.text
    wf = Workflow(web_app.state.service.gallery, source="test")
    with web_app.state.service.db.sessions() as session:
        ivan = get_user(session, "ivan")
    report = wf.reports.create_report(
        ivan, name="Taras Melnyk", reported_by="his son", source="form", legal_basis="consent", consent=True
    )
    intake, _ = signed_in(web_app, "ivan")
    shown = intake.get(f"/reports/{report['report']['reference']}")
    options = re.findall(r'<option value="([a-z-]+)">', shown.text.split('id="c_language"', 1)[1].split("</select>")[0])
    assert options == ["uk", "pl"]
