"""The web pages without a browser (TestClient) and a few with one: the authorisation matrix of
every web route, CSRF, escaping of user content, security headers, audited media, photo checks,
blind review, the PDF export and error pages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from webtest import PASSWORD, SPECIAL, USERS, browser_login, client_login, face_images, insert_lead

from facetrace.store.accounts import get_user
from facetrace.store.audit import list_events
from facetrace.workflow import Workflow

XSS = "<script>alert(1)</script>"
XSS_IMG = '<img src=x onerror="alert(2)">'
READERS = {"intake", "examiner", "reviewer"}
PUBLIC = "public"
SIGNED_IN = "signed-in"

# Every web route (outside /api/v1) and who may use it. A route missing here fails the test.
ACCESS: dict[tuple[str, str], str | set[str]] = {
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/setup"): PUBLIC,
    ("POST", "/setup"): PUBLIC,
    ("POST", "/logout"): SIGNED_IN,
    ("GET", "/"): SIGNED_IN,
    ("GET", "/static/{path:path}"): PUBLIC,
    ("POST", "/intake/check-photo"): {"intake", "examiner"},
    ("GET", "/reports"): READERS,
    ("GET", "/reports/new"): {"intake", "examiner"},
    ("POST", "/reports/new"): {"intake", "examiner"},
    ("GET", "/reports/{reference}"): READERS,
    ("POST", "/reports/{reference}/photos"): {"intake", "examiner"},
    ("POST", "/reports/{reference}/contacts"): {"intake", "examiner"},
    ("POST", "/reports/{reference}/edit"): {"intake", "examiner"},
    ("POST", "/reports/{reference}/contacts/{contact_id}"): {"intake", "examiner"},
    ("POST", "/cases/{reference}/edit"): {"intake", "examiner"},
    ("GET", "/duplicates"): READERS,
    ("GET", "/duplicates/{flag_id}"): READERS,
    ("POST", "/duplicates/{flag_id}/merge"): {"examiner", "reviewer"},
    ("POST", "/duplicates/{flag_id}/dismiss"): {"examiner", "reviewer"},
    ("GET", "/cases"): READERS,
    ("GET", "/cases/new"): {"intake", "examiner"},
    ("POST", "/cases/new"): {"intake", "examiner"},
    ("GET", "/cases/{reference}"): READERS,
    ("POST", "/cases/{reference}/photos"): {"intake", "examiner"},
    ("GET", "/cases/{reference}/report.pdf"): READERS,
    ("GET", "/leads"): READERS,
    ("GET", "/leads/{lead_id}"): READERS,
    ("POST", "/leads/{lead_id}/review"): {"examiner", "reviewer"},
    ("POST", "/leads/{lead_id}/evidence"): {"examiner", "reviewer"},
    ("GET", "/identifications"): READERS,
    ("GET", "/identifications/{ident_id}"): READERS,
    ("POST", "/identifications/{ident_id}/withdraw"): {"reviewer"},
    ("POST", "/identifications/{ident_id}/draft"): {"examiner", "reviewer"},
    ("GET", "/notifications"): READERS,
    ("GET", "/notifications/{nid}"): READERS,
    ("POST", "/notifications/{nid}/edit"): {"examiner", "reviewer"},
    ("POST", "/notifications/{nid}/approve"): {"reviewer"},
    ("POST", "/notifications/{nid}/send"): {"reviewer", "admin"},
    ("POST", "/notifications/{nid}/cancel"): {"reviewer"},
    ("POST", "/notifications/{nid}/resolve"): {"reviewer", "admin"},
    ("GET", "/search"): {"examiner"},
    ("POST", "/search"): {"examiner"},
    ("GET", "/search/video"): {"examiner"},
    ("POST", "/search/video"): {"examiner"},
    ("GET", "/search/video/{job_id}"): {"examiner", "reviewer"},
    ("POST", "/search/video/{job_id}/cancel"): {"examiner"},
    ("GET", "/search/history"): {"examiner", "reviewer", "auditor"},
    ("GET", "/audit"): {"auditor"},
    ("GET", "/audit.csv"): {"auditor"},
    ("GET", "/reports.csv"): READERS,
    ("GET", "/cases.csv"): READERS,
    ("GET", "/admin/users"): {"admin"},
    ("POST", "/admin/users"): {"admin"},
    ("GET", "/admin/users/{username}"): {"admin"},
    ("POST", "/admin/users/{username}"): {"admin"},
    ("GET", "/admin/settings"): {"admin"},
    ("POST", "/admin/settings"): {"admin"},
    ("POST", "/admin/settings/smtp-test"): {"admin"},
    ("GET", "/media/images/{image_id}"): READERS,
    ("GET", "/media/faces/{face_id}"): READERS,
    **{
        ("POST", f"/{plural}/{{reference}}/{tail}"): {"intake", "examiner"}
        for plural in ("reports", "cases")
        for tail in (
            "descriptors",
            "marks",
            "marks/{mark_id}/remove",
            "effects",
            "primary-references",
            "primary-references/{item_id}",
        )
    },
    ("POST", "/cases/{reference}/kind"): {"intake", "examiner"},
    ("POST", "/cases/{reference}/widen"): {"examiner", "reviewer"},
    ("POST", "/leads/{lead_id}/reopen"): {"reviewer"},
    ("POST", "/identifications/{ident_id}/confirm"): {"admin"},
    ("GET", "/search/marks"): READERS,
    ("POST", "/search/marks"): READERS,
}
PATH_VALUES = {
    "reference": "NO-SUCH-REF",
    "lead_id": "999999",
    "ident_id": "999999",
    "nid": "999999",
    "username": "nobody",
    "image_id": "999999",
    "face_id": "999999",
    "job_id": "999999",
    "contact_id": "999999",
    "flag_id": "999999",
    "mark_id": "999999",
    "item_id": "999999",
    "path:path": "style.css",
}


def web_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Return (method, path) of every route outside the API."""
    found = []
    for route in iter_route_contexts(app.routes):
        if route.path.startswith("/api/"):
            continue
        for method in sorted(route.methods or ()):
            if method == "HEAD" and "GET" in (route.methods or ()):
                continue
            found.append((method, route.path))
    return found


def _url(path: str) -> str:
    for key, value in PATH_VALUES.items():
        path = path.replace("{" + key + "}", value)
    return path


def _is_login_redirect(response: Any) -> bool:
    return response.status_code == 303 and response.headers["location"].startswith("/login")


def test_every_web_route_checks_roles(web_app: FastAPI) -> None:
    routes = web_routes(web_app)
    missing = [r for r in routes if r not in ACCESS]
    assert not missing, f"web routes missing from the authorisation table: {missing}"
    stale = [r for r in ACCESS if r not in routes]
    assert not stale, f"table entries for routes that no longer exist: {stale}"
    clients: dict[str | None, tuple[TestClient, str]] = {}
    for name in [None, *USERS]:
        client = TestClient(web_app, base_url="http://127.0.0.1")
        clients[name] = (client, client_login(client, name) if name else "")
    checks = 0
    for method, path in routes:
        rule = ACCESS[(method, path)]
        if path == "/logout":
            continue  # below: it ends the session the other checks use
        for name, (client, csrf) in clients.items():
            roles = set(USERS[name]) if name else set()
            kwargs: dict[str, Any] = {"follow_redirects": False}
            if method == "POST":
                kwargs["data"] = {"csrf_token": csrf}
            response = client.request(method, _url(path), **kwargs)
            checks += 1
            where = f"{method} {path} as {name or 'anonymous'}: {response.status_code}"
            if rule == PUBLIC:
                assert response.status_code < 500 and not _is_login_redirect(response), where
            elif name is None and path == "/intake/check-photo":  # the page script's JSON endpoint
                assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized", where
            elif name is None:
                assert _is_login_redirect(response), where
            elif rule == SIGNED_IN or roles & rule:  # type: ignore[operator]
                assert response.status_code not in (401, 403) and not _is_login_redirect(response), where
                assert response.status_code < 500, where + response.text[-500:]
            else:
                assert response.status_code == 403, where
                assert "Not allowed" in response.text or response.json()["error"]["code"] == "forbidden", where
    for name, (client, csrf) in clients.items():
        response = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
        assert _is_login_redirect(response), name
        assert _is_login_redirect(client.get("/", follow_redirects=False)), f"{name} still signed in after logout"
    assert checks > 250
    with web_app.state.service.db.sessions() as session:
        _, denied = list_events(session, action="access.denied", actor="anna")
    assert denied > 0  # refusals are audited


def test_form_posts_need_the_session_csrf_token(client: TestClient, web_app: FastAPI) -> None:
    csrf = client_login(client, "ivan")
    form = {"name": "CSRF Victim", "reported_by": "x", "source": "x", "legal_basis": "x"}
    for token in (None, "forged-token"):
        data = dict(form, **({"csrf_token": token} if token else {}))
        response = client.post("/reports/new", data=data, follow_redirects=False)
        assert response.status_code == 403 and "CSRF" in response.text
    assert "CSRF Victim" not in client.get("/reports").text
    response = client.post("/reports/new", data=dict(form, csrf_token=csrf), follow_redirects=False)
    assert response.status_code == 303
    # A sign-in form posted from elsewhere (no sign-in cookie of this site) is refused.
    other = TestClient(web_app, base_url="http://127.0.0.1")
    response = other.post("/login", data={"username": "ivan", "password": PASSWORD, "login_csrf": "x"})
    assert response.status_code == 403 and "facetrace_session" not in response.cookies


def test_user_content_is_escaped_everywhere(client: TestClient) -> None:
    csrf = client_login(client, "ivan")
    response = client.post(
        "/reports/new",
        data={
            "csrf_token": csrf,
            "name": XSS,
            "description": XSS_IMG,
            "reported_by": XSS,
            "source": "form",
            "legal_basis": "consent",
            "contact_name": XSS_IMG,
            "contact_relation": "sister",
            "contact_email": "sister@family.example",
            "contact_phone": "",
            "contact_language": "en",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    for path in (location, "/reports", f"/reports?q={XSS}", "/"):
        html = client.get(path).text
        assert XSS not in html and XSS_IMG not in html, path
    html = client.get(location).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    # A case reference with markup is refused, and the message is escaped too.
    response = client.post("/cases/new", data={"csrf_token": csrf, "condition": "deceased", "reference": XSS})
    assert response.status_code == 422 and XSS not in response.text


def test_script_in_a_report_name_never_runs_in_the_browser(web_app: FastAPI, web_server: str, page: Any) -> None:
    service = web_app.state.service
    with service.db.sessions() as session:
        ivan = get_user(session, "ivan")
    report = Workflow(service.gallery).reports.create_report(
        ivan, name=XSS, reported_by=XSS_IMG, source="form", legal_basis="consent", description=XSS_IMG
    )["report"]
    browser_login(page, web_server, "ivan")
    for path in (f"/reports/{report['reference']}", "/reports", "/"):
        page.goto(web_server + path)
        page.wait_for_load_state("load")
    page.goto(f"{web_server}/reports/{report['reference']}")
    assert XSS in page.inner_text("h1")  # shown as text
    assert page.dialogs == []  # never executed


def test_pages_carry_security_headers_and_no_inline_or_external_code(client: TestClient) -> None:
    client_login(client, "olena")
    for path in ("/", "/reports", "/cases/new", "/leads", "/search", "/login"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        html = response.text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), f"inline script on {path}"
        assert not re.search(r"<[^>]*\son[a-z]+=", html), f"inline event handler on {path}"
        assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html), f"external resource on {path}"
        assert " style=" not in html, f"inline style on {path}"
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/../routes.py").status_code == 404
    assert client.get("/static/%2e%2e/routes.py").status_code == 404


def test_photo_check_reports_faces_quality_and_refusals(client: TestClient) -> None:
    csrf = client_login(client, "ivan")
    headers = {"X-CSRF-Token": csrf}

    def check(path: Any, kind: str = "report") -> Any:
        files = {"photo": (path.name, path.read_bytes(), "application/octet-stream")}
        return client.post(f"/intake/check-photo?kind={kind}", files=files, headers=headers)

    good = check(face_images("Ashanti")[0]).json()
    assert good["usable"] and len(good["faces"]) == 1 and good["faces"][0]["quality"] > 20
    assert good["width"] == 250 and len(good["faces"][0]["box"]) == 4
    band = good["faces"][0]["quality_band"]  # the search form's preview shows its label
    assert band["name"] != "unusable" and band["label"] == f"{band['name']} quality" and band["advice"]
    none = check(SPECIAL / "no_face.png").json()
    assert not none["usable"] and none["reason"] == "no face found"
    group = check(SPECIAL / "group_of_three.jpg", "case").json()
    assert len(group["faces"]) == 3 and "only the largest" in group["note"]
    response = client.post(
        "/intake/check-photo?kind=report", files={"photo": ("a.jpg", b"not an image")}, headers=headers
    )
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"
    response = client.post("/intake/check-photo?kind=report", files={"photo": ("a.jpg", b"x")})  # no CSRF header
    assert response.status_code == 403


def test_intake_refuses_a_photo_without_face_and_stores_nothing(client: TestClient) -> None:
    csrf = client_login(client, "ivan")
    before = client.get("/cases").text.count("/cases/C-")
    no_face = SPECIAL / "no_face.png"
    response = client.post(
        "/cases/new",
        data={"csrf_token": csrf, "condition": "alive", "found_place": "Kharkiv hospital"},
        files=[
            ("photos", (no_face.name, no_face.read_bytes(), "image/png")),
            ("photos", ("kelly.jpg", face_images("Kelly_Clarkson")[0].read_bytes(), "image/jpeg")),
        ],
    )
    assert response.status_code == 422
    assert "no_face.png: no face found" in response.text and "nothing was stored" in response.text
    assert 'value="Kharkiv hospital"' in response.text  # the form keeps what was typed
    assert client.get("/cases").text.count("/cases/C-") == before


def test_media_are_served_only_to_readers_and_every_view_is_audited(client: TestClient, web_app: FastAPI) -> None:
    csrf = client_login(client, "ivan")
    photo = face_images("Naoto_Kan")[0]
    response = client.post(
        "/cases/new",
        data={"csrf_token": csrf, "condition": "deceased"},
        files=[("photos", (photo.name, photo.read_bytes(), "image/jpeg"))],
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    case_page = client.get(response.headers["location"]).text
    image_path = re.search(r"/media/images/\d+", case_page)
    face_path = re.search(r"/media/faces/\d+\?size=\d+", case_page)
    assert image_path and face_path
    image = client.get(image_path.group(0))
    assert image.headers["content-type"] == "image/jpeg" and image.headers["cache-control"] == "no-store"
    assert image.content[:2] == b"\xff\xd8"
    crop = client.get(face_path.group(0))
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    with web_app.state.service.db.sessions() as session:
        events, _ = list_events(session, action="media.view", actor="ivan", limit=2)
    assert {e.detail["kind"] for e in events} == {"photo", "face crop"}
    assert any(r.startswith("case:") for r in events[0].records)
    # Not signed in: sent to the sign-in page, never the picture. An auditor holds no reader role.
    anonymous = TestClient(web_app, base_url="http://127.0.0.1")
    assert _is_login_redirect(anonymous.get(image_path.group(0), follow_redirects=False))
    auditor = TestClient(web_app, base_url="http://127.0.0.1")
    client_login(auditor, "anna")
    assert auditor.get(image_path.group(0)).status_code == 403
    # The case file export: a PDF, audited.
    reference = response.headers["location"].split("/cases/")[1].split("?")[0]
    pdf = client.get(f"/cases/{reference}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and pdf.content.rstrip().endswith(b"%%EOF")
    assert "attachment" in pdf.headers["content-disposition"]
    with web_app.state.service.db.sessions() as session:
        exports, _ = list_events(session, action="case.export", actor="ivan")
    assert exports and exports[0].detail["format"] == "pdf"


def _lead_without_faces(app: FastAPI, name: str) -> int:
    """A report, a case and a lead between them, built without the face pipeline (the
    matching is the workflow's business; this is about what the pages show)."""
    service = app.state.service
    with service.db.sessions() as session:
        ivan = get_user(session, "ivan")
    wf = Workflow(service.gallery, source="test")
    report = wf.reports.create_report(
        ivan,
        name=name,
        reported_by="family",
        source="form",
        legal_basis="consent",
        contacts=[{"name": "Mother", "relation": "mother", "email": "mother@family.example", "language": "en"}],
    )["report"]
    case = wf.cases.create_case(ivan, condition="deceased", found_place="Bucha")["case"]
    return insert_lead(service.db, case["id"], report["id"], score=0.93, fmr=2e-6, fpir=5e-6, case_quality=6.0)


def test_second_reviewer_sees_the_first_decision_only_after_deciding(web_app: FastAPI) -> None:
    lead_id = _lead_without_faces(web_app, "Olha Blind")
    olena, petro = (TestClient(web_app, base_url="http://127.0.0.1") for _ in range(2))
    olena_csrf, petro_csrf = client_login(olena, "olena"), client_login(petro, "petro")
    page = olena.get(f"/leads/{lead_id}").text
    assert "1 of 200,000 searches of a gallery this size (4 persons)" in page  # FPIR 5e-6 in plain words
    assert "Case face: quality 6 is below the minimum 10" in page  # quality warning
    response = olena.post(
        f"/leads/{lead_id}/review",
        data={"csrf_token": olena_csrf, "decision": "reject", "rationale": "Different ear lobes: RATIONALE-ONE"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "RATIONALE-ONE" in olena.get(f"/leads/{lead_id}").text
    blind = petro.get(f"/leads/{lead_id}").text
    assert "RATIONALE-ONE" not in blind and "Blind review: 1 earlier review" in blind
    assert "rejected" not in blind.lower()  # not even the lead's status gives the decision away
    assert "rejected" not in petro.get("/leads").text.lower()
    assert re.search(r'id="count-second-review">\d+<', petro.get("/").text)
    # An empty rationale is refused with the reason; the page stays blind.
    response = petro.post(
        f"/leads/{lead_id}/review", data={"csrf_token": petro_csrf, "decision": "confirm", "rationale": " "}
    )
    assert response.status_code == 422 and "rationale is required" in response.text
    assert "RATIONALE-ONE" not in response.text
    response = petro.post(
        f"/leads/{lead_id}/review",
        data={"csrf_token": petro_csrf, "decision": "inconclusive", "rationale": "Poor probe: RATIONALE-TWO"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    after = petro.get(f"/leads/{lead_id}").text
    assert "RATIONALE-ONE" in after and "RATIONALE-TWO" in after and "Blind review" not in after


def test_confirmation_without_evidence_is_refused_with_the_policy(web_app: FastAPI) -> None:
    lead_id = _lead_without_faces(web_app, "Evidence Policy")
    olena, petro = (TestClient(web_app, base_url="http://127.0.0.1") for _ in range(2))
    olena_csrf, petro_csrf = client_login(olena, "olena"), client_login(petro, "petro")
    for client, csrf in ((olena, olena_csrf), (petro, petro_csrf)):
        response = client.post(
            f"/leads/{lead_id}/review",
            data={"csrf_token": csrf, "decision": "confirm", "rationale": "same person"},
            follow_redirects=False,
        )
    assert response.status_code == 409 and "policy requires at least 1" in response.text
    response = petro.post(
        f"/leads/{lead_id}/evidence",
        data={"csrf_token": petro_csrf, "kind": "dental", "description": "Dental chart matches", "reference": "D-1"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    response = petro.post(
        f"/leads/{lead_id}/review",
        data={"csrf_token": petro_csrf, "decision": "confirm", "rationale": "same person, dental chart"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and "/identifications/" in response.headers["location"]
    ident = petro.get(response.headers["location"]).text
    assert "mother@family.example" in ident and "Identification" in ident


def test_sign_in_errors_and_unknown_pages(client: TestClient) -> None:
    page = client.get("/login").text
    token = re.search(r'name="login_csrf" value="([^"]+)"', page)
    assert token
    response = client.post(
        "/login", data={"username": "ivan", "password": "wrong-password", "login_csrf": token.group(1), "next": "/"}
    )
    assert response.status_code == 401 and "wrong user name or password" in response.text
    assert "facetrace_session" not in response.cookies
    token = re.search(r'name="login_csrf" value="([^"]+)"', response.text)  # a fresh form
    assert token
    # An open redirect through ?next= is not possible.
    response = client.post(
        "/login",
        data={"username": "ivan", "password": PASSWORD, "login_csrf": token.group(1), "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/"
    missing = client.get("/cases/NO-SUCH-CASE")
    assert missing.status_code == 404 and "Not found" in missing.text and "Traceback" not in missing.text
    assert client.get("/leads/not-a-number").status_code == 422


@pytest.mark.parametrize("path", ["/reports/new", "/cases/new"])
def test_intake_forms_keep_input_after_an_error(client: TestClient, path: str) -> None:
    csrf = client_login(client, "olena")
    data = {"csrf_token": csrf, "reference": "R-000123", "name": "Kept Name", "condition": "deceased"}
    response = client.post(path, data=data)
    assert response.status_code == 422
    assert "assigned automatically" in response.text or "required" in response.text


def test_intake_analyses_each_photo_once(client: TestClient, web_app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The photo check of the intake form detects the faces; the report's enrollment and the case's
    storage reuse them rather than analysing the same photo again."""
    model = web_app.state.service.gallery.face_model
    calls: list[str] = []
    detect, analyze_here = model.detect, model.analyze_here

    def counting_detect(data: bytes, name: str = "image") -> Any:
        calls.append(f"detect {name}")
        return detect(data, name)

    def counting_analyze_here(data: bytes, name: str, *, largest_only: bool) -> Any:
        calls.append(f"analyze {name}")
        return analyze_here(data, name, largest_only=largest_only)

    monkeypatch.setattr(model, "detect", counting_detect)
    monkeypatch.setattr(model, "analyze_here", counting_analyze_here)
    csrf = client_login(client, "ivan")
    photo = face_images("Kelly_Clarkson")[0]
    form = {"csrf_token": csrf, "name": "Once Analysed", "reported_by": "aunt", "source": "form"}
    response = client.post(
        "/reports/new",
        data={**form, "legal_basis": "consent"},
        files=[("photos", (photo.name, photo.read_bytes(), "image/jpeg"))],
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert calls == [f"detect {photo.name}"]
    report_page = client.get(response.headers["location"]).text
    assert "/media/faces/" in report_page  # enrolled with its face
    calls.clear()
    response = client.post(
        "/cases/new",
        data={"csrf_token": csrf, "condition": "alive"},
        files=[("photos", (photo.name, photo.read_bytes(), "image/jpeg"))],
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert calls == [f"detect {photo.name}"]
    assert "/media/faces/" in client.get(response.headers["location"]).text
