"""A use case in the reference template's format (tests/fixtures/flows/reference_math: an AzureOpenAIConnection with
a literal api_base and `${api_key}`, `deployment_name: gpt-35-turbo`, a pr overlay with an empty `evaluators:`)
runs on the local stack unchanged: settings point its connection at the local endpoint's Azure OpenAI route, and a
local overlay added beside it stacks on top of the pr overlay."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient
from azure.storage.blob import BlobServiceClient

from localstack.llm.scripted import ScriptedLLM, scripted_llm
from localstack.stack import LocalStack
from shared.adapters.azure_blob import AzureBlobStore
from shared.adapters.blob_experiment_store import BlobExperimentStore
from shared.adapters.servicebus import ServiceBusPublisher
from shared.events import Event, ExperimentRequested, PipelineTriggered
from tests.e2e.conftest import running_stack, wait_for
from tests.e2e.experiments import journal, line_outputs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "flows" / "reference_math"
USE_CASE = "reference_math"
# What a developer adds beside the copied use case: one line per work item, so the stacking shows in the plan.
LOCAL_OVERLAY = "execution:\n  lines_per_item: 1\n"


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with scripted_llm() as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[LocalStack]:
    flows = tmp_path_factory.mktemp("flows")
    shutil.copytree(REFERENCE, flows / USE_CASE)
    (flows / USE_CASE / "experiment.local.yaml").write_text(LOCAL_OVERLAY, encoding="utf-8")
    # Settings only: the literal api_base is overridden, the `${api_key}` placeholder filled (running_stack).
    with running_stack(tmp_path_factory.mktemp("stack"), llm, GENAIOPS_FLOWS_DIR=str(flows),
                       AOAI_API_BASE=llm.azure_endpoint) as started:
        yield started


@pytest.fixture(scope="module")
def store(stack: LocalStack) -> BlobExperimentStore:
    return BlobExperimentStore(AzureBlobStore(BlobServiceClient.from_connection_string(
        stack.storage_connection_string)))


def publish(stack: LocalStack, event: Event) -> None:
    client = ServiceBusClient.from_connection_string(stack.servicebus_connection_string)
    publisher = ServiceBusPublisher(client, stack.settings()["EVENTS_QUEUE"])
    try:
        publisher.publish([event])
    finally:
        publisher.close()


def outcome(stack: LocalStack, correlation_id: str, wanted: str) -> tuple[Event, list[Event]]:
    found = wait_for(lambda: next((e for e in journal(stack, correlation_id)
                                   if e.type in (wanted, "experiment.failed", "gate.failed")), None),
                     timeout=240, interval=0.5, what=f"{wanted} of {correlation_id}")
    return found, journal(stack, correlation_id)


def test_the_pr_overlay_runs_on_the_azure_route_with_the_local_overlay_stacked(
        stack: LocalStack, llm: ScriptedLLM, store: BlobExperimentStore) -> None:
    build = f"ref-pr-{time.time_ns()}"
    publish(stack, PipelineTriggered.create({"pipeline": "pr", "run_id": build, "environment": "pr",
                                             "use_cases": [USE_CASE]}, correlation_id=build, source="e2e"))
    # What the pr pipeline waits for: the gate's verdict (no evaluator ran and no threshold is set, so it passes).
    verdict, events = outcome(stack, build, "gate.passed")
    assert verdict.type == "gate.passed", verdict.payload
    [completed] = [e for e in events if e.type == "experiment.completed"]
    # The pr overlay's dataset, every line answered, no evaluation (its `evaluators:` is empty).
    [run] = completed.payload.runs
    assert (run.dataset, run.status, run.lines, run.failed_lines, run.metrics) == ("math_coding_pr", "completed",
                                                                                   3, 0, {})
    [evaluated] = [e for e in events if e.type == "evaluation.completed"]
    assert evaluated.payload.runs[0].metrics == {}
    result = store.result(USE_CASE, completed.payload.experiment_id)
    answers = {line: outputs["answer"] for (_, _, line), outputs in line_outputs(result).items()}
    assert answers == {0: "42", 1: "99", 2: "15"}
    # experiment.local.yaml stacked on experiment.pr.yaml: one work item per line.
    progress = [e.payload for e in events if e.type == "experiment.progressed" and e.payload.stage == "standard"]
    assert {p.items_total for p in progress} == {3}
    # The AzureOpenAIConnection reached the local endpoint on the Azure route, with its key.
    assert llm.azure_calls == {("gpt-35-turbo", "2023-07-01-preview")}
    assert "api-key" in llm.credentials


def test_the_base_experiment_evaluates_with_the_expected_accuracy(stack: LocalStack) -> None:
    requested = ExperimentRequested.create({"use_case": USE_CASE, "environment": "dev"},
                                           correlation_id=f"ref-dev-{time.time_ns()}", source="e2e")
    publish(stack, requested)
    evaluated, _ = outcome(stack, requested.correlation_id, "evaluation.completed")
    assert evaluated.type == "evaluation.completed", evaluated.payload
    [run] = evaluated.payload.runs
    assert (run.dataset, run.lines, run.failed_lines) == ("math_coding_training", 6, 0)
    assert run.metrics == {"accuracy": 1.0}
