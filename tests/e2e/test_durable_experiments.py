"""Experiments as work items on the real local stack: a host killed mid-experiment resumes without re-running a
finished line; two use cases at once in one host; two hosts sharing one experiment; the bus stays responsive.

Its own stack (a host gets killed here) and a scripted LLM that is slow enough to be caught mid-experiment and
knows both use cases' answers, so every metric is known."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.storage.blob import BlobServiceClient

from localstack.llm.scripted import ScriptedLLM, scripted_llm
from localstack.stack import LocalStack, free_port
from shared.adapters.azure_blob import AzureBlobStore
from shared.adapters.blob_experiment_store import BlobExperimentStore
from shared.blob_layout import SYSTEM
from tests.e2e.conftest import running_stack, wait_for
from tests.e2e.experiments import (
    assert_ended_once_and_whole,
    experiment_id,
    journal,
    knowing_responder,
    line_outputs,
    outcome,
    request,
    standard_checkpoints,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
LLM_DELAY = 0.25  # seconds per LLM call: an experiment lasts long enough to be interrupted


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with scripted_llm(knowing_responder(), delay_seconds=LLM_DELAY) as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("durable"), llm) as started:
        yield started


@pytest.fixture(scope="module")
def store(stack: LocalStack) -> BlobExperimentStore:
    return BlobExperimentStore(AzureBlobStore(BlobServiceClient.from_connection_string(
        stack.storage_connection_string)))


def test_a_killed_host_resumes_and_never_reruns_a_finished_line(stack: LocalStack, llm: ScriptedLLM,
                                                                 store: BlobExperimentStore) -> None:
    [requested] = request(stack, "math_coding")
    experiment = experiment_id(stack, requested)
    plan = store.plan("math_coding", experiment)
    total = plan.standard.lines
    wait_for(lambda: standard_checkpoints(store, "math_coding", experiment) >= total // 4, timeout=120,
             interval=0.1, what="a quarter of the lines")
    stack.kill("host")
    # Count once the dust settles: a request or checkpoint already on the wire at the kill lands a moment later.
    time.sleep(3)
    calls_before, finished_before = llm.calls, standard_checkpoints(store, "math_coding", experiment)
    assert 0 < finished_before < total
    stack.start_host()

    final = outcome(stack, requested)
    assert final.type == "evaluation.completed", final.payload
    # Every line without a checkpoint at the kill was sent once more (those in flight included); not one more.
    assert llm.calls - calls_before == total - finished_before
    assert_ended_once_and_whole(stack, store, requested, experiment)


def test_two_use_cases_at_once_in_one_host_keep_their_results_and_the_cwd(
        stack: LocalStack, store: BlobExperimentStore) -> None:
    host_pid = stack.status()["host"]
    assert host_pid is not None
    cwd_before = os.readlink(f"/proc/{host_pid}/cwd")
    math, ner = request(stack, "math_coding", "named_entity_recognition")
    # While both run, a malformed message is dead-lettered within seconds, not after the experiments.
    with ServiceBusClient.from_connection_string(stack.servicebus_connection_string) as client, \
            client.get_queue_sender(stack.settings()["EVENTS_QUEUE"]) as sender:
        sender.send_messages(ServiceBusMessage(b"{not json", message_id=f"malformed-{time.time_ns()}"))
    blobs = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    wait_for(lambda: any(True for _ in blobs.get_container_client(SYSTEM).list_blobs(
        name_starts_with="deadletter/")), timeout=30, what="the dead-letter record")
    assert not [e for e in journal(stack, ner.correlation_id) if e.type == "evaluation.completed"]

    assert outcome(stack, math).type == "evaluation.completed"
    ner_outcome = outcome(stack, ner)
    assert ner_outcome.type == "evaluation.completed", ner_outcome.payload
    metrics = {(run.variant["extract"], run.variant["cleanse"], run.dataset): run.metrics
               for run in ner_outcome.payload.runs}
    for dataset in ("ner_train", "ner_test"):
        assert metrics[("variant_0", "variant_0", dataset)]["exact_match_rate"] == 1.0
        assert metrics[("variant_1", "variant_0", dataset)]["exact_match_rate"] == 1.0  # cleanse strips the "."
        assert metrics[("variant_1", "variant_1", dataset)]["exact_match_rate"] == 0.0
    assert all(run.metrics["accuracy"] == 1.0 for run in outcome(stack, math).payload.runs)
    cwd_after = os.readlink(f"/proc/{host_pid}/cwd")
    assert cwd_after == cwd_before
    assert Path(cwd_after).is_dir()


def test_two_hosts_share_one_experiment_with_the_same_results(stack: LocalStack,
                                                              store: BlobExperimentStore) -> None:
    [alone] = request(stack, "math_coding")
    assert outcome(stack, alone).type == "evaluation.completed"
    stack.start_host("host-2", free_port())
    try:
        [shared] = request(stack, "math_coding")
        assert outcome(stack, shared).type == "evaluation.completed"
    finally:
        stack.stop("host-2")
    shared_id = experiment_id(stack, shared)
    workers = {item.worker for item in store.item_outcomes("math_coding", shared_id, "standard")}
    assert len(workers) == 2, workers
    one = store.result("math_coding", experiment_id(stack, alone))
    two = store.result("math_coding", shared_id)
    assert line_outputs(one) == line_outputs(two)
    assert ({run.label: run.metrics for run in one.evaluation_runs}
            == {run.label: run.metrics for run in two.evaluation_runs})
