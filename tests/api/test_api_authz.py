"""The authorisation matrix: every route of the app x every role, a user with no role, and no
credentials, checked against the table below. A route missing from the table fails the test."""

from __future__ import annotations

import re
from typing import Any

import pytest
from apitest import IDENTITIES, Api
from fastapi.routing import iter_route_contexts

PUBLIC = "public"  # anyone, signed in or not
SIGNED_IN = "signed-in"  # any valid credentials, whatever the roles
ANYONE_WITH_FORM_TOKEN = "form"  # anyone, with the form's own CSRF token (the web sign-in)
READERS = {"intake", "examiner", "reviewer"}  # read case files and gallery records
RECORDERS = {"intake", "examiner"}  # create and edit reports, cases, contacts, photos
REVIEWERS = {"examiner", "reviewer"}  # review leads, record evidence, draft notifications
SECOND = {"reviewer"}  # second confirmation: approve notifications, withdraw identifications
SENDERS = {"reviewer", "admin"}  # run the outbox, resolve deliveries of unknown outcome
P = "/api/v1"

ACCESS: dict[tuple[str, str], str | set[str]] = {
    ("GET", f"{P}/openapi.json"): PUBLIC,
    ("GET", f"{P}/health"): PUBLIC,
    ("GET", f"{P}/ready"): PUBLIC,
    ("GET", f"{P}/metrics"): set(),  # no role: the metrics token, or a loopback client (test_observability.py)
    ("POST", f"{P}/auth/login"): PUBLIC,
    ("POST", f"{P}/auth/logout"): SIGNED_IN,
    ("GET", f"{P}/auth/me"): SIGNED_IN,
    ("GET", f"{P}/auth/tokens"): SIGNED_IN,
    ("POST", f"{P}/auth/tokens"): SIGNED_IN,
    ("DELETE", f"{P}/auth/tokens/{{token_id}}"): SIGNED_IN,
    ("GET", f"{P}/roles"): SIGNED_IN,
    ("GET", f"{P}/users"): {"admin"},
    ("POST", f"{P}/users"): {"admin"},
    ("GET", f"{P}/users/{{username}}"): {"admin"},
    ("PATCH", f"{P}/users/{{username}}"): {"admin"},
    ("GET", f"{P}/settings"): {"admin"},
    ("PATCH", f"{P}/settings"): {"admin"},
    ("POST", f"{P}/settings/smtp-test"): {"admin"},
    ("GET", f"{P}/persons"): READERS,
    ("POST", f"{P}/persons"): {"intake"},
    ("GET", f"{P}/persons/{{external_id}}"): READERS,
    ("POST", f"{P}/persons/{{external_id}}/images"): {"intake"},
    ("PATCH", f"{P}/persons/{{external_id}}"): {"intake"},
    ("DELETE", f"{P}/persons/{{external_id}}"): {"intake"},
    ("GET", f"{P}/persons/{{external_id}}/images/{{image_id}}/file"): READERS,
    ("POST", f"{P}/search"): {"examiner"},
    ("POST", f"{P}/search/video"): {"examiner"},
    ("GET", f"{P}/search/video/{{job_id}}"): {"examiner", "reviewer"},
    ("GET", f"{P}/searches"): {"examiner", "reviewer", "auditor"},
    ("POST", f"{P}/search/video/{{job_id}}/cancel"): {"examiner"},
    ("POST", f"{P}/compare"): {"examiner", "reviewer"},
    ("POST", f"{P}/detect"): {"intake", "examiner"},
    ("POST", f"{P}/jobs/import"): {"intake"},
    ("POST", f"{P}/jobs/reindex"): {"admin"},
    ("GET", f"{P}/jobs"): {"intake", "admin"},
    ("GET", f"{P}/jobs/{{job_id}}"): {"intake", "admin"},
    ("POST", f"{P}/jobs/{{job_id}}/cancel"): {"intake", "admin"},
    ("POST", f"{P}/jobs/{{job_id}}/resume"): {"intake", "admin"},
    ("GET", f"{P}/audit"): {"auditor"},
    ("GET", f"{P}/audit/verify"): {"auditor"},
    ("GET", f"{P}/audit.csv"): {"auditor"},
    ("GET", f"{P}/reports.csv"): READERS,
    ("GET", f"{P}/cases.csv"): READERS,
    # The identification workflow (docs/workflow.md).
    ("GET", f"{P}/reports"): READERS,
    ("POST", f"{P}/reports"): RECORDERS,
    ("GET", f"{P}/reports/{{reference}}"): READERS,
    ("PATCH", f"{P}/reports/{{reference}}"): RECORDERS,
    ("POST", f"{P}/reports/{{reference}}/photos"): RECORDERS,
    ("POST", f"{P}/reports/{{reference}}/contacts"): RECORDERS,
    ("PATCH", f"{P}/contacts/{{contact_id}}"): RECORDERS,
    ("POST", f"{P}/reports/{{reference}}/match"): READERS,
    ("POST", f"{P}/reports/{{reference}}/merge"): REVIEWERS,
    ("POST", f"{P}/reports/{{reference}}/erase"): {"intake", "examiner", "admin"},
    ("POST", f"{P}/cases/{{reference}}/erase"): {"intake", "examiner", "admin"},
    # Reconciliation beyond the face (docs/reconciliation.md).
    ("PUT", f"{P}/reports/{{reference}}/descriptors"): RECORDERS,
    ("PUT", f"{P}/cases/{{reference}}/descriptors"): RECORDERS,
    ("PUT", f"{P}/cases/{{reference}}/kind"): RECORDERS,
    ("POST", f"{P}/reports/{{reference}}/marks"): RECORDERS,
    ("POST", f"{P}/cases/{{reference}}/marks"): RECORDERS,
    ("POST", f"{P}/marks/{{mark_id}}/photos"): RECORDERS,
    ("DELETE", f"{P}/marks/{{mark_id}}"): RECORDERS,
    ("POST", f"{P}/reports/{{reference}}/effects"): RECORDERS,
    ("POST", f"{P}/cases/{{reference}}/effects"): RECORDERS,
    ("POST", f"{P}/reports/{{reference}}/primary-references"): RECORDERS,
    ("POST", f"{P}/cases/{{reference}}/primary-references"): RECORDERS,
    ("PATCH", f"{P}/primary-references/{{reference_id}}"): RECORDERS,
    ("GET", f"{P}/reports/{{reference}}/facts"): READERS,
    ("GET", f"{P}/cases/{{reference}}/facts"): READERS,
    ("GET", f"{P}/leads/{{lead_id}}/agreement"): READERS,
    ("POST", f"{P}/leads/{{lead_id}}/reopen"): SECOND,
    ("POST", f"{P}/facts/search"): READERS,
    ("POST", f"{P}/identifications/{{identification_id}}/confirm-by-exception"): {"admin"},
    ("GET", f"{P}/duplicates"): READERS,
    ("POST", f"{P}/duplicates/{{flag_id}}/dismiss"): REVIEWERS,
    ("GET", f"{P}/cases"): READERS,
    ("POST", f"{P}/cases"): RECORDERS,
    ("GET", f"{P}/cases/{{reference}}"): READERS,
    ("PATCH", f"{P}/cases/{{reference}}"): RECORDERS,
    ("POST", f"{P}/cases/{{reference}}/photos"): RECORDERS,
    ("POST", f"{P}/cases/{{reference}}/match"): READERS,
    ("GET", f"{P}/leads"): READERS,
    ("POST", f"{P}/leads/rematch"): READERS,
    ("GET", f"{P}/leads/{{lead_id}}"): READERS,
    ("POST", f"{P}/leads/{{lead_id}}/reviews"): REVIEWERS,
    ("POST", f"{P}/leads/{{lead_id}}/evidence"): REVIEWERS,
    ("GET", f"{P}/identifications"): READERS,
    ("GET", f"{P}/identifications/{{identification_id}}"): READERS,
    ("POST", f"{P}/identifications/{{identification_id}}/withdraw"): SECOND,
    ("POST", f"{P}/identifications/{{identification_id}}/notifications"): REVIEWERS,
    ("GET", f"{P}/notifications"): READERS,
    ("POST", f"{P}/notifications/send"): SENDERS,
    ("GET", f"{P}/notifications/{{notification_id}}"): READERS,
    ("PATCH", f"{P}/notifications/{{notification_id}}"): REVIEWERS,
    ("POST", f"{P}/notifications/{{notification_id}}/approve"): SECOND,
    ("POST", f"{P}/notifications/{{notification_id}}/cancel"): SECOND,
    ("POST", f"{P}/notifications/{{notification_id}}/resolve"): SENDERS,
    # The web pages (outside /api/v1; asked for JSON, they answer errors like the API).
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): ANYONE_WITH_FORM_TOKEN,
    ("GET", "/setup"): PUBLIC,
    ("POST", "/setup"): ANYONE_WITH_FORM_TOKEN,
    ("GET", "/static/{path:path}"): PUBLIC,
    ("POST", "/logout"): SIGNED_IN,
    ("GET", "/"): SIGNED_IN,
    ("POST", "/intake/check-photo"): RECORDERS,
    ("GET", "/reports"): READERS,
    ("GET", "/reports/new"): RECORDERS,
    ("POST", "/reports/new"): RECORDERS,
    ("GET", "/reports/{reference}"): READERS,
    ("POST", "/reports/{reference}/photos"): RECORDERS,
    ("POST", "/reports/{reference}/contacts"): RECORDERS,
    ("POST", "/reports/{reference}/edit"): RECORDERS,
    ("POST", "/reports/{reference}/contacts/{contact_id}"): RECORDERS,
    ("POST", "/cases/{reference}/edit"): RECORDERS,
    ("GET", "/duplicates"): READERS,
    ("GET", "/duplicates/{flag_id}"): READERS,
    ("POST", "/duplicates/{flag_id}/merge"): REVIEWERS,
    ("POST", "/duplicates/{flag_id}/dismiss"): REVIEWERS,
    ("GET", "/cases"): READERS,
    ("GET", "/cases/new"): RECORDERS,
    ("POST", "/cases/new"): RECORDERS,
    ("GET", "/cases/{reference}"): READERS,
    ("POST", "/cases/{reference}/photos"): RECORDERS,
    ("GET", "/cases/{reference}/report.pdf"): READERS,
    ("GET", "/leads"): READERS,
    ("GET", "/leads/{lead_id}"): READERS,
    ("POST", "/leads/{lead_id}/review"): REVIEWERS,
    ("POST", "/leads/{lead_id}/evidence"): REVIEWERS,
    ("GET", "/identifications"): READERS,
    ("GET", "/identifications/{ident_id}"): READERS,
    ("POST", "/identifications/{ident_id}/withdraw"): SECOND,
    ("POST", "/identifications/{ident_id}/draft"): REVIEWERS,
    ("GET", "/notifications"): READERS,
    ("GET", "/notifications/{nid}"): READERS,
    ("POST", "/notifications/{nid}/edit"): REVIEWERS,
    ("POST", "/notifications/{nid}/approve"): SECOND,
    ("POST", "/notifications/{nid}/send"): SENDERS,
    ("POST", "/notifications/{nid}/cancel"): SECOND,
    ("POST", "/notifications/{nid}/resolve"): SENDERS,
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
        ("POST", f"/{plural}/{{reference}}/{tail}"): RECORDERS
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
    ("POST", "/cases/{reference}/kind"): RECORDERS,
    ("POST", "/cases/{reference}/widen"): REVIEWERS,
    ("POST", "/leads/{lead_id}/reopen"): SECOND,
    ("POST", "/identifications/{ident_id}/confirm"): {"admin"},
    ("GET", "/search/marks"): READERS,
    ("POST", "/search/marks"): READERS,
}
# Values for path parameters: records that do not exist (an allowed caller gets 404, not 401/403).
PATH_VALUES = {"token_id": "999999", "username": "nobody", "external_id": "nobody", "image_id": "999999"}
PATH_VALUES.update(dict.fromkeys(("job_id", "contact_id", "flag_id", "lead_id", "face_id"), "999999"))
PATH_VALUES.update(dict.fromkeys(("mark_id", "reference_id", "item_id"), "999999"))
PATH_VALUES.update(dict.fromkeys(("identification_id", "notification_id", "ident_id", "nid"), "999999"))
PATH_VALUES.update(reference="NOBODY-1", path="nothing.css")


def app_routes(app: Any) -> list[tuple[str, str]]:
    """Return (method, path) for every route of ``app`` (routers included); HEAD is answered like GET."""
    found = []
    for route in iter_route_contexts(app.routes):
        methods = route.methods
        assert methods and route.path, f"{route.original_route!r} is no plain route (a mount?): add it to the table"
        for method in sorted(methods):
            if method == "HEAD" and "GET" in methods:
                continue
            found.append((method, route.path))
    return found


MULTIPART = {f"{P}/search", f"{P}/compare", f"{P}/detect", f"{P}/jobs/import", f"{P}/persons"}
MULTIPART.add(f"{P}/persons/{{external_id}}/images")
MULTIPART.add(f"{P}/search/video")
MULTIPART.add(f"{P}/marks/{{mark_id}}/photos")


def _call(api: Api, method: str, path: str, headers: dict[str, str]) -> Any:
    # Web pages answer errors as JSON (not HTML, not a redirect to the sign-in page) when asked to.
    kwargs: dict[str, Any] = {"headers": {**headers, "Accept": "application/json"}, "follow_redirects": False}
    if method in ("POST", "PATCH") and path.startswith(P) and path not in MULTIPART:
        kwargs["json"] = {}  # the smallest body: an allowed caller gets a validation error at worst
    url = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PATH_VALUES[m.group(1)], path)  # {name} or {name:converter}
    return api.client.request(method, url, **kwargs)


def test_every_route_is_in_the_table(api: Api) -> None:
    routes = app_routes(api.app)
    missing = [r for r in routes if r not in ACCESS]
    assert not missing, f"routes missing from the authorisation table: {missing}"
    stale = [r for r in ACCESS if r not in routes]
    assert not stale, f"table entries for routes that no longer exist: {stale}"
    callers = len(IDENTITIES) + 1
    print(f"authorisation matrix: {len(routes)} routes x {callers} callers = {len(routes) * callers} checks")


@pytest.mark.parametrize("route", sorted(ACCESS), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_access(module_api: Api, route: tuple[str, str]) -> None:
    """Each route, called as each role, as a user without roles and without credentials."""
    api = module_api
    method, path = route
    rule = ACCESS[route]
    statuses = {}
    for identity in (*IDENTITIES, None):
        headers = api.as_(identity) if identity else {}
        response = _call(api, method, path, headers)
        if identity and path.endswith("/logout"):
            api.renew_token(identity)  # a logout with a token revokes it
        who = identity or "no credentials"
        statuses[who] = response.status_code
        refusal = response.status_code in (401, 403) and rule != ANYONE_WITH_FORM_TOKEN
        if response.status_code >= 400 and (path.startswith(P) or refusal):
            # API errors, and every refusal, are JSON (a web form may re-render itself with its errors).
            body = response.json()
            assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), (who, body)
        if rule == ANYONE_WITH_FORM_TOKEN:
            continue
        if rule == PUBLIC or (identity is not None and (rule == SIGNED_IN or identity in rule)):
            assert response.status_code not in (401, 403), (who, response.status_code, response.text)
        elif identity is None:
            assert response.status_code == 401, (who, response.status_code, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
        else:
            assert response.status_code == 403, (who, response.status_code, response.text)
            assert response.json()["error"]["code"] == "forbidden"
    if rule == ANYONE_WITH_FORM_TOKEN:  # who calls makes no difference; the form's token does
        assert len(set(statuses.values())) == 1 and 401 not in statuses.values(), statuses


def test_refusals_are_audited(api: Api) -> None:
    response = api.client.get(f"{P}/audit", headers=api.as_("examiner"))
    assert response.status_code == 403
    denied = api.audit("access.denied")
    assert denied and denied[-1]["actor"] == "examiner" and denied[-1]["outcome"] == "denied"
    assert denied[-1]["detail"]["path"] == f"{P}/audit"


def test_disabled_user_and_bad_tokens_are_refused(api: Api) -> None:
    headers = api.as_("examiner")
    assert api.client.get(f"{P}/auth/me", headers=headers).status_code == 200
    response = api.client.patch(f"{P}/users/examiner", json={"disabled": True}, headers=api.as_("admin"))
    assert response.status_code == 200 and response.json()["disabled"] is True
    refused = api.client.get(f"{P}/auth/me", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    garbage = api.client.get(f"{P}/auth/me", headers={"Authorization": "Bearer ft_not-a-token"})
    assert garbage.status_code == 401
