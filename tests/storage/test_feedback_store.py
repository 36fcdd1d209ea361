"""Feedback and the A/B report in blob storage (Azurite): where submissions land, what they hold, reading them back."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from shared.blob_layout import FEEDBACK, REPORTS
from shared.feedback.ab_report import ServedRequest, report_endpoint
from shared.feedback.submissions import FeedbackRejected, FeedbackService, TokenBucket, load_feedback
from shared.ports import BlobStore
from tests.fakes.memory import ManualClock
from tests.feedback_endpoints import Directory, submit

pytestmark = pytest.mark.azurite


def store(service: FeedbackService, blobs: BlobStore, clock: ManualClock, endpoint: str, **body: object) -> str:
    """Against an endpoint with deployments blue and green and no live telemetry (request ids are not checked)."""
    known = Directory.of("math_coding", endpoint, {"blue": 50, "green": 50}, live=False)
    return submit(service, "math_coding", endpoint, json.dumps(body).encode(), caller="ip:203.0.113.7",
                  endpoints=known, blobs=blobs, clock=clock)


def test_feedback_is_stored_per_endpoint_and_day(blob_store: BlobStore, clock: ManualClock, unique: str) -> None:
    endpoint = f"ep-{unique}"
    service = FeedbackService(TokenBucket(rate_per_minute=600, burst=50))
    first = store(service, blob_store, clock, endpoint, request_id="r-1", deployment="blue", rating=5,
                  comment="spot on")
    clock.advance(days=1)
    second = store(service, blob_store, clock, endpoint, request_id="r-2", deployment="green", thumbs="down")
    store(service, blob_store, clock, f"other-{unique}", request_id="r-3", deployment="blue", rating=1)

    names = sorted(info.name for info in blob_store.list(FEEDBACK, f"math_coding/{endpoint}/"))
    assert names == [f"math_coding/{endpoint}/2026-01-01/{first}.json",
                     f"math_coding/{endpoint}/2026-01-02/{second}.json"]
    stored = json.loads(blob_store.read(FEEDBACK, names[0])[0])
    assert {k: stored[k] for k in ("request_id", "deployment", "rating", "thumbs", "comment", "endpoint")} == {
        "request_id": "r-1", "deployment": "blue", "rating": 5, "thumbs": None, "comment": "spot on",
        "endpoint": endpoint}
    assert "203.0.113.7" not in json.dumps(stored)  # the caller only as a hash
    assert len(stored["caller"]) == 16

    loaded = load_feedback(blob_store, "math_coding", endpoint)
    assert [(f.request_id, f.rating, f.thumbs) for f in loaded] == [("r-1", 5, None), ("r-2", None, "down")]


def test_only_feedback_on_a_served_request_is_stored(blob_store: BlobStore, clock: ManualClock,
                                                     unique: str) -> None:
    endpoint = f"live-{unique}"
    service = FeedbackService(TokenBucket(rate_per_minute=600, burst=50))
    router_log = [ServedRequest(time=clock.now(), endpoint=endpoint, request_id="r-1", deployment="blue", status=200,
                                latency_ms=20)]
    known = Directory.of("math_coding", endpoint, {"blue": 100}, router_log)
    statuses = []
    for request_id in ("r-1", "r-2", "r-1"):  # r-2 was never served
        try:
            submit(service, "math_coding", endpoint, json.dumps({"request_id": request_id, "deployment": "blue",
                                                                 "thumbs": "up"}).encode(), caller="ip:203.0.113.7",
                   endpoints=known, blobs=blob_store, clock=clock)
            statuses.append(201)
        except FeedbackRejected as refused:
            statuses.append(refused.status)
    assert statuses == [201, 422, 201]  # rating the same answer twice is two opinions, as before
    assert [f.request_id for f in load_feedback(blob_store, "math_coding", endpoint)] == ["r-1", "r-1"]


def test_ab_report_blobs(blob_store: BlobStore, clock: ManualClock, unique: str) -> None:
    endpoint = f"ab-{unique}"
    service = FeedbackService(TokenBucket(rate_per_minute=6000, burst=500))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    requests = [ServedRequest(time=at, endpoint=endpoint, request_id=f"{name}-{i}", deployment=name, status=200,
                              latency_ms=50 + i)
                for name, count in (("blue", 70), ("green", 30)) for i in range(count)]
    for i in range(12):
        store(service, blob_store, clock, endpoint, request_id=f"blue-{i}", deployment="blue", rating=3 + i % 3)
        store(service, blob_store, clock, endpoint, request_id=f"green-{i}", deployment="green", rating=3 + i % 3)

    report, written = report_endpoint(blob_store, clock, "math_coding", endpoint, requests,
                                      traffic={"blue": 70, "green": 30})
    prefix = f"math_coding/deployments/{endpoint}/"
    assert written == {kind: f"{REPORTS}/{prefix}ab_report.{kind}" for kind in ("html", "csv", "json")}
    (comparison,) = report.comparisons
    assert comparison.rating_difference == pytest.approx(0.0)
    assert comparison.rating_significant is False  # the same ratings on both sides
    html = blob_store.read(REPORTS, prefix + "ab_report.html")[0].decode()
    assert "<script" not in html
    assert "not significant" in html
    rows = list(csv.DictReader(io.StringIO(blob_store.read(REPORTS, prefix + "ab_report.csv")[0].decode())))
    assert [(r["deployment"], r["requests"], r["ratings"], r["mean_rating"]) for r in rows] == [
        ("blue", "70", "12", "4.0"), ("green", "30", "12", "4.0")]
    assert json.loads(blob_store.read(REPORTS, prefix + "ab_report.json")[0])["baseline"] == "blue"
    assert blob_store.info(REPORTS, prefix + "ab_report.html").size > 0
