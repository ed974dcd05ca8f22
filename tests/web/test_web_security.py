"""Sessions and forms under attack: session fixation, sign-out on the server, CSRF on every form
(a cross-origin post from a real browser included), and the rate limit of the search form."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from webtest import PASSWORD, browser_login, client_login, free_port

from facetrace.http.deps import SESSION_COOKIE
from facetrace.store.audit import list_events
from facetrace.store.workflow_models import Report
from facetrace.usecases.ratelimit import TokenBuckets

ME = "/api/v1/auth/me"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def login_form_token(client: TestClient) -> str:
    page = client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token, page.text
    return token.group(1)


def sign_in(client: TestClient, username: str) -> Any:
    """Post the sign-in form with whatever cookies the client holds; return the response."""
    # The form's token is bound to its cookie: take both from a fresh page (the sign-in page sends a
    # signed-in browser on to the dashboard), and post them with the client's own session cookie.
    token = login_form_token(TestClient(client.app, base_url="http://127.0.0.1"))
    client.cookies.set("facetrace_login_csrf", token, path="/login")
    return client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "login_csrf": token, "next": "/"},
        follow_redirects=False,
    )


def is_valid_session(app: FastAPI, secret: str) -> bool:
    probe = TestClient(app, base_url="http://127.0.0.1", cookies={SESSION_COOKIE: secret})
    return bool(probe.get(ME).status_code == 200)


def audit_count(app: FastAPI) -> int:
    with app.state.service.db.sessions() as session:
        return list_events(session, limit=1)[1]


def test_a_planted_session_id_is_replaced_at_sign_in(web_app: FastAPI) -> None:
    client = TestClient(web_app, base_url="http://127.0.0.1")
    client.cookies.set(SESSION_COOKIE, "planted-by-an-attacker")
    response = sign_in(client, "ivan")
    assert response.status_code == 303
    issued = response.cookies.get(SESSION_COOKIE)
    assert issued and issued != "planted-by-an-attacker"
    assert is_valid_session(web_app, issued) and not is_valid_session(web_app, "planted-by-an-attacker")


def test_signing_in_over_a_live_session_ends_it(web_app: FastAPI) -> None:
    """The attacker's own (valid) session id, planted in a victim's browser, dies at the victim's sign-in."""
    attacker = TestClient(web_app, base_url="http://127.0.0.1")
    client_login(attacker, "anna")
    planted = attacker.cookies[SESSION_COOKIE]
    assert is_valid_session(web_app, planted)
    victim = TestClient(web_app, base_url="http://127.0.0.1", cookies={SESSION_COOKIE: planted})
    response = sign_in(victim, "ivan")
    assert response.status_code == 303
    issued = response.cookies.get(SESSION_COOKIE)
    assert issued and issued != planted
    assert not is_valid_session(web_app, planted)
    me = TestClient(web_app, base_url="http://127.0.0.1", cookies={SESSION_COOKIE: issued}).get(ME).json()
    assert me["user"]["username"] == "ivan"


def test_sign_out_ends_the_session_on_the_server(web_app: FastAPI) -> None:
    client = TestClient(web_app, base_url="http://127.0.0.1")
    csrf = client_login(client, "olena")
    secret = client.cookies[SESSION_COOKIE]
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    # A copy of the cookie (kept by a script, or from before the browser deleted it) no longer works.
    assert not is_valid_session(web_app, secret)
    copy = TestClient(web_app, base_url="http://127.0.0.1", cookies={SESSION_COOKIE: secret})
    page = copy.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_every_form_post_needs_the_session_csrf_token(web_app: FastAPI) -> None:
    """Every state-changing web route refuses a missing or wrong CSRF token with 403, and nothing
    happens: not even an audit event is written."""
    routes = [(m, r.path) for r in iter_route_contexts(web_app.routes) for m in sorted(r.methods or ())]
    # The sign-in and first-run forms have no session yet: their own one-time tokens protect them.
    posts = sorted(p for m, p in routes if m == "POST" and p not in ("/login", "/setup") and not p.startswith("/api/"))
    # The API's own state-changing routes, called with the session cookie (as the page scripts do).
    api_calls = sorted((m, p) for m, p in routes if m in UNSAFE and p.startswith("/api/") and p != "/api/v1/auth/login")
    assert {"/reports/new", "/search", "/logout", "/admin/users", "/notifications/{nid}/approve"} <= set(posts)
    client = TestClient(web_app, base_url="http://127.0.0.1")
    client_login(client, "root")  # an admin: the CSRF check comes before any role check
    before = audit_count(web_app)
    for path in posts:
        url = re.sub(r"\{\w+(:\w+)?\}", "1", path)
        for token in (None, "forged-token"):
            data = {"name": "CSRF victim", "username": "mallory", "password": "x" * 12, "roles": "admin"}
            if token:
                data["csrf_token"] = token
            response = client.post(url, data=data, follow_redirects=False)
            assert response.status_code == 403 and "CSRF" in response.text, (path, token, response.status_code)
        header = client.post(url, headers={"X-CSRF-Token": "forged-token"}, follow_redirects=False)
        assert header.status_code == 403, path
    for method, path in api_calls:
        url = re.sub(r"\{\w+(:\w+)?\}", "1", path)
        for headers in ({}, {"X-CSRF-Token": "forged-token"}):
            response = client.request(method, url, json={}, headers=headers)
            assert response.status_code == 403, (method, path, headers, response.status_code)
            assert "CSRF" in response.json()["error"]["message"]
    assert len(api_calls) > 30
    assert audit_count(web_app) == before, "a refused form post changed something"
    assert is_valid_session(web_app, client.cookies[SESSION_COOKIE])  # even /logout did not sign out


@contextmanager
def other_origin(html: str) -> Iterator[str]:
    """Serve ``html`` from another site (http://localhost:PORT, not 127.0.0.1); yield its URL."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_cross_origin_form_post_is_refused(web_app: FastAPI, web_server: str, page: Any) -> None:
    """A signed-in examiner visits another site whose page posts a form to facetrace: the browser
    does not send the SameSite session cookie, and without it (or the CSRF token) nothing is created."""
    browser_login(page, web_server, "olena")
    name = "Cross Origin Forgery"
    attack = f"""<!doctype html><html><body>
<form id="f" method="post" action="{web_server}/reports/new">
<input name="name" value="{name}"><input name="reported_by" value="x"><input name="source" value="x">
<input name="legal_basis" value="x"><input name="csrf_token" value="guessed">
</form><script>document.getElementById('f').submit()</script></body></html>"""
    answers: list[tuple[int, str]] = []
    page.on(
        "response",
        lambda r: answers.append((r.status, r.headers.get("location", ""))) if r.request.method == "POST" else None,
    )
    with other_origin(attack) as url:
        page.goto(url)
        deadline = time.monotonic() + 30
        while not answers:
            assert time.monotonic() < deadline, "the forged form was never posted"
            page.wait_for_timeout(100)
        page.wait_for_load_state()
    # Without the session cookie the post is sent to sign in (and a browser that did send it would
    # still be refused for the token): the report was not created.
    status, location = answers[0]
    assert (status == 303 and location.startswith("/login")) or status == 403, answers
    with web_app.state.service.db.sessions() as session:
        assert session.query(Report).filter(Report.name == name).count() == 0
    # The examiner's own session is untouched: the same form, posted from the site itself, works.
    page.goto(f"{web_server}/")
    assert "/login" not in page.url


def test_the_search_form_is_rate_limited(web_app: FastAPI, client: TestClient) -> None:
    csrf = client_login(client, "olena")
    settings = web_app.state.service.settings
    before = settings.search_rate_per_minute, settings.search_rate_burst
    settings.search_rate_per_minute, settings.search_rate_burst = 1, 1
    web_app.state.search_buckets = TokenBuckets()
    try:
        form = {"csrf_token": csrf, "case_reference": "C-1", "purpose": "rate limit"}
        files = {"image": ("p.jpg", b"not an image", "image/jpeg")}
        first = client.post("/search", data=form, files=files)
        assert first.status_code == 415  # counted, then refused for its content
        refused = client.post("/search", data=form, files=files)
        assert refused.status_code == 429 and "too many searches" in refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"].startswith("text/html")  # the page, for a person
        as_json = client.post("/search", data=form, files=files, headers={"Accept": "application/json"})
        assert as_json.status_code == 429 and as_json.json()["error"]["code"] == "rate_limited"
    finally:
        settings.search_rate_per_minute, settings.search_rate_burst = before
        web_app.state.search_buckets = TokenBuckets()
