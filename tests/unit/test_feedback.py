"""Feedback validation, the body size limit and the per-caller rate limit — everything decided before storage
(storing is tested against Azurite in tests/storage/test_feedback_store.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from shared.feedback.endpoints import EndpointDirectory
from shared.feedback.submissions import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_COMMENT_CHARS,
    Feedback,
    FeedbackRejected,
    FeedbackService,
    TokenBucket,
    caller_id,
)
from shared.feedback.telemetry import ServedRequest, TelemetryError
from tests.fakes.memory import ManualClock
from tests.feedback_endpoints import Directory, submit

GOOD = {"request_id": "3f2b9c1e-5d1a-4c8e-9a57-0c6a1b2d3e4f", "deployment": "blue", "rating": 4}
KNOWN = Directory.of("math_coding", "math-dev", {"blue": 70, "green": 30})


class UntouchableStore:
    """A BlobStore for paths that must be refused before anything is stored."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"storage touched ({name}) by a submission that should have been refused")


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(limiter: TokenBucket | None = None, max_body_bytes: int = 8192) -> FeedbackService:
    return FeedbackService(limiter or TokenBucket(rate_per_minute=600, burst=100), max_body_bytes=max_body_bytes)


def try_submit(limits: FeedbackService, use_case: str, endpoint: str, body: bytes,
               endpoints: EndpointDirectory = KNOWN) -> None:
    """A submission that must be refused before anything is stored."""
    submit(limits, use_case, endpoint, body, caller="ip:203.0.113.7", endpoints=endpoints,
           blobs=UntouchableStore(), clock=ManualClock())  # type: ignore[arg-type]


# --- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    GOOD,
    {**GOOD, "rating": 1}, {**GOOD, "rating": 5},
    {"request_id": "abc", "deployment": "green", "thumbs": "up"},
    {"request_id": "abc", "deployment": "green", "thumbs": "down", "comment": "wrong answer"},
    {**GOOD, "comment": "é" * MAX_COMMENT_CHARS},  # characters, not bytes
])
def test_valid_feedback_is_kept_as_sent(body: dict[str, Any]) -> None:
    assert Feedback.model_validate(body).model_dump(exclude_none=True) == body


@pytest.mark.parametrize(("body", "problem"), [
    ({**GOOD, "rating": 0}, "rating"),
    ({**GOOD, "rating": 6}, "rating"),
    ({**GOOD, "rating": 4.5}, "rating"),
    ({"request_id": "abc", "deployment": "blue"}, "exactly one"),
    ({**GOOD, "thumbs": "up"}, "exactly one"),
    ({"request_id": "abc", "deployment": "blue", "thumbs": "sideways"}, "thumbs"),
    ({**GOOD, "comment": "x" * (MAX_COMMENT_CHARS + 1)}, "comment"),
    ({**GOOD, "request_id": ""}, "request_id"),
    ({**GOOD, "request_id": "../../etc/passwd"}, "request_id"),
    ({**GOOD, "deployment": "blue/../green"}, "deployment"),
    ({**GOOD, "user_email": "a@b.c"}, "user_email"),
    ({"deployment": "blue", "rating": 3}, "request_id"),
])
def test_invalid_feedback_names_the_field(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Feedback.model_validate(body)
    with pytest.raises(FeedbackRejected, match=problem) as refused:
        try_submit(service(), "math_coding", "math-dev", json.dumps(body).encode())
    assert refused.value.status == 400


def test_comment_is_cleaned_of_control_characters_and_secrets() -> None:
    feedback = Feedback.model_validate({**GOOD, "comment": "bad\x00 answer; my api_key=sk-123 leaked\x1b"})
    assert feedback.comment == "bad answer; my api_key=*** leaked"
    assert Feedback.model_validate({**GOOD, "comment": "   "}).comment is None


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(FeedbackRejected, match="JSON object") as refused:
        try_submit(service(), "math_coding", "math-dev", body)
    assert refused.value.status == 400


@pytest.mark.parametrize(("use_case", "endpoint"), [
    ("../x", "math-dev"), ("math_coding", "a/b"), ("", "e"), ("math_coding", "math-prod"), ("x" * 5000, "math-dev"),
])
def test_an_unknown_use_case_or_endpoint_is_404(use_case: str, endpoint: str) -> None:
    with pytest.raises(FeedbackRejected, match="no endpoint") as refused:
        try_submit(service(), use_case, endpoint, json.dumps(GOOD).encode())
    assert refused.value.status == 404


def test_an_endpoint_without_deployments_is_404() -> None:
    with pytest.raises(FeedbackRejected, match="no deployment yet") as refused:
        try_submit(service(), "math_coding", "math-dev", json.dumps(GOOD).encode(),
                   Directory.of("math_coding", "math-dev", {}))
    assert refused.value.status == 404


def served(request_id: str, deployment: str | None, minutes_ago: float = 1) -> ServedRequest:
    return ServedRequest(time=ManualClock().now() - timedelta(minutes=minutes_ago), endpoint="math-dev",
                         request_id=request_id, deployment=deployment, status=200, latency_ms=12.0)


@pytest.mark.parametrize(("body", "problem"), [
    ({**GOOD, "deployment": "purple"}, "has no deployment 'purple' \\(it has blue, green\\)"),
    ({**GOOD, "request_id": "never-served"}, "served no request 'never-served' in the last 30 days"),
    ({**GOOD, "request_id": "r-green"}, "'r-green' was served by green, not blue"),
    ({**GOOD, "request_id": "r-unrouted"}, "'r-unrouted' was served by no deployment, not blue"),
    ({**GOOD, "request_id": "r-old"}, "served no request 'r-old'"),  # older than the report's window
])
def test_feedback_must_name_a_deployment_and_request_the_endpoint_served(body: dict[str, Any], problem: str) -> None:
    known = Directory.of("math_coding", "math-dev", {"blue": 70, "green": 30},
                         [served("r-green", "green"), served("r-unrouted", None),
                          served("r-old", "blue", minutes_ago=31 * 24 * 60)])
    with pytest.raises(FeedbackRejected, match=problem) as refused:
        try_submit(service(), "math_coding", "math-dev", json.dumps(body).encode(), known)
    assert refused.value.status == 422


class BrokenLog:
    live = True

    def served_requests(self, *args: object, **kwargs: object) -> object:
        raise TelemetryError("the router log is unreadable")


def test_an_unreadable_request_log_is_503_with_retry_after() -> None:
    known = KNOWN.find("math_coding", "math-dev")
    broken = Directory(replace(known, telemetry=BrokenLog()))  # type: ignore[arg-type]
    with pytest.raises(FeedbackRejected, match="cannot be checked now: the router log is unreadable") as refused:
        try_submit(service(), "math_coding", "math-dev", json.dumps(GOOD).encode(), broken)
    assert (refused.value.status, refused.value.retry_after) == (503, 30)


@pytest.mark.parametrize("body", [b"[" * 20_000, b'{"rating": ' + b"9" * 5000 + b"}", b'{"a": NaN', b"\x00"])
def test_hostile_json_is_400_not_an_exception(body: bytes) -> None:
    with pytest.raises(FeedbackRejected) as refused:
        try_submit(service(max_body_bytes=64 * 1024), "math_coding", "math-dev", body)
    assert refused.value.status == 400


def test_a_lone_surrogate_in_the_comment_is_400() -> None:
    body = b'{"request_id": "r", "deployment": "blue", "thumbs": "up", "comment": "ok \\ud800"}'
    with pytest.raises(FeedbackRejected, match="comment") as refused:
        try_submit(service(), "math_coding", "math-dev", body)
    assert refused.value.status == 400


# --- size limit --------------------------------------------------------------------------------------------------


def test_an_oversized_body_is_refused_before_it_is_parsed() -> None:
    limiter = TokenBucket(rate_per_minute=60, burst=1)
    small = service(limiter, max_body_bytes=256)
    with pytest.raises(FeedbackRejected, match="257 bytes; the limit is 256") as refused:
        try_submit(small, "math_coding", "math-dev", b"{" + b" " * 255 + b"}")
    assert refused.value.status == 413
    assert limiter.take("ip:203.0.113.7") == 0.0  # the refused body did not even spend a token


def test_the_default_limit_fits_the_longest_comment_in_any_script() -> None:
    # The worst case: characters outside the BMP, \\u-escaped as a surrogate pair (12 bytes each).
    escaped = json.dumps({**GOOD, "comment": "😀" * MAX_COMMENT_CHARS}).encode()
    assert len(escaped) <= DEFAULT_MAX_BODY_BYTES
    assert service(max_body_bytes=DEFAULT_MAX_BODY_BYTES).max_body_bytes == 32 * 1024


# --- rate limit --------------------------------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeMonotonic()
    bucket = TokenBucket(rate_per_minute=30, burst=3, monotonic=clock)  # one token every 2 s
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a") == pytest.approx(2.0)
    clock.now += 1.0
    assert bucket.take("a") == pytest.approx(1.0)  # half a token so far; refusals spend nothing
    clock.now += 1.0
    assert bucket.take("a") == 0.0
    clock.now += 3600
    assert [bucket.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # refilled, but never beyond the burst


def test_callers_have_their_own_buckets() -> None:
    clock = FakeMonotonic()
    bucket = TokenBucket(rate_per_minute=1, burst=1, monotonic=clock)
    assert bucket.take("ip:203.0.113.7") == 0.0
    assert bucket.take("ip:203.0.113.7") > 0
    assert bucket.take("ip:198.51.100.2") == 0.0


def test_the_bucket_table_is_bounded() -> None:
    bucket = TokenBucket(rate_per_minute=1, burst=1, max_callers=100, monotonic=FakeMonotonic())
    for n in range(1000):
        bucket.take(f"ip:10.0.{n // 256}.{n % 256}")
    assert len(bucket._buckets) == 100


def test_the_service_answers_429_with_retry_after() -> None:
    clock = FakeMonotonic()
    limited = service(TokenBucket(rate_per_minute=6, burst=2, monotonic=clock))
    bad = json.dumps({**GOOD, "rating": 9}).encode()  # invalid bodies spend tokens too: probing is not free
    for _ in range(2):
        with pytest.raises(FeedbackRejected) as refused:
            try_submit(limited, "math_coding", "math-dev", bad)
        assert refused.value.status == 400
    with pytest.raises(FeedbackRejected, match="too many") as refused:
        try_submit(limited, "math_coding", "math-dev", bad)
    assert (refused.value.status, refused.value.retry_after) == (429, 10)


def test_token_bucket_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="rate_per_minute"):
        TokenBucket(rate_per_minute=0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(burst=0)


# --- who is calling ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "client_ip", "expected"), [
    ({"X-MS-CLIENT-PRINCIPAL-ID": "user-1", "x-forwarded-for": "203.0.113.7:5000"}, None, "principal:user-1"),
    ({"x-forwarded-for": "203.0.113.7:51234, 10.0.0.4"}, None, "ip:203.0.113.7"),
    ({"x-forwarded-for": "[2001:db8::1]:443"}, None, "ip:2001:db8::1"),
    ({"x-forwarded-for": "2001:db8::1"}, None, "ip:2001:db8::1"),
    ({}, "127.0.0.1", "ip:127.0.0.1"),
    ({}, None, "anonymous"),
])
def test_caller_id(headers: dict[str, str], client_ip: str | None, expected: str) -> None:
    assert caller_id(headers, client_ip) == expected


def test_a_function_key_is_a_caller_but_never_kept_in_clear() -> None:
    key = "very-secret-function-key"
    caller = caller_id({"x-functions-key": key, "x-forwarded-for": "203.0.113.7"})
    assert caller.startswith("key:")
    assert key not in caller
    assert caller == caller_id({"X-Functions-Key": key})
