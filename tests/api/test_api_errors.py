"""Every error is JSON ``{"error": {"code", "message"}}`` with the right status: never a stack trace."""

from __future__ import annotations

from collections.abc import Iterator

from apitest import Api

P = "/api/v1"


def assert_error(response: object, status: int, code: str) -> str:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text and 'File "' not in response.text  # type: ignore[attr-defined]
    return str(body["error"]["message"])


def test_unknown_route_and_method(module_api: Api) -> None:
    client = module_api.client
    assert_error(client.get("/nothing/here"), 404, "not_found")
    assert_error(client.get(f"{P}/persons/R-1/nothing", headers=module_api.as_("examiner")), 404, "not_found")
    assert_error(client.put(f"{P}/search", headers=module_api.as_("examiner")), 405, "method_not_allowed")


def test_validation_errors(module_api: Api) -> None:
    client, examiner = module_api.client, module_api.as_("examiner")
    message = assert_error(
        client.get(f"{P}/persons", params={"limit": "lots"}, headers=examiner), 422, "invalid_request"
    )
    assert "limit" in message
    broken = client.post(f"{P}/auth/login", content=b'{"username": ', headers={"Content-Type": "application/json"})
    assert "JSON" in assert_error(broken, 422, "invalid_request")
    assert_error(client.post(f"{P}/auth/login", json={"username": "x"}), 422, "invalid_request")


def test_body_over_the_limit_is_refused_before_reading(module_api: Api) -> None:
    settings = module_api.service.settings
    limit = 2 * settings.max_upload_bytes + 1024 * 1024
    declared = module_api.client.post(
        f"{P}/detect",
        content=b"x",
        headers={**module_api.as_("examiner"), "Content-Length": str(limit + 1), "Content-Type": "image/jpeg"},
    )
    assert "larger than the limit" in assert_error(declared, 413, "too_large")


def test_streamed_body_over_the_limit_is_stopped(module_api: Api) -> None:
    """A body sent in chunks without a Content-Length is counted as it arrives."""
    before = module_api.service.settings.max_upload_bytes
    module_api.service.settings.max_upload_bytes = 10_000  # request limit: 2 x 10 kB + 1 MiB

    def chunks() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'
        for _ in range(40):
            yield b"\xff" * 65536
        yield b"\r\n--b--\r\n"

    try:
        response = module_api.client.post(
            f"{P}/detect",
            content=chunks(),
            headers={**module_api.as_("examiner"), "Content-Type": "multipart/form-data; boundary=b"},
        )
    finally:
        module_api.service.settings.max_upload_bytes = before
    assert "grew past the limit" in assert_error(response, 413, "too_large")


def test_unexpected_errors_are_a_bare_500(api: Api) -> None:
    def boom() -> None:
        raise RuntimeError("secret internals: /etc/shadow")

    api.app.add_api_route(f"{P}/boom", boom)
    response = api.client.get(f"{P}/boom")
    message = assert_error(response, 500, "internal")
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert "server log" in message


def test_openapi_schema_is_published(module_api: Api) -> None:
    schema = module_api.client.get(f"{P}/openapi.json").json()
    assert schema["info"]["title"] == "facetrace"
    assert {f"{P}/search", f"{P}/persons", f"{P}/jobs/{{job_id}}", f"{P}/audit"} <= set(schema["paths"])
    search = schema["paths"][f"{P}/search"]["post"]
    assert "multipart/form-data" in search["requestBody"]["content"]
