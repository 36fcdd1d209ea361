"""Post-production evaluation against real storage (Azurite), the real promptflow runner and the shipped LLM judge
(flows/math_coding/flows/judge) talking to the scripted LLM: the timer asks once per firing, the handler judges
the sampled lines per deployment, writes the window's metrics and report, publishes production.evaluated and
production.degraded; a redelivery judges nothing again, and the next firing judges only the new lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from localstack.llm.scripted import ScriptedLLM, grading_responder, scripted_llm
from localstack.serving.production_writer import BlobProductionWriter
from localstack.stack import LocalStack
from shared.adapters.promptflow_runner import PromptflowRunner
from shared.blob_layout import FEEDBACK, REPORTS
from shared.feedback.submissions import FeedbackRecord
from shared.monitoring.production_log import ProductionLine
from shared.monitoring.production_report import judge_scores
from shared.ports import BlobStore
from shared.services.monitoring import production_log_for
from shared.services.production_evaluation import evaluate_production, request_evaluations
from tests.bus_driver import QueueBus
from tests.conftest import ManualClock
from tests.e2e.production import monitored_copy

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(300)]
OVERLAY = """
deployment:
  endpoint_name: {endpoint}
monitoring:
  mask_fields: [reasoning]
  evaluation:
    schedule: "0 */10 * * * *"
    sample_rate: 1.0
    max_lines: 100
    lookback_minutes: 30
    min_lines: 3
    evaluators:
    - name: judge
      flow: flows/judge
      mappings: {{question: "${{data.question}}", answer: "${{run.outputs.answer}}"}}
    thresholds:
    - {{metric: judge.score, min: 3.0}}
"""


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with scripted_llm(grading_responder) as server:
        yield server


@pytest.fixture
def flows(tmp_path: Path, unique: str) -> Path:
    return monitored_copy(tmp_path / "flows", "judged", OVERLAY.format(endpoint=f"ep-{unique}"))


def served(endpoint: str, request_id: str, deployment: str, at: datetime, answer: str, *, status: int = 200,
           pinned: bool = False) -> ProductionLine:
    a, b = request_id.rsplit("-", 1)[-1], 7
    return ProductionLine(time=at, use_case="judged", endpoint=endpoint, request_id=request_id,
                          deployment=deployment, pinned=pinned, status=status, latency_ms=20.0,
                          inputs={"question": f"What is {a} * {b}?"},
                          outputs={"answer": answer, "reasoning": "..."} if status == 200 else None)


def test_sampled_lines_are_judged_once_per_deployment_with_metrics_report_and_events(
        storage_stack: LocalStack, blob_store: BlobStore, flows: Path, llm: ScriptedLLM, unique: str) -> None:
    endpoint, fired = f"ep-{unique}", datetime(2026, 5, 6, 7, 10, tzinfo=UTC)
    clock = ManualClock(fired + timedelta(seconds=20))
    writer = BlobProductionWriter(BlobServiceClient.from_connection_string(storage_stack.storage_connection_string))
    for i in range(1, 7):  # blue answers right, green wrong; pinned and failed requests are not judged
        at = fired - timedelta(minutes=i)
        writer.record(served(endpoint, f"blue-{i}", "blue", at, str(i * 7)))
        writer.record(served(endpoint, f"green-{i}", "green", at, str(i * 7 + 1)))
    writer.record(served(endpoint, "smoke-1", "green", fired - timedelta(minutes=1), "0", pinned=True))
    writer.record(served(endpoint, "broken-1", "green", fired - timedelta(minutes=1), "", status=500))
    writer.flush()
    blob_store.write(FEEDBACK, f"judged/{endpoint}/green-1.json", FeedbackRecord(
        request_id="green-1", deployment="green", rating=1, id="f1", use_case="judged", endpoint=endpoint,
        received_at=fired, caller="h").model_dump_json().encode())
    bus, env = QueueBus(), {"AOAI_BASE_URL": llm.base_url, "AOAI_API_KEY": "not-a-real-key"}

    # The timer asks once per firing, however often it ticks.
    [request] = request_evaluations(blob_store, bus, clock, flows, "local")
    assert (request.payload.use_case, request.payload.window_end) == ("judged", fired)
    assert request_evaluations(blob_store, bus, clock, flows, "local") == []

    def judge(event: object) -> list:
        return evaluate_production(event, blob_store, clock, PromptflowRunner(), env, flows,  # type: ignore[arg-type]
                                   production_log_for(blob_store, None))

    llm.reset_stats()
    evaluated, degraded = judge(request)
    assert llm.calls == 12
    metrics = {d.deployment: (d.lines, d.failed_lines, d.metrics) for d in evaluated.payload.deployments}
    assert metrics == {"blue": (6, 0, {"judge.score": 5.0}), "green": (6, 0, {"judge.score": 1.0})}
    assert (evaluated.type, evaluated.payload.left_over, evaluated.causation_id) == ("production.evaluated", 0,
                                                                                       request.id)
    assert (degraded.type, degraded.payload.deployment) == ("production.degraded", "green")
    assert degraded.payload.breaches == ["judge.score 1 < 3"]
    report = evaluated.payload.report_uri
    assert report == f"reports/judged/production/{fired:%Y%m%dT%H%M%SZ}/summary.html"
    html = blob_store.read(REPORTS, report.removeprefix("reports/"))[0].decode()
    assert "judge.score 1 &lt; 3" in html
    assert "<script" not in html  # one self-contained page
    assert html.index("green-1") < html.index("blue-1")  # the worst lines first, with the user's rating beside
    stored = json.loads(blob_store.read(REPORTS, report.removeprefix("reports/").replace("summary.html",
                                                                                        "evaluation.json"))[0])
    assert {line["request_id"] for line in stored["lines"]} == {f"{d}-{i}" for d in ("blue", "green")
                                                                 for i in range(1, 7)}
    assert {line["outputs"]["reasoning"] for line in stored["lines"]} == {"***"}  # masked as the block asks

    # Redelivered: nothing is judged again. The next firing judges only what is new.
    assert judge(request) == []
    writer.record(served(endpoint, "blue-9", "blue", fired + timedelta(minutes=3), "63"))
    writer.flush()
    clock.advance(minutes=10)
    [later] = request_evaluations(blob_store, bus, clock, flows, "local")
    llm.reset_stats()
    [evaluated_later] = judge(later)
    assert llm.calls == 1
    assert [(d.deployment, d.lines) for d in evaluated_later.payload.deployments] == [("blue", 1)]

    # The A/B report's view: every judged line's score per deployment, across windows.
    assert judge_scores(blob_store, "judged", endpoint) == ("judge.score", {"blue": [5.0] * 7, "green": [1.0] * 6})
    assert judge_scores(blob_store, "judged", endpoint, since=fired + timedelta(minutes=1)) == (
        "judge.score", {"blue": [5.0]})  # windows older than `since` are not read
    trend = blob_store.read(REPORTS, evaluated_later.payload.report_uri.removeprefix("reports/"))[0].decode()
    assert fired.isoformat() in trend  # the later report's trend has the earlier window
