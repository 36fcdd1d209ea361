"""User feedback on one answer of a deployed flow: validated, rate-limited, stored as one blob per submission.

A submission names the request it rates (the `x-request-id` the endpoint answered with), the deployment that
served it, and either a rating 1-5 or a thumbs up/down, with an optional comment (at most 2000 characters).
It is stored at `feedback/{use_case}/{endpoint}/{date}/{id}.json` (the id derived from the submission's content and
caller, so a retried request is stored once); the A/B report reads them back.

Only what exists is rated: the use case and endpoint must be known (EndpointDirectory: 404 otherwise), the
endpoint deployed (404), the deployment one of its deployments (422), and — where the telemetry is live, as the
local router's log is — the request id one the endpoint served in the last 30 days, by that deployment (422).

Abuse limits, applied before anything is parsed:
- the body is capped (`max_body_bytes`, 32 KiB by default: a 2000-character comment fits in any script, even
  with every character \\u-escaped as JSON allows);
- each caller has a token bucket (`burst` submissions at once, refilled at `rate_per_minute`). The buckets live
  **in the memory of one Function instance**: a scaled-out app allows that much per instance, and a restart
  forgets them. That is a guard against a runaway client, not a quota; put API Management or Front Door rate
  limiting in front of the app when a hard, global limit is needed.

The caller id is the signed-in principal (App Service authentication), else a hash of the function key used, else
the client IP (Azure's front end puts it first in X-Forwarded-For). Only a hash of it is stored with the feedback:
an IP address is personal data, and a key is a secret.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.blob_layout import FEEDBACK, feedback_name, feedback_prefix
from shared.deployment.port import DeploymentError, EndpointNotFound
from shared.feedback.endpoints import EndpointDirectory, KnownEndpoint
from shared.feedback.telemetry import REPORT_WINDOW
from shared.json_body import InvalidBody, parse_object
from shared.ports import BlobStore, Clock, PreconditionFailed
from shared.redaction import redact_text

MAX_COMMENT_CHARS = 2000
DEFAULT_MAX_BODY_BYTES = 32 * 1024
_ID = r"^[A-Za-z0-9._:-]{1,128}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class FeedbackRejected(ValueError):
    """A submission refused; `status` is the HTTP answer (400, 404, 409, 413, 422, 429, 503), `retry_after` seconds
    for 409, 429 and 503."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Feedback(BaseModel):
    """What a user sends."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    request_id: str = Field(pattern=_ID, description="the x-request-id of the answer being rated")
    deployment: str = Field(pattern=_NAME, description="the deployment that served it (x-served-by)")
    rating: int | None = Field(default=None, ge=1, le=5)
    thumbs: Literal["up", "down"] | None = None
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_CHARS)

    @model_validator(mode="after")
    def _one_score(self) -> Feedback:
        if (self.rating is None) == (self.thumbs is None):
            raise ValueError("give either rating (1-5) or thumbs ('up' or 'down'), exactly one")
        if self.comment is not None:
            # Control characters have no place in a comment; secrets pasted by mistake are masked.
            self.comment = redact_text(_CONTROL.sub("", self.comment)) or None
        return self


class FeedbackRecord(Feedback):
    """What is stored."""

    id: str
    use_case: str
    endpoint: str
    received_at: datetime
    caller: str = Field(description="a hash of the caller id, never the id itself")


class TokenBucket:
    """Per-caller token buckets in this process's memory (see the module notes). Thread-safe; bounded in size."""

    def __init__(self, rate_per_minute: float = 30.0, burst: int = 10, *, max_callers: int = 10_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError("rate_per_minute must be > 0 and burst >= 1")
        self.rate_per_second = rate_per_minute / 60
        self.burst = burst
        self.max_callers = max_callers
        self._now = monotonic
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # caller -> (tokens, updated at)

    def take(self, caller: str) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until one is available."""
        now = self._now()
        with self._lock:
            tokens, updated = self._buckets.pop(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - updated) * self.rate_per_second)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate_per_second
            self._buckets[caller] = (tokens, now)  # most recent last
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)  # forgetting an idle caller only ever gives it a full bucket
            return wait


def caller_id(headers: Mapping[str, str], client_ip: str | None = None) -> str:
    """Who is calling, for the rate limit: principal, else function key (hashed), else client IP."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if principal := lowered.get("x-ms-client-principal-id"):
        return f"principal:{principal}"
    if key := lowered.get("x-functions-key"):
        return f"key:{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    forwarded = (lowered.get("x-forwarded-for") or "").split(",")[0].strip()
    if forwarded:
        return f"ip:{_without_port(forwarded)}"
    return f"ip:{client_ip}" if client_ip else "anonymous"


def _without_port(address: str) -> str:
    """Azure appends the client's port: '203.0.113.7:51234', '[2001:db8::1]:443'; a bare IPv6 has no port."""
    if address.startswith("["):
        return address[1:].split("]", maxsplit=1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


class FeedbackService:
    """Admission: the abuse limits (in this instance's memory) and the checks that need nothing stored. What passes
    becomes a SubmitFeedback command, which the message bus stores once (`store_feedback`)."""

    def __init__(self, limiter: TokenBucket | None = None, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.limiter = limiter or TokenBucket()
        self.max_body_bytes = max_body_bytes

    def admit(self, use_case: str, endpoint: str, body: bytes, caller: str, endpoints: EndpointDirectory) -> Feedback:
        """The submission, parsed; raises FeedbackRejected with the HTTP status to answer."""
        if len(body) > self.max_body_bytes:
            raise FeedbackRejected(413, f"feedback body is {len(body)} bytes; the limit is {self.max_body_bytes}")
        wait = self.limiter.take(caller)
        if wait > 0:
            raise FeedbackRejected(429, "too many feedback submissions; slow down", retry_after=max(1, round(wait)))
        with _answering_for_deployments():
            endpoints.find(use_case, endpoint)
        return _parse(body)


def caller_hash(caller: str) -> str:
    return hashlib.sha256(caller.encode()).hexdigest()[:16]


def store_feedback(record: FeedbackRecord, endpoints: EndpointDirectory, blobs: BlobStore, clock: Clock) -> None:
    """Check the rated answer against the endpoint, then store the record (its id is derived from the submission:
    a retried request that gets this far writes nothing new)."""
    with _answering_for_deployments():
        known = endpoints.find(record.use_case, record.endpoint)
        _check_served(known, record, clock)
    with suppress(PreconditionFailed):  # stored by an earlier attempt of the same request
        blobs.write(FEEDBACK, feedback_name(record.use_case, record.endpoint, record.received_at, record.id),
                    record.model_dump_json().encode(), if_absent=True)


def _check_served(known: KnownEndpoint, feedback: Feedback, clock: Clock) -> None:
    """The deployment is one of the endpoint's; with live telemetry, it served the rated request."""
    deployments = known.deployer.get_traffic(known.endpoint)
    if not deployments:
        raise EndpointNotFound(f"endpoint {known.endpoint} has no deployment yet")
    if feedback.deployment not in deployments:
        raise FeedbackRejected(422, f"endpoint {known.endpoint} has no deployment {feedback.deployment!r} "
                                    f"(it has {', '.join(sorted(deployments))})")
    if known.telemetry is None or not known.telemetry.live:
        return
    now = clock.now()
    served = known.telemetry.served_requests(known.endpoint, now - REPORT_WINDOW, now)
    found = next((r for r in served.requests if r.request_id == feedback.request_id), None)
    if found is None:
        raise FeedbackRejected(422, f"endpoint {known.endpoint} served no request {feedback.request_id!r} in "
                                    f"the last {REPORT_WINDOW.days} days")
    if found.deployment != feedback.deployment:
        raise FeedbackRejected(422, f"request {feedback.request_id!r} was served by "
                                    f"{found.deployment or 'no deployment'}, not {feedback.deployment}")


@contextmanager
def _answering_for_deployments() -> Iterator[None]:
    """Deployment and telemetry errors as HTTP answers: unknown -> 404; unreadable now -> 503, retry later."""
    try:
        yield
    except EndpointNotFound as unknown:
        raise FeedbackRejected(404, str(unknown)) from None
    except DeploymentError as unavailable:  # TelemetryError included
        raise FeedbackRejected(503, f"feedback cannot be checked now: {unavailable}", retry_after=30) from None


def _parse(body: bytes) -> Feedback:
    try:
        return parse_object(body, Feedback, "feedback")
    except InvalidBody as bad:
        raise FeedbackRejected(400, str(bad)) from None


def load_feedback(blobs: BlobStore, use_case: str, endpoint: str) -> list[FeedbackRecord]:
    """Every stored submission for the endpoint, oldest first; unreadable blobs are skipped."""
    prefix = feedback_prefix(use_case, endpoint)
    records = []
    for info in blobs.list(FEEDBACK, prefix):
        data, _ = blobs.read(FEEDBACK, info.name)
        try:
            records.append(FeedbackRecord.model_validate_json(data))
        except ValidationError:
            continue
    return sorted(records, key=lambda record: record.received_at)
