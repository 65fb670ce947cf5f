"""Gateway errors in Parallel's ErrorResponse shape, and reading upstream's error bodies."""

from __future__ import annotations

import uuid

import orjson
import pytest

from gateway.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRunIdError,
    NoTeamKeyError,
    NotFoundError,
    RunNotFoundError,
    UnreadableUpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    error_body,
    parse_error_body,
)

REF_ID = "fcb2b4f3-c75e-4186-87bc-caa1a8381331"


def test_error_body_bytes() -> None:
    assert error_body("Run id not found", REF_ID) == (
        b'{"type":"error","error":{"ref_id":"fcb2b4f3-c75e-4186-87bc-caa1a8381331",'
        b'"message":"Run id not found","detail":null}}'
    )


def test_error_body_with_detail() -> None:
    body = error_body("Request validation error", REF_ID, {"run_id": "bad"})
    assert orjson.loads(body) == {
        "type": "error",
        "error": {
            "ref_id": REF_ID,
            "message": "Request validation error",
            "detail": {"run_id": "bad"},
        },
    }


@pytest.mark.parametrize(
    ("cls", "status", "reason"),
    [
        pytest.param(GatewayError, 500, "internal", id="GatewayError"),
        pytest.param(AuthenticationError, 401, "unauthenticated", id="AuthenticationError"),
        pytest.param(NotFoundError, 404, "not-found", id="NotFoundError"),
        pytest.param(RunNotFoundError, 404, "run-not-found", id="RunNotFound"),
        pytest.param(InvalidRunIdError, 422, "invalid-run-id", id="InvalidRunIdError"),
        pytest.param(UpstreamUnavailableError, 502, "upstream-unavailable", id="Unavailable"),
        pytest.param(UpstreamTimeoutError, 504, "upstream-timeout", id="UpstreamTimeoutError"),
        pytest.param(NoTeamKeyError, 503, "no-team-key", id="NoTeamKeyError"),
    ],
)
def test_gateway_errors(cls: type[GatewayError], status: int, reason: str) -> None:
    error = cls("Something precise went wrong.")
    assert isinstance(error, GatewayError)
    assert error.status == status
    assert error.reason == reason
    assert error.message == "Something precise went wrong."
    assert str(error) == "Something precise went wrong."
    parsed = uuid.UUID(error.ref_id)
    assert str(parsed) == error.ref_id
    assert parsed.version == 4
    assert orjson.loads(error.body()) == {
        "type": "error",
        "error": {
            "ref_id": error.ref_id,
            "message": "Something precise went wrong.",
            "detail": None,
        },
    }
    assert cls("again").ref_id != error.ref_id


def test_ref_ids_are_distinct() -> None:
    assert len({NotFoundError("x").ref_id for _ in range(500)}) == 500


def test_headers() -> None:
    assert NotFoundError("x").headers == {}
    assert NoTeamKeyError("x").headers == {"x-should-retry": "false"}
    given = {"retry-after": "1"}
    error = UpstreamUnavailableError("x", headers=given)
    given["retry-after"] = "99"
    assert error.headers == {"retry-after": "1"}


def test_with_headers_keeps_the_ref_id_and_leaves_the_original_alone() -> None:
    error = NoTeamKeyError("No key.")
    clone = error.with_headers({"Cache-Status": "parallel-gateway; detail=no-team-key"})
    assert type(clone) is NoTeamKeyError
    assert clone is not error
    assert (clone.ref_id, clone.message, clone.status) == (error.ref_id, "No key.", 503)
    assert clone.headers == {
        "x-should-retry": "false",
        "Cache-Status": "parallel-gateway; detail=no-team-key",
    }
    assert error.headers == {"x-should-retry": "false"}
    assert clone.body() == error.body()


def test_with_headers_copies_an_error_whose_init_takes_more_than_a_message() -> None:
    detail = {"upstream_status": 502, "upstream_content_type": None, "upstream_body": ""}
    error = UnreadableUpstreamError(502, "ref-1", detail, {"retry-after": "0"})
    clone = error.with_headers({"Cache-Status": "x"})
    assert type(clone) is UnreadableUpstreamError
    assert (clone.status, clone.ref_id, clone.detail, clone.args) == (
        502,
        "ref-1",
        detail,
        ("Parallel API answered 502 without an error body the gateway could read.",),
    )
    assert clone.headers == {"retry-after": "0", "Cache-Status": "x"}
    assert orjson.loads(clone.body()) == {
        "type": "error",
        "error": {"ref_id": "ref-1", "message": clone.message, "detail": detail},
    }


def test_with_headers_overrides_a_header_of_the_same_name() -> None:
    error = NoTeamKeyError("No key.").with_headers({"x-should-retry": "true"})
    assert error.headers == {"x-should-retry": "true"}


def test_no_team_key_headers_are_not_shared() -> None:
    first = NoTeamKeyError("x")
    first.headers["x-should-retry"] = "true"
    assert NoTeamKeyError("y").headers == {"x-should-retry": "false"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            b'{"type":"error","error":{"ref_id":"r-1","message":"Run id not found","detail":null}}',
            ("r-1", "Run id not found"),
            id="valid",
        ),
        pytest.param(
            b'{"error":{"ref_id":"r-1","message":"Run id not found"}}',
            ("r-1", "Run id not found"),
            id="missing-type",
        ),
        pytest.param(
            b'{"type":"error","error":{"message":"Unauthorized"}}',
            (None, "Unauthorized"),
            id="missing-ref-id",
        ),
        pytest.param(
            b'{"error":{"ref_id":123,"message":"m"}}', (None, "m"), id="ref-id-not-a-string"
        ),
        pytest.param(b'{"error":{"ref_id":null,"message":"m"}}', (None, "m"), id="ref-id-null"),
        pytest.param(
            b'{"error":{"ref_id":"r-1","message":{"text":"m"}}}',
            ("r-1", None),
            id="message-not-a-string",
        ),
        pytest.param(b'{"error":{}}', (None, None), id="empty-error"),
        pytest.param(b'{"error":"boom"}', (None, None), id="error-is-a-string"),
        pytest.param(b'{"error":null}', (None, None), id="error-is-null"),
        pytest.param(b'{"error":[{"ref_id":"r-1"}]}', (None, None), id="error-is-an-array"),
        pytest.param(b'{"detail":"Not Found"}', (None, None), id="other-framework-shape"),
        pytest.param(b'[{"error":{"ref_id":"r-1"}}]', (None, None), id="json-array"),
        pytest.param(b'"error"', (None, None), id="json-string"),
        pytest.param(b"null", (None, None), id="json-null"),
        pytest.param(b"502", (None, None), id="json-number"),
        pytest.param(b"<html><body>502 Bad Gateway</body></html>", (None, None), id="html"),
        pytest.param(b'{"error":{"ref_id":"r-1"', (None, None), id="truncated"),
        pytest.param(b"\xff\xfe\x00", (None, None), id="invalid-utf8"),
        pytest.param(b"", (None, None), id="empty"),
    ],
)
def test_parse_error_body(body: bytes, expected: tuple[str | None, str | None]) -> None:
    assert parse_error_body(body) == expected


def test_parse_error_body_round_trips_error_body() -> None:
    assert parse_error_body(error_body("Run id not found", REF_ID)) == (REF_ID, "Run id not found")
