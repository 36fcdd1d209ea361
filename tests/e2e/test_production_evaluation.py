"""Post-production evaluation on the whole local stack: users' traffic through the A/B router lands in the
production log; the timer asks for an evaluation when the use case's `monitoring.evaluation` schedule fires; the
bus handler runs the shipped LLM judge (flows/math_coding/flows/judge, on the scripted LLM) over the sampled new
lines and publishes production.evaluated with the metrics per deployment — and production.degraded for the version
that answers large sums wrong. Every line is judged once, whatever the number of firings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from localstack.host.keys import read_host_keys
from localstack.llm.scripted import ScriptedLLM
from localstack.stack import LocalStack
from shared.adapters.azure_blob import AzureBlobStore
from shared.audit import EventJournal
from shared.blob_layout import REPORTS
from shared.events import Event
from tests.e2e.conftest import running_stack, wait_for
from tests.e2e.production import ask_the_router, deploy_two_versions, journaled, monitored_copy, router_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(500)]
ROOT = Path(__file__).resolve().parents[2]
USE_CASE = "judged_math"
MONITORING = """
deployment:
  traffic: {new: 50, current: 50}
monitoring:
  schedule: "0 0 0 1 1 *"
  evaluation:
    schedule: "*/4 * * * * *"
    sample_rate: 1.0
    max_lines: 100
    lookback_minutes: 30
    min_lines: 5
    evaluators:
    - name: judge
      flow: flows/judge
      mappings:
        question: ${data.question}
        answer: ${run.outputs.answer}
    thresholds:
    - {metric: judge.score, min: 4.0}
"""
# The second version answers a million or more one too high: no smoke-test input has such an answer.
WRONG_STEP = """
    if value.lstrip("-").isdigit() and int(value) >= 1_000_000:
        return str(int(value) + 1)
    return value[:-2] if value.endswith(".0") else value
"""


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return monitored_copy(tmp_path_factory.mktemp("flows"), USE_CASE, MONITORING)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, grader: ScriptedLLM, flows: Path) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("judging"), grader, GENAIOPS_FLOWS_DIR=str(flows),
                       MONITORING_SCHEDULE="*/1 * * * * *", LOCAL_ROUTER_SEED="20261202") as started:
        yield started


def production_events(blobs: AzureBlobStore, event_type: str) -> list[Event]:
    return journaled(blobs, f"production-eval-{USE_CASE}-", event_type)


def test_traffic_is_judged_per_deployment_once_by_the_scheduled_evaluation(stack: LocalStack, flows: Path) -> None:
    storage = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    blobs, journal = AzureBlobStore(storage), EventJournal(AzureBlobStore(storage))
    first, second = deploy_two_versions(stack, storage, journal, flows, USE_CASE, WRONG_STEP, run="-wrong")
    good, wrong, endpoint = first.payload.deployment, second.payload.deployment, second.payload.endpoint

    router = router_url(blobs, USE_CASE, endpoint)
    answers = ask_the_router(router, 40)
    assert all(answer.ok for answer in answers)
    served = {answer.headers["x-request-id"]: answer.headers["x-served-by"] for answer in answers}
    assert set(served.values()) == {good, wrong}

    # The scheduled runs judge every request once (the first may have looked while the traffic was coming).
    def judged_lines() -> dict[str, str]:
        lines = {}
        for event in production_events(blobs, "production.evaluated"):
            stored = json.loads(blobs.read(REPORTS, event.payload.report_uri.removeprefix("reports/")
                                           .replace("summary.html", "evaluation.json"))[0])
            for line in stored["lines"]:
                assert line["request_id"] not in lines, f"{line['request_id']} judged twice"
                lines[line["request_id"]] = line["deployment"]
        return lines if set(served) <= set(lines) else {}

    judged = wait_for(judged_lines, timeout=120, interval=1, what="every request judged")
    assert {rid: judged[rid] for rid in served} == served  # smoke-test requests are not users' traffic

    evaluated = production_events(blobs, "production.evaluated")
    scores: dict[str, list[float]] = {}
    for event in evaluated:
        for result in event.payload.deployments:
            scores.setdefault(result.deployment, []).append(result.metrics["judge.score"])
    assert set(scores[good]) == {5.0}  # the judge grades every right answer 5
    assert min(scores[wrong]) < 4.0  # the wrong half of the large answers pulls it down
    degraded = list(production_events(blobs, "production.degraded"))
    assert degraded
    assert {event.payload.deployment for event in degraded} == {wrong}
    assert degraded[0].payload.breaches[0].startswith("judge.score ")
    report = blobs.read(REPORTS, evaluated[-1].payload.report_uri.removeprefix("reports/"))[0].decode()
    assert "Worst lines" in report

    # The A/B report compares the deployments on the judge's scores too, with the ratings' test.
    key = read_host_keys(stack.storage_connection_string)["default"]
    ab = requests.get(f"{stack.base_url}/api/ab-report/{USE_CASE}/{endpoint}", params={"format": "json"},
                      headers={"x-functions-key": key}, timeout=30)
    assert ab.status_code == 200, ab.text
    assert ab.json()["judge_metric"] == "judge.score"
    stats = {d["deployment"]: d for d in ab.json()["deployments"]}
    assert stats[good]["judged"] + stats[wrong]["judged"] == len(served)
    assert stats[good]["mean_judge"] == 5.0
    assert stats[wrong]["mean_judge"] < 4.0
    [comparison] = ab.json()["comparisons"]
    assert comparison["judge_p"] is not None
