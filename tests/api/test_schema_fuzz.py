"""Contract fuzzing: schemathesis generates requests for every operation of the published OpenAPI
schema (``/api/v1/openapi.json``), sent in-process as each role, as a user without roles and
without credentials, against a small enrolled gallery (SQLite; PostgreSQL is covered by the
authorisation matrix of test_api_authz.py).

Every response must be: no 5xx; every error a JSON ``{"error": {"code", "message"}}``; the
content type and (where the schema declares one) the body as the schema says; a status code the
schema declares; the security headers present. After each caller's run the enrolled gallery must
be intact unless the caller may change it (intake), and must still find its people. Image fields
are often filled with real photos (a mated probe, a stranger, a photo without a face), so that
search, compare and detect run the face pipeline.

Bounded on purpose (a few examples per operation, derandomised, no example database) so that the
file runs in about two minutes on two cores; raise ``FACETRACE_FUZZ_EXAMPLES`` to fuzz longer.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from apitest import GALLERY, IDENTITIES, Api, face_images, start_api
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python.asgi import ASGIClient
from schemathesis.specs.openapi import checks as openapi_checks
from sqlalchemy import select

from facetrace.gallery.sources import EnrollItem
from facetrace.store.accounts import User, create_token
from facetrace.store.models import Face, Person

P = "/api/v1"
BASE_URL = "https://testserver"
SPECIAL = Path(__file__).resolve().parents[1] / "data" / "special"
ENROLLED = GALLERY[:2]  # a small gallery: two identities, two images each
EXAMPLES = int(os.environ.get("FACETRACE_FUZZ_EXAMPLES", "5"))
CALLERS = (*IDENTITIES, "anonymous")
# Callers allowed to change enrolled persons (add or remove their images, delete them).
GALLERY_WRITERS = {"intake"}
SINGLE_FILE_FIELDS = {"image", "a", "b", "video", "archive"}
MULTI_FILE_FIELDS = {"images", "photos"}


def _photos() -> list[tuple[str, bytes]]:
    """Real uploads for image fields: a mated probe, a stranger, and a photo without a face."""
    return [
        ("mated.jpg", face_images(ENROLLED[0])[2].read_bytes()),
        ("stranger.jpg", face_images(GALLERY[3])[0].read_bytes()),
        ("no_face.png", (SPECIAL / "no_face.png").read_bytes()),
    ]


def gallery_snapshot(api: Api) -> dict[str, Any]:
    """Return the enrolled persons as stored: provenance, images, and each face's template digest."""
    out: dict[str, Any] = {}
    with api.service.db.sessions() as session:
        for person in session.execute(select(Person).where(Person.external_id.in_(ENROLLED))).scalars():
            faces = session.execute(select(Face).where(Face.person_id == person.id).order_by(Face.id)).scalars()
            out[person.external_id] = {
                "record": (person.name, person.source, person.legal_basis, person.attributes),
                "images": sorted(image.sha256 for image in person.images),
                "faces": [(f.id, f.image_id, hashlib.sha256(f.embedding).hexdigest()) for f in faces],
            }
    return out


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A server (SQLite) with ``ENROLLED`` enrolled, private to this module: fuzzing writes to it."""
    where = tmp_path_factory.mktemp("fuzz")
    for server in start_api(where / "home", f"sqlite:///{where / 'facetrace.db'}", "sqlite"):
        items = [
            EnrollItem(n, n.replace("_", " "), face_images(n)[:2], "LFW (test subset)", "test data") for n in ENROLLED
        ]
        outcome = server.service.gallery.enroll(items, workers=1)
        assert not outcome.errors and outcome.images_enrolled == 2 * len(ENROLLED), outcome.as_dict()
        yield server


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_api: Api) -> Any:
    """The schema the server publishes, loaded by schemathesis, with real photos for image fields."""
    response = fuzz_api.client.get(f"{P}/openapi.json")
    assert response.status_code == 200
    loaded = schemathesis.openapi.from_dict(response.json())
    photos = _photos()

    @loaded.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        multipart = any(b.media_type == "multipart/form-data" for b in context.operation.body)
        if not multipart or not isinstance(body, dict) or not set(body) & (SINGLE_FILE_FIELDS | MULTI_FILE_FIELDS):
            return st.just(body)  # JSON bodies keep what was generated (a negative one may have a key "a")
        real = st.sampled_from(photos).map(lambda photo: photo[1])

        def fill(values: list[bytes]) -> dict[str, Any]:
            out = dict(body)
            for i, key in enumerate(sorted(set(body) & SINGLE_FILE_FIELDS)):
                out[key] = values[i % len(values)]
            for key in set(body) & MULTI_FILE_FIELDS:
                out[key] = values[:1]
            return out

        # Real photos first: Hypothesis favours the first branch, and few examples are run.
        return st.one_of(st.lists(real, min_size=2, max_size=2).map(fill), st.just(body))

    return loaded


def fresh_headers(fuzz_api: Api, caller: str) -> dict[str, str]:
    """A fresh API token for the caller (an admin's fuzzing may have revoked the fixture's)."""
    if caller == "anonymous":
        return {}
    with fuzz_api.service.db.session() as session:
        user = session.execute(select(User).where(User.username == caller)).scalar_one()
        user.disabled = False  # an admin's fuzzing may have disabled the account
        _, secret = create_token(session, user, "fuzz", days=1)
    return {"Authorization": f"Bearer {secret}"}


def error_body_check(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is ``{"error": {"code", "message"}}`` with a JSON content type."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"error with content type {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str)
    assert error["code"] and error["message"], body
    return None


def security_headers_check(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every response, errors included, is unframeable, unsniffable, uncached, and HSTS over https."""
    headers = {name.lower(): values[0] for name, values in response.headers.items()}
    assert headers.get("x-frame-options") == "DENY", headers
    assert "frame-ancestors 'none'" in headers.get("content-security-policy", ""), headers
    assert headers.get("x-content-type-options") == "nosniff", headers
    assert headers.get("referrer-policy") == "no-referrer", headers
    assert headers.get("cache-control") == "no-store", headers
    assert headers.get("strict-transport-security", "").startswith("max-age="), headers
    return None


CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.status_code_conformance,
]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run: a CI failure reproduces locally
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failing request
)


def fuzz_operation(
    operation: Any, hooks: Any, headers: dict[str, str], transport: ASGIClient, statuses: list[int]
) -> str | None:
    """Fuzz one operation as one caller, adding the response statuses to ``statuses``; return the
    first failure, or None."""
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, hooks=hooks),
        operation.as_strategy(GenerationMode.NEGATIVE, hooks=hooks),
    )

    @FUZZ_SETTINGS
    @given(case=strategy)
    def run(case: Any) -> None:
        transport.cookies.clear()  # a login made by one example must not carry into the next
        response = case.call(base_url=BASE_URL, session=transport, headers=headers)
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS, additional_checks=[error_body_check, security_headers_check])

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # collected: one run reports every failing operation
        return f"{operation.label}: {exc}"
    return None


@pytest.mark.parametrize("caller", CALLERS)
def test_api_contract(caller: str, fuzz_api: Api, fuzz_schema: Any) -> None:
    """Fuzz every operation as ``caller``: no 5xx, JSON errors, responses as the schema says, and
    the enrolled gallery intact unless the caller may change it."""
    before = gallery_snapshot(fuzz_api)
    headers = fresh_headers(fuzz_api, caller)
    transport = ASGIClient(fuzz_api.app, base_url=BASE_URL)  # not entered: the fixture's server runs the lifespan
    failures = []
    statuses: dict[str, list[int]] = {}
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    # A logout sent with the caller's token revokes it: fuzz it last.
    operations.sort(key=lambda operation: operation.label == f"POST {P}/auth/logout")
    assert len(operations) > 50
    for operation in operations:
        seen = statuses[operation.label] = []
        failure = fuzz_operation(operation, fuzz_schema.hooks, headers, transport, seen)
        if failure:
            failures.append(failure)
    assert not failures, f"{len(failures)} operation(s) failed as {caller}:\n" + "\n\n".join(failures)
    if caller == "examiner":  # the face pipeline ran, not only the validation in front of it
        assert 200 in statuses[f"POST {P}/search"] and 200 in statuses[f"POST {P}/compare"], statuses
    if caller not in GALLERY_WRITERS:
        assert gallery_snapshot(fuzz_api) == before, f"{caller} changed the enrolled gallery"
    # Whatever was fuzzed, the gallery still finds its people.
    probe = face_images(ENROLLED[0])[2]
    found = fuzz_api.service.gallery.search(probe.read_bytes(), name=probe.name, top_k=1).to_dict()
    assert found["faces"][0]["candidates"][0]["person"]["external_id"] == ENROLLED[0]
