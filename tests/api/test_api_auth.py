"""Login sessions (cookies, CSRF), login throttling, API tokens, user and role administration."""

from __future__ import annotations

from apitest import PASSWORD, Api

P = "/api/v1"


def _login(api: Api, username: str, password: str = PASSWORD) -> dict[str, object]:
    response = api.client.post(f"{P}/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_login_sets_a_hardened_session_cookie(api: Api) -> None:
    response = api.client.post(f"{P}/auth/login", json={"username": "Examiner", "password": PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"].lower()
    assert "facetrace_session=" in cookie
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie and "path=/" in cookie
    body = response.json()
    assert body["user"]["username"] == "examiner" and body["csrf_token"]
    me = api.client.get(f"{P}/auth/me")
    assert me.status_code == 200 and me.json()["via"] == "session" and me.json()["csrf_token"] == body["csrf_token"]
    event = api.audit("login")[-1]
    assert event["actor"] == "examiner" and event["outcome"] == "ok" and event["source"] == "testclient"


def test_cookie_is_not_secure_over_http_on_loopback(api: Api) -> None:
    response = api.client.post(
        "http://127.0.0.1/api/v1/auth/login", json={"username": "examiner", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert "secure" not in response.headers["set-cookie"].lower()


def test_csrf_is_required_for_cookie_posts(api: Api) -> None:
    csrf = str(_login(api, "examiner")["csrf_token"])
    refused = api.client.post(f"{P}/auth/tokens", json={"name": "x"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
    wrong = api.client.post(f"{P}/auth/tokens", json={"name": "x"}, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    ok = api.client.post(f"{P}/auth/tokens", json={"name": "x"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    # A form post may carry the token as a field instead of a header.
    form = api.client.post(
        f"{P}/detect", data={"csrf_token": csrf}, files={"image": ("x.jpg", b"not an image", "image/jpeg")}
    )
    assert form.status_code == 415  # past the CSRF check, stopped by type sniffing
    assert api.client.get(f"{P}/auth/tokens").status_code == 200  # GET needs no token


def test_logout_ends_the_session(api: Api) -> None:
    csrf = str(_login(api, "auditor")["csrf_token"])
    cookie = api.client.cookies.get("facetrace_session")
    response = api.client.post(f"{P}/auth/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200 and response.json()["logged_out"] is True
    api.client.cookies.set("facetrace_session", str(cookie))  # a stolen copy of the cookie
    assert api.client.get(f"{P}/auth/me").status_code == 401
    assert [e["actor"] for e in api.audit("logout")] == ["auditor"]


def test_wrong_password_is_refused_and_audited(api: Api) -> None:
    for username in ("examiner", "nobody-at-all"):
        response = api.client.post(f"{P}/auth/login", json={"username": username, "password": "wrong password"})
        assert response.status_code == 401
        assert response.json()["error"]["message"] == "wrong user name or password, or the account is disabled"
    denied = [e for e in api.audit("login") if e["outcome"] == "denied"]
    assert [e["actor"] for e in denied] == ["examiner", "nobody-at-all"]
    assert "set-cookie" not in response.headers


def test_login_throttling(api: Api) -> None:
    limit = api.service.settings.login_max_failures
    for _ in range(limit):
        response = api.client.post(f"{P}/auth/login", json={"username": "intake", "password": "wrong password"})
        assert response.status_code == 401
    locked = api.client.post(f"{P}/auth/login", json={"username": "intake", "password": PASSWORD})
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "too_many_attempts"
    assert int(locked.headers["Retry-After"]) > 0
    # Another user name from the same address is not locked yet (the address limit is higher).
    assert api.client.post(f"{P}/auth/login", json={"username": "reviewer", "password": PASSWORD}).status_code == 200


def test_disabled_user_cannot_log_in(api: Api) -> None:
    assert api.client.patch(f"{P}/users/reviewer", json={"disabled": True}, headers=api.as_("admin")).status_code == 200
    response = api.client.post(f"{P}/auth/login", json={"username": "reviewer", "password": PASSWORD})
    assert response.status_code == 401


def _new_token(api: Api, username: str) -> dict[str, str]:
    created = api.client.post(f"{P}/auth/tokens", json={"name": "script", "days": 2}, headers=api.as_(username))
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['token']}"}


def _works(api: Api, headers: dict[str, str]) -> bool:
    status = api.client.get(f"{P}/auth/me", headers=headers).status_code
    assert status in (200, 401)
    return status == 200


def test_logout_with_a_token_revokes_it(api: Api) -> None:
    token = _new_token(api, "intake")
    response = api.client.post(f"{P}/auth/logout", headers=token)
    assert response.status_code == 200 and response.json()["logged_out"] is True
    assert not _works(api, token)
    assert _works(api, api.as_("intake"))  # only the token the logout came with
    assert api.audit("logout")[-1]["detail"]["via"] == "token"


def test_disabling_revokes_tokens_and_enabling_revives_none(api: Api) -> None:
    admin = api.as_("admin")
    token = _new_token(api, "reviewer")
    _login(api, "reviewer")
    session_cookie = api.client.cookies.get("facetrace_session")
    assert _works(api, token)
    assert api.client.patch(f"{P}/users/reviewer", json={"disabled": True}, headers=admin).status_code == 200
    detail = api.audit("user.update")[-1]["detail"]
    assert detail["disabled"] is True and detail["tokens_revoked"] == 2  # "tests" and "script"
    assert api.client.patch(f"{P}/users/reviewer", json={"disabled": False}, headers=admin).status_code == 200
    assert not _works(api, token) and not _works(api, api.as_("reviewer"))
    api.client.cookies.set("facetrace_session", str(session_cookie))
    assert api.client.get(f"{P}/auth/me").status_code == 401
    assert _login(api, "reviewer")["user"]["username"] == "reviewer"  # a new sign-in works


def test_password_change_revokes_tokens(api: Api) -> None:
    token = _new_token(api, "examiner")
    changed = api.client.patch(
        f"{P}/users/examiner", json={"password": "another long password"}, headers=api.as_("admin")
    )
    assert changed.status_code == 200
    assert not _works(api, token) and not _works(api, api.as_("examiner"))


def test_taking_a_role_away_revokes_tokens_and_adding_one_does_not(api: Api) -> None:
    admin = api.as_("admin")
    token = _new_token(api, "intake")
    added = api.client.patch(f"{P}/users/intake", json={"roles": ["intake", "examiner"]}, headers=admin)
    assert added.status_code == 200 and _works(api, token)
    removed = api.client.patch(f"{P}/users/intake", json={"roles": ["intake"]}, headers=admin)
    assert removed.status_code == 200 and not _works(api, token)
    assert api.audit("user.roles")[-1]["detail"]["tokens_revoked"] == 2


def test_api_tokens_lifecycle(api: Api) -> None:
    created = api.client.post(f"{P}/auth/tokens", json={"name": "nightly", "days": 2}, headers=api.as_("intake"))
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("ft_")
    mine = api.client.get(f"{P}/auth/tokens", headers=api.as_("intake")).json()["items"]
    assert {t["name"] for t in mine} == {"tests", "nightly"} and all("token" not in t for t in mine)
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get(f"{P}/auth/me", headers=headers).json()["user"]["username"] == "intake"
    # Another user cannot revoke it; its owner can.
    other = api.client.delete(f"{P}/auth/tokens/{created.json()['id']}", headers=api.as_("examiner"))
    assert other.status_code == 404
    revoked = api.client.delete(f"{P}/auth/tokens/{created.json()['id']}", headers=api.as_("intake"))
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert api.client.get(f"{P}/auth/me", headers=headers).status_code == 401
    bad = api.client.post(f"{P}/auth/tokens", json={"name": "x", "days": -1}, headers=api.as_("intake"))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    assert [e["action"] for e in api.audit("token.")] == ["token.create", "token.revoke"]


def test_user_administration(api: Api) -> None:
    admin = api.as_("admin")
    created = api.client.post(
        f"{P}/users",
        json={"username": "Fatima", "password": "a long enough password", "roles": ["examiner"]},
        headers=admin,
    )
    assert created.status_code == 201 and created.json()["username"] == "fatima"
    assert "password_hash" not in created.json()
    dup = api.client.post(f"{P}/users", json={"username": "fatima", "password": "x" * 12}, headers=admin)
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "conflict"
    weak = api.client.post(f"{P}/users", json={"username": "gus", "password": "short"}, headers=admin)
    assert weak.status_code == 422 and weak.json()["error"]["code"] == "weak_password"
    bad_role = api.client.post(
        f"{P}/users", json={"username": "gus", "password": "x" * 12, "roles": ["god"]}, headers=admin
    )
    assert bad_role.status_code == 400 and "unknown role" in bad_role.json()["error"]["message"]
    changed = api.client.patch(f"{P}/users/fatima", json={"roles": ["examiner", "reviewer"]}, headers=admin)
    assert changed.status_code == 200 and changed.json()["roles"] == ["examiner", "reviewer"]
    event = api.audit("user.roles")[-1]
    assert event["detail"]["roles"] == {"before": ["examiner"], "after": ["examiner", "reviewer"]}
    assert event["records"] == [f"user:{created.json()['id']}"] and event["actor"] == "admin"
    names = [u["username"] for u in api.client.get(f"{P}/users", headers=admin).json()["items"]]
    assert "fatima" in names
    assert api.client.get(f"{P}/users/nobody", headers=admin).status_code == 404
    # The new user logs in with the password the admin set.
    assert (
        api.client.post(
            f"{P}/auth/login", json={"username": "fatima", "password": "a long enough password"}
        ).status_code
        == 200
    )
    roles = api.client.get(f"{P}/roles", headers=api.as_("norole")).json()["items"]
    assert [r["role"] for r in roles] == ["admin", "intake", "examiner", "reviewer", "auditor"]


def test_last_admin_cannot_be_removed(api: Api) -> None:
    admin = api.as_("admin")
    response = api.client.patch(f"{P}/users/admin", json={"roles": ["auditor"]}, headers=admin)
    assert response.status_code == 409 and "no enabled admin" in response.json()["error"]["message"]
    response = api.client.patch(f"{P}/users/admin", json={"disabled": True}, headers=admin)
    assert response.status_code == 409
    assert api.client.get(f"{P}/users/admin", headers=admin).json()["roles"] == ["admin"]  # rolled back
