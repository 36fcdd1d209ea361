"""The candidate export the CLI and POST /api/candidates/{use_case} share (shared/services/candidate_export.py):
the body's filters, the statuses an HTTP caller gets, what is written, and the Idempotency-Key — over in-memory
blobs, the math_coding use case's own configuration and a production log holding the lines the test gives."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shared.blob_layout import CANDIDATES
from shared.deployment.port import DeploymentConfig
from shared.feedback.submissions import Feedback, FeedbackRecord, store_feedback
from shared.idempotency import IdempotencyStore
from shared.monitoring.candidates import CandidateFilters
from shared.monitoring.production_log import ProductionLine, ProductionLog
from shared.services.candidate_export import CandidateExport, ExportRejected, export_requested
from shared.settings import Settings
from tests.fakes.bus import ROOT
from tests.fakes.memory import ManualClock, MemoryBlobStore
from tests.feedback_endpoints import Directory

ENDPOINT = "math-coding-local"  # math_coding's endpoint on the local target


class Served:
    """The ProductionLog port over the lines a test gives (the blob and Azure ML adapters are tested on Azurite)."""

    def __init__(self, lines: list[ProductionLine]) -> None:
        self.served = lines

    def lines(self, use_case: str, endpoint: str, start: datetime, end: datetime) -> list[ProductionLine]:
        return sorted((line for line in self.served
                       if (line.use_case, line.endpoint) == (use_case, endpoint) and start <= line.time <= end),
                      key=lambda line: line.time)  # oldest first, as the port promises


class Exporter:
    def __init__(self, tmp_path: Path, clock: ManualClock) -> None:
        shutil.copytree(ROOT / "flows" / "math_coding", tmp_path / "flows" / "math_coding")
        flows = tmp_path / "flows"
        self.settings = Settings.model_validate({"GENAIOPS_ENV": "local", "GENAIOPS_FLOWS_DIR": str(flows)})
        self.clock, self.blobs = clock, MemoryBlobStore()
        self.log: ProductionLog | None = Served([])

    def serve(self, request_id: str, ago: timedelta, rating: int | None = None, thumbs: str | None = None) -> None:
        """A line served `ago` before now by deployment blue, and its rating (if any) given then."""
        assert isinstance(self.log, Served)
        self.log.served.append(ProductionLine(
            time=self.clock.now() - ago, use_case="math_coding", endpoint=ENDPOINT, request_id=request_id,
            deployment="blue", status=200, inputs={"question": f"question {request_id}"},
            outputs={"answer": "41"}))
        if rating is None and thumbs is None:
            return
        body = {"request_id": request_id, "deployment": "blue", "rating": rating, "thumbs": thumbs}
        record = FeedbackRecord(**Feedback.model_validate({k: v for k, v in body.items() if v is not None})
                                .model_dump(), id=f"fb-{request_id}", use_case="math_coding", endpoint=ENDPOINT,
                                received_at=self.clock.now(), caller="c")
        store_feedback(record, Directory.of("math_coding", ENDPOINT, {"blue": 100}, live=False), self.blobs,
                       self.clock)

    def post(self, body: object = b"", key: str | None = None, use_case: str = "math_coding") -> CandidateExport:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return export_requested(use_case, data, key, blobs=self.blobs, idempotency=IdempotencyStore(self.blobs,
                                self.clock), settings=self.settings, now=self.clock.now(), log_for=self.log_for)

    def log_for(self, target: DeploymentConfig) -> ProductionLog | None:
        assert target.endpoint_name == ENDPOINT
        return self.log

    def rows(self, export: CandidateExport) -> list[dict]:
        assert export.blob is not None
        container, name = export.blob.split("/", 1)
        assert container == CANDIDATES
        return [json.loads(line) for line in self.blobs.text(CANDIDATES, name).splitlines()]


@pytest.fixture
def exporter(tmp_path: Path, clock: ManualClock) -> Exporter:
    return Exporter(tmp_path, clock)


def test_badly_rated_lines_of_the_look_back_are_written(exporter: Exporter) -> None:
    exporter.serve("good", timedelta(hours=1), rating=5)
    exporter.serve("bad", timedelta(hours=2), rating=2)
    exporter.serve("down", timedelta(days=2), thumbs="down")
    exporter.serve("unrated", timedelta(hours=3))
    exporter.serve("too-old", timedelta(days=8), rating=1)

    export = exporter.post()  # no body: the CLI's defaults, 7 days and ratings up to 2

    now = exporter.clock.now()
    assert export.model_dump() == {
        "use_case": "math_coding", "endpoint": ENDPOINT, "since": now - timedelta(days=7), "until": now,
        "max_rating": 2, "lines": 2, "replayed": False,
        "blob": f"{CANDIDATES}/math_coding/{ENDPOINT}-{now:%Y%m%dT%H%M%SZ}.jsonl"}
    rows = exporter.rows(export)
    assert [(row["question"], row["production"]["rating"], row["production"]["thumbs"]) for row in rows] == [
        ("question down", None, "down"), ("question bad", 2, None)]


def test_the_filters_narrow_the_export(exporter: Exporter) -> None:
    exporter.serve("three", timedelta(hours=1), rating=3)
    exporter.serve("one-old", timedelta(days=2), rating=1)
    export = exporter.post({"max_rating": 3, "days": 1})
    assert (export.lines, export.max_rating) == (1, 3)
    assert exporter.rows(export)[0]["production"]["request_id"] == "three"
    since = exporter.clock.now() - timedelta(days=3)
    assert exporter.post({"since": since.isoformat()}).lines == 1  # "one-old" (rated 1); "three" is above 2
    assert exporter.post({"since": (since - timedelta(days=60)).isoformat()}).since == \
        exporter.clock.now() - timedelta(days=30)  # no further back than production logs live


def test_nothing_matched_writes_nothing(exporter: Exporter) -> None:
    exporter.serve("good", timedelta(hours=1), rating=4)
    export = exporter.post({})
    assert (export.lines, export.blob) == (0, None)
    assert exporter.blobs.names(CANDIDATES) == []


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "the export's filters must be a JSON object: Expecting property name"),
    (b"[1, 2]", "the export's filters must be a JSON object"),
    (b"[" * 4000, "the export's filters must be a JSON object: maximum recursion depth exceeded"),
    ({"max_rating": 0}, "max_rating: Input should be greater than or equal to 1"),
    ({"max_rating": "bad"}, "max_rating: Input should be a valid integer"),
    ({"days": 0}, "days: Input should be greater than 0"),
    ({"days": 31}, "days: Input should be less than or equal to 30"),
    ({"since": "2026-01-01T00:00:00"}, "since: Input should have timezone info"),
    ({"days": 1, "since": "2025-12-01T00:00:00Z"}, "body: Value error, give days or since, not both"),
    ({"since": "2026-01-02T00:00:00Z"}, "since 2026-01-02T00:00:00+00:00 is not in the past"),
    ({"min_rating": 1}, "min_rating: Extra inputs are not permitted"),
])
def test_a_bad_body_is_400_with_the_reason(exporter: Exporter, body: object, reason: str) -> None:
    with pytest.raises(ExportRejected) as refused:
        exporter.post(body)
    assert refused.value.status == 400
    assert str(refused.value).startswith(reason)
    assert exporter.blobs.names(CANDIDATES) == []


def test_refusals_before_any_work(exporter: Exporter) -> None:
    for use_case in ("no_such_use_case", "..", "math_coding/../math_coding", ""):
        with pytest.raises(ExportRejected, match="no use case") as unknown:
            exporter.post(use_case=use_case)
        assert unknown.value.status == 404
    with pytest.raises(ExportRejected, match="limit is 4096") as large:
        exporter.post(b" " * 5000)
    assert large.value.status == 413
    with pytest.raises(ExportRejected, match="Idempotency-Key must be") as bad_key:
        exporter.post(key="a/b")
    assert bad_key.value.status == 400
    exporter.log = None  # a target without a production log (a container endpoint)
    with pytest.raises(ExportRejected, match="no production log") as unavailable:
        exporter.post()
    assert unavailable.value.status == 503


def test_a_retried_request_with_its_idempotency_key_exports_once(exporter: Exporter) -> None:
    exporter.serve("bad", timedelta(hours=1), rating=1)
    first = exporter.post({"max_rating": 1}, key="export-17")
    exporter.clock.advance(minutes=2)
    exporter.serve("worse", timedelta(minutes=1), rating=1)
    again = exporter.post({"max_rating": 1}, key="export-17")
    assert again == first.model_copy(update={"replayed": True})  # the first answer, though more lines match now
    assert first.blob is not None
    assert exporter.blobs.names(CANDIDATES) == [first.blob.removeprefix(f"{CANDIDATES}/")]  # written once
    with pytest.raises(ExportRejected, match="other filters") as other:
        exporter.post({"max_rating": 2}, key="export-17")
    assert other.value.status == 422
    fresh = exporter.post({"max_rating": 1})  # without a key: a new export up to now
    assert (fresh.lines, fresh.replayed) == (2, False)
    assert len(exporter.blobs.names(CANDIDATES)) == 2


def test_the_filters_default_as_the_cli_does() -> None:
    assert CandidateFilters().model_dump() == {"max_rating": 2, "days": 7, "since": None}
