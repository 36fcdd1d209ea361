"""Production monitoring on the whole local stack: traffic through the A/B router lands in the production log in
Azurite; a second version that fails on a share of inputs breaks the use case's `monitoring:` thresholds; the timer
publishes deployment.degraded with the evidence, and auto_rollback moves its traffic back to the first version
through deployment.traffic_requested — once, however often the timer ticks."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from localstack.llm.scripted import ScriptedLLM
from localstack.stack import LocalStack
from shared.adapters.azure_blob import AzureBlobStore
from shared.audit import EventJournal
from shared.blob_layout import PRODUCTION
from shared.events import Event
from shared.monitoring.production_log import parse_lines
from tests.e2e.conftest import running_stack, wait_for
from tests.e2e.production import ask_the_router, deploy_two_versions, journaled, monitored_copy, router_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(500)]
ROOT = Path(__file__).resolve().parents[2]
USE_CASE = "monitored_math"
MONITORING = """
deployment:
  traffic: {new: 50, current: 50}
monitoring:
  schedule: "*/3 * * * * *"
  window_minutes: 5
  min_requests: 10
  max_error_rate: 0.2
  auto_rollback: true
  mask_fields: [reasoning]
"""
# The second version's answer step fails on answers of a million or more: none of the smoke test's inputs (the
# sample request and dataset rows) has one, half of the users' questions below do.
BROKEN_STEP = """
    if value.lstrip("-").isdigit() and int(value) >= 1_000_000:
        raise ValueError(f"cannot handle the large answer {value}")
    return value[:-2] if value.endswith(".0") else value
"""


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return monitored_copy(tmp_path_factory.mktemp("flows"), USE_CASE, MONITORING)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM, flows: Path) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("monitoring"), llm, GENAIOPS_FLOWS_DIR=str(flows),
                       MONITORING_SCHEDULE="*/1 * * * * *", LOCAL_ROUTER_SEED="20261202") as started:
        yield started


def degraded_events(blobs: AzureBlobStore) -> list[Event]:
    return journaled(blobs, f"monitor-{USE_CASE}-", "deployment.degraded")


def test_a_failing_version_is_reported_degraded_and_rolled_back(stack: LocalStack, flows: Path) -> None:
    storage = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    blobs, journal = AzureBlobStore(storage), EventJournal(AzureBlobStore(storage))
    first, second = deploy_two_versions(stack, storage, journal, flows, USE_CASE, BROKEN_STEP, run="-broken")
    good, bad, endpoint = first.payload.deployment, second.payload.deployment, second.payload.endpoint
    assert second.payload.traffic == {good: 50, bad: 50}

    # Users' traffic through the router: the second version fails on the large answers.
    router = router_url(blobs, USE_CASE, endpoint)
    answers = ask_the_router(router, 60)
    outcomes = Counter((a.headers["x-served-by"], a.ok) for a in answers)  # a flow's error: 4xx from its server
    assert min(outcomes[(good, True)], outcomes[(bad, True)], outcomes[(bad, False)]) > 0, outcomes
    assert outcomes[(good, False)] == 0, outcomes

    # Every request is in the production log, with what was asked and answered.
    def logged() -> list:
        names = [info.name for info in blobs.list(PRODUCTION, f"{USE_CASE}/{endpoint}/")]
        lines = [line for name in names for line in parse_lines(blobs.read(PRODUCTION, name)[0]) if not line.pinned]
        return lines if len(lines) >= len(answers) else []

    lines = {line.request_id: line for line in wait_for(logged, timeout=30, what="the production log")}
    for answer in answers:
        line = lines[answer.headers["x-request-id"]]
        assert (line.deployment, line.status) == (answer.headers["x-served-by"], answer.status_code)
        assert line.inputs["question"].startswith("What is ")
        assert line.latency_ms > 0
        if answer.ok:  # the answer as given, its reasoning masked as the monitoring: block asks
            assert line.outputs == {"answer": answer.json()["answer"], "reasoning": "***"}

    # The monitor reports the broken version with its evidence, and rolls it back.
    [degraded] = wait_for(lambda: degraded_events(blobs), timeout=60, what="deployment.degraded")
    payload = degraded.payload
    assert (payload.deployment, payload.endpoint, payload.rollback) == (bad, endpoint, "requested")
    assert payload.breaches[0].startswith("error rate ")
    # The monitor may have looked while the traffic was still coming: at least min_requests of it.
    assert 10 <= payload.window.requests <= outcomes[(bad, True)] + outcomes[(bad, False)]
    assert payload.window.errors <= outcomes[(bad, False)]
    assert payload.window.error_rate == payload.window.errors / payload.window.requests > 0.2
    assert payload.traffic == {good: 50, bad: 50}
    changed = wait_for(lambda: next((e for e in journal.events_for(degraded.correlation_id)
                                     if e.type == "deployment.traffic_changed"), None), timeout=60,
                       what="deployment.traffic_changed")
    requested = next(e for e in journal.events_for(degraded.correlation_id)
                     if e.type == "deployment.traffic_requested")
    assert (requested.causation_id, requested.payload.action) == (degraded.id, "retire")
    assert changed.payload.traffic == {good: 100, bad: 0}
    assert requests.get(f"{router}/traffic", timeout=10).json() == {good: 100, bad: 0}

    # People are told on the notification channel: without APPROVAL_WEBHOOK_URL, a log line.
    title = f"Degraded: {USE_CASE} {bad} on {endpoint} (local)"
    wait_for(lambda: title in stack.log_file("host").read_text(), timeout=30, what="the notification")

    # The timer keeps ticking every second: nothing more is reported, nobody is told twice.
    wait_for(lambda: blobs.read("system", f"monitoring/{USE_CASE}.json"), what="the monitor's state")
    time.sleep(8)
    assert [event.id for event in degraded_events(blobs)] == [degraded.id]
    assert stack.log_file("host").read_text().count(title) == 1
