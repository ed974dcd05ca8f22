"""The published OpenAPI schema (``/api/v1/openapi.json``) documents the body of every response:
each operation's success status has a schema (a JSON model, or a file's media type), the main
bodies carry the fields clients rely on, errors are ``{"error": {"code", "message"}}``, and the
enumerations of the schema are the values the store accepts."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apitest import start_api

from facetrace.api import schemas
from facetrace.store import accounts, jobs, workflow_models

P = "/api/v1"
JSON = "application/json"


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The schema as the server publishes it (SQLite: the schema does not depend on the database)."""
    where: Path = tmp_path_factory.mktemp("openapi")
    for server in start_api(where / "home", f"sqlite:///{where / 'facetrace.db'}", "sqlite"):
        response = server.client.get(f"{P}/openapi.json")
        assert response.status_code == 200
        yield response.json()


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Return ``schema`` with its ``$ref`` (if any) followed into ``components``."""
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


def body_schema(doc: dict[str, Any], path: str, method: str, status: str = "200") -> dict[str, Any]:
    """Return the resolved JSON body schema of one response of one operation."""
    content = doc["paths"][f"{P}{path}"][method]["responses"][status]["content"]
    return resolve(doc, content[JSON]["schema"])


def field(doc: dict[str, Any], schema: dict[str, Any], *names: str) -> dict[str, Any]:
    """Follow ``names`` through properties (and list items) of ``schema``; return the last one resolved."""
    for name in names:
        schema = resolve(doc, schema["properties"][name])
        if schema.get("type") == "array":
            schema = resolve(doc, schema["items"])
    return schema


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def test_every_operation_documents_its_success_body(openapi: dict[str, Any]) -> None:
    missing = []
    for path, method, operation in operations(openapi):
        successes = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        if not successes:
            missing.append(f"{method.upper()} {path}: no success response")
        for code, response in successes.items():
            content = response.get("content") or {}
            if not content:
                missing.append(f"{method.upper()} {path} {code}: no body described")
            for media_type, entry in content.items():
                schema = resolve(openapi, entry.get("schema") or {})
                if media_type == JSON and not schema.get("properties"):
                    missing.append(f"{method.upper()} {path} {code}: JSON body without fields")
                elif not schema:
                    missing.append(f"{method.upper()} {path} {code}: {media_type} without a schema")
    assert not missing, "\n".join(missing)
    assert sum(1 for _ in operations(openapi)) >= 68


def test_every_json_body_is_a_named_model(openapi: dict[str, Any]) -> None:
    """A reference to a component, not an anonymous object: clients generate one type per body."""
    anonymous = [
        f"{method.upper()} {path}"
        for path, method, operation in operations(openapi)
        for code, response in operation["responses"].items()
        if code.startswith("2") and JSON in response.get("content", {})
        if "$ref" not in response["content"][JSON]["schema"]
    ]
    assert not anonymous


def test_search_result_has_faces_candidates_and_decisions(openapi: dict[str, Any]) -> None:
    result = body_schema(openapi, "/search", "post")
    assert {"image", "gallery", "policy", "faces"} <= set(result["required"])
    face = field(openapi, result, "faces")
    assert {"box", "quality", "quality_ok", "candidates", "match", "quality_band"} <= set(face["required"])
    band = field(openapi, result, "faces", "quality_band")
    assert {"name", "label", "true_match_rate", "false_match_rate", "advice"} <= set(band["required"])
    candidate = field(openapi, result, "faces", "candidates")
    assert {"rank", "person", "score", "fmr", "fpir", "match", "reason"} <= set(candidate["required"])
    assert candidate["properties"]["score"]["type"] == "number"
    assert candidate["properties"]["match"]["type"] == "boolean"
    assert {"threshold", "target_fpir", "calibrated"} <= set(field(openapi, result, "policy")["required"])
    assert "score" in body_schema(openapi, "/compare", "post")["required"]


def test_a_lead_has_its_scores(openapi: dict[str, Any]) -> None:
    lead = body_schema(openapi, "/leads/{lead_id}", "get")
    assert {"score", "fmr", "fpir", "threshold", "review_fpir", "gallery_size"} <= set(lead["required"])
    assert {"case", "report", "reviews", "evidence", "identification", "blind", "hidden_reviews"} <= set(
        lead["required"]
    )
    queue = field(openapi, body_schema(openapi, "/leads", "get"), "items")
    assert {"score", "fpir", "case", "report", "report_name"} <= set(queue["required"])
    statuses = field(openapi, lead, "status")["enum"]
    assert set(statuses) == set(workflow_models.LEAD_STATUSES)


def test_lists_are_paged_bodies(openapi: dict[str, Any]) -> None:
    for path in ("/reports", "/cases", "/leads", "/notifications", "/persons"):
        page = body_schema(openapi, path, "get")
        assert {"items", "offset", "limit", "next_offset"} <= set(page["required"]), path


def test_an_error_body_is_error_code_and_message(openapi: dict[str, Any]) -> None:
    for path, method, status in (("/reports/{reference}", "get", "404"), ("/search", "post", "422")):
        error = body_schema(openapi, path, method, status)
        assert error["required"] == ["error"]
        assert set(field(openapi, error, "error")["required"]) == {"code", "message"}
    not_ready = body_schema(openapi, "/ready", "get", "503")
    assert {"code", "message", "checks"} <= set(field(openapi, not_ready, "error")["required"])


def test_files_and_metrics_are_documented_by_media_type(openapi: dict[str, Any]) -> None:
    image = openapi["paths"][f"{P}/persons/{{external_id}}/images/{{image_id}}/file"]["get"]["responses"]["200"]
    assert {"image/jpeg", "image/png", "application/octet-stream"} <= set(image["content"])
    assert JSON not in image["content"]
    metrics = openapi["paths"][f"{P}/metrics"]["get"]["responses"]["200"]
    assert list(metrics["content"]) == ["text/plain"]


@pytest.mark.parametrize(
    ("literal", "values"),
    [
        (schemas.Role, accounts.ROLES),
        (schemas.ReportStatus, workflow_models.REPORT_STATUSES),
        (schemas.CaseStatus, workflow_models.CASE_STATUSES),
        (schemas.Condition, workflow_models.CONDITIONS),
        (schemas.LeadStatus, workflow_models.LEAD_STATUSES),
        (schemas.Decision, workflow_models.DECISIONS),
        (schemas.EvidenceKind, workflow_models.EVIDENCE_KINDS),
        (schemas.IdentificationStatus, workflow_models.IDENTIFICATION_STATUSES),
        (schemas.DuplicateStatus, workflow_models.DUPLICATE_STATUSES),
        (schemas.NotificationKind, workflow_models.NOTIFICATION_KINDS),
        (schemas.NotificationStatus, workflow_models.NOTIFICATION_STATUSES),
        (schemas.JobState, jobs.JOB_STATES),
    ],
)
def test_enumerations_are_the_values_the_store_accepts(literal: Any, values: tuple[str, ...]) -> None:
    """A value the store accepts but the schema lacks would fail the response check (a 500)."""
    assert typing.get_args(literal) == values
