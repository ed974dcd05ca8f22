"""Security controls of the server: the headers on every response (pages, API JSON, errors,
HSTS over TLS only), the search rate limit, and regressions found by the contract fuzzing
(tests/api/test_schema_fuzz.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from apitest import Api, face_images, upload
from fastapi.testclient import TestClient

from facetrace.http.security import HSTS, PAGE_CSP, RESOURCE_CSP
from facetrace.usecases.ratelimit import TokenBuckets

P = "/api/v1"
WHY = {"case_reference": "CASE-RL-1", "purpose": "rate limit test"}
NOT_AN_IMAGE = ("probe.jpg", b"this is not an image", "image/jpeg")


def assert_security_headers(response: Any, *, html: bool, tls: bool) -> None:
    headers = response.headers
    assert headers["x-frame-options"] == "DENY"
    assert headers["content-security-policy"] == (PAGE_CSP if html else RESOURCE_CSP)
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    if tls:
        assert headers["strict-transport-security"] == HSTS
    else:
        assert "strict-transport-security" not in headers


def test_headers_on_api_responses_errors_and_pages(module_api: Api) -> None:
    api = module_api  # its client speaks https
    examiner = api.as_("examiner")
    assert_security_headers(api.client.get(f"{P}/auth/me", headers=examiner), html=False, tls=True)
    missing = api.client.get(f"{P}/reports/NOBODY-1", headers=examiner)
    assert missing.status_code == 404
    assert_security_headers(missing, html=False, tls=True)
    refused = api.client.get(f"{P}/audit", headers=examiner)
    assert refused.status_code == 403
    assert_security_headers(refused, html=False, tls=True)
    unknown = api.client.get(f"{P}/no/such/route")
    assert unknown.status_code == 404
    assert_security_headers(unknown, html=False, tls=True)
    too_large = api.client.post(
        f"{P}/detect", content=b"x", headers={**examiner, "Content-Length": str(10**12)}
    )  # refused by the body-limit middleware before any route runs
    assert too_large.status_code == 413
    assert_security_headers(too_large, html=False, tls=True)
    login_page = api.client.get("/login")
    assert login_page.status_code == 200
    assert_security_headers(login_page, html=True, tls=True)
    redirect = api.client.get("/reports", follow_redirects=False)
    assert redirect.status_code == 303
    assert redirect.headers["x-frame-options"] == "DENY" and redirect.headers["cache-control"] == "no-store"
    # Public static files keep their own caching, and are still unframeable and unsniffable.
    static = api.client.get("/static/app.js")
    assert static.status_code == 200 and static.headers["cache-control"].startswith("public")
    assert static.headers["x-frame-options"] == "DENY" and static.headers["x-content-type-options"] == "nosniff"


def test_headers_on_an_unexpected_500(api: Api) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    api.app.add_api_route(f"{P}/boom", boom)
    response = api.client.get(f"{P}/boom")
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal"
    assert_security_headers(response, html=False, tls=True)


def test_hsts_only_over_tls_and_forwarded_proto_is_not_trusted(module_api: Api) -> None:
    plain = TestClient(module_api.app, base_url="http://127.0.0.1")  # no lifespan: the module's server runs it
    response = plain.get(f"{P}/health")
    assert response.status_code == 200
    assert_security_headers(response, html=False, tls=False)
    # A client cannot talk a plain-http server into HSTS (only uvicorn's trusted-proxy handling may).
    spoofed = plain.get(f"{P}/health", headers={"X-Forwarded-Proto": "https", "Forwarded": "proto=https"})
    assert "strict-transport-security" not in spoofed.headers
    assert "strict-transport-security" not in plain.get("/login").headers
    assert module_api.client.get(f"{P}/health").headers["strict-transport-security"] == HSTS


# -- the search rate limit --------------------------------------------------------------------------
@contextmanager
def search_limit(api: Api, per_minute: float, burst: int) -> Iterator[None]:
    """Set the search rate limit of a shared server for a moment, with fresh buckets."""
    settings = api.service.settings
    before = settings.search_rate_per_minute, settings.search_rate_burst
    settings.search_rate_per_minute, settings.search_rate_burst = per_minute, burst
    api.app.state.search_buckets = TokenBuckets()
    try:
        yield
    finally:
        settings.search_rate_per_minute, settings.search_rate_burst = before
        api.app.state.search_buckets = TokenBuckets()


def test_search_rate_limit_per_user_with_retry_after_and_audit(module_api: Api) -> None:
    api = module_api
    examiner, reviewer = api.as_("examiner"), api.as_("reviewer")
    with search_limit(api, per_minute=1, burst=2):
        # Not an image: refused (415) after the limiter has counted it, without running the pipeline.
        for _ in range(2):
            response = api.client.post(f"{P}/compare", files={"a": NOT_AN_IMAGE, "b": NOT_AN_IMAGE}, headers=examiner)
            assert response.status_code == 415
        for path, files in ((f"{P}/search", {"image": NOT_AN_IMAGE}), (f"{P}/compare", {"a": NOT_AN_IMAGE})):
            refused = api.client.post(path, data=WHY, files=files, headers=examiner)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "rate_limited"
            assert "too many searches" in refused.json()["error"]["message"]
            assert 1 <= int(refused.headers["retry-after"]) <= 60
        video = api.client.post(
            f"{P}/search/video", data=WHY, files={"video": ("v.mp4", b"nope", "video/mp4")}, headers=examiner
        )
        assert video.status_code == 429
        # Another user is unaffected.
        other = api.client.post(f"{P}/compare", files={"a": NOT_AN_IMAGE, "b": NOT_AN_IMAGE}, headers=reviewer)
        assert other.status_code == 415
        # Other endpoints are not limited.
        assert api.client.get(f"{P}/auth/me", headers=examiner).status_code == 200
    # The first refusal of the run is audited, not each one.
    events = [e for e in api.audit("search.rate_limited") if e["detail"]["path"] == f"{P}/search"]
    assert len(events) == 1 and events[0]["actor"] == "examiner" and events[0]["outcome"] == "denied"
    assert not [e for e in api.audit("search.rate_limited") if e["detail"]["path"] == f"{P}/search/video"]


def test_search_rate_limit_per_address_without_credentials(module_api: Api) -> None:
    api = module_api
    with search_limit(api, per_minute=1, burst=2):
        statuses = [api.client.post(f"{P}/search", data=WHY, files={"image": NOT_AN_IMAGE}).status_code for _ in "abc"]
        assert statuses == [401, 401, 429]
        # A signed-in user from the same address has a bucket of their own.
        response = api.client.post(
            f"{P}/compare", files={"a": NOT_AN_IMAGE, "b": NOT_AN_IMAGE}, headers=api.as_("examiner")
        )
        assert response.status_code == 415


def test_search_rate_limit_switched_off(module_api: Api) -> None:
    api = module_api
    with search_limit(api, per_minute=0, burst=1):
        for _ in range(3):
            response = api.client.post(f"{P}/compare", files={"a": NOT_AN_IMAGE}, headers=api.as_("examiner"))
            assert response.status_code == 422  # b is missing: validated, never rate limited


def test_default_limit_admits_a_real_search(gallery_api: Api) -> None:
    api = gallery_api
    probe = face_images("Bill_Paxton")[2]
    response = api.client.post(f"{P}/search", data=WHY, files=[upload(probe)], headers=api.as_("examiner"))
    assert response.status_code == 200
    assert api.service.settings.search_rate_per_minute >= 60 and api.service.settings.search_rate_burst >= 30


def test_token_buckets_refill_over_time() -> None:
    now = [0.0]
    buckets = TokenBuckets(clock=lambda: now[0])
    assert [buckets.take("u", 60, 2)[0] for _ in range(3)] == [True, True, False]
    admitted, wait, first = buckets.take("u", 60, 2)
    assert not admitted and not first and wait == pytest.approx(1.0)
    now[0] = 1.0  # one token a second at 60 a minute
    assert buckets.take("u", 60, 2)[0] is True
    assert buckets.take("u", 60, 2)[0] is False
    assert buckets.take("other", 60, 2)[0] is True
    now[0] = 100.0  # refilled, but never beyond the burst
    assert [buckets.take("u", 60, 2)[0] for _ in range(3)] == [True, True, False]


# -- regressions found by the contract fuzzing ---------------------------------------------------------
@pytest.mark.parametrize("number", [2**31, 2**63, 10**30])
def test_huge_numbers_are_a_422_not_a_500(module_api: Api, number: int) -> None:
    """Integers past the database's range (64 bits on SQLite, the id column's 32 bits on PostgreSQL)
    in a path or a query were an OverflowError or DataError: a 500."""
    api = module_api
    reader = api.as_("reviewer")
    for path in (
        f"{P}/persons?offset={number}",
        f"{P}/leads/{number}",
        f"{P}/notifications?identification_id={number}",
    ):
        response = api.client.get(path, headers=reader)
        assert response.status_code in (200, 404, 422), (path, response.status_code, response.text)
        if response.status_code == 422:
            assert response.json()["error"]["code"] == "invalid_request"
    # The web pages answer the same way (an error page, not a 500).
    page = api.client.get(f"/leads/{number}", headers={**reader, "Accept": "application/json"})
    assert page.status_code in (404, 422), page.text


def test_text_with_a_nul_character_is_not_a_500(module_api: Api) -> None:
    """PostgreSQL refuses NUL in text (a DataError: it was a 500); SQLite stores it."""
    api = module_api
    body = {"name": "Nul\x00Name", "reported_by": "x", "source": "x", "legal_basis": "x"}
    created = api.client.post(f"{P}/reports", json=body, headers=api.as_("intake"))
    listed = api.client.get(f"{P}/reports", params={"q": "Nul\x00Name"}, headers=api.as_("intake"))
    if api.backend == "postgresql":
        for response in (created, listed):
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] == "invalid_request"
            assert "NUL" in response.json()["error"]["message"]
    else:
        assert created.status_code == 201 and listed.status_code == 200


def test_outbox_run_with_a_huge_stale_after(module_api: Api) -> None:
    """``stale_after_s`` past what a timedelta holds was an OverflowError: a 500."""
    api = module_api
    for value in (1e300, 3.9e16):
        response = api.client.post(
            f"{P}/notifications/send", json={"stale_after_s": value}, headers=api.as_("reviewer")
        )
        assert response.status_code == 200, response.text
        assert response.json()["marked_unknown"] == []


def test_schema_declares_the_error_body(module_api: Api) -> None:
    schema = module_api.client.get(f"{P}/openapi.json").json()
    responses = schema["paths"][f"{P}/search"]["post"]["responses"]
    for status in ("401", "403", "413", "415", "422", "429"):
        ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody"), (status, ref)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message"}
