"""What the experiment e2e modules share: a scripted LLM that knows both reference use cases' answers, and
requesting an experiment, reading its journal, store and outcome on a running local stack."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusClient
from azure.storage.blob import BlobServiceClient

from localstack.llm.scripted import Messages, arithmetic_responder
from localstack.stack import LocalStack
from shared.adapters.azure_blob import AzureBlobStore
from shared.adapters.blob_experiment_store import BlobExperimentStore
from shared.adapters.servicebus import ServiceBusPublisher
from shared.audit import EventJournal
from shared.events import Event, ExperimentRequested
from shared.experiments.results import ExperimentResult
from tests.e2e.conftest import wait_for

NER_DATA = Path(__file__).resolve().parents[2] / "flows" / "named_entity_recognition" / "data"


def knowing_responder() -> Any:
    """Arithmetic for math_coding; the labelled entities for NER (the few-shot prompt adds a full stop)."""
    truth: dict[str, str] = {}
    for dataset in NER_DATA.glob("*.jsonl"):
        truth |= {row["text"]: row["results"] for row in map(json.loads, dataset.read_text().splitlines())}

    def respond(messages: Messages) -> str:
        last = str(messages[-1].get("content", ""))
        if "Text:" in last:
            return truth[last.split("Text:", 1)[1].strip()] + ("." if len(messages) > 2 else "")
        return arithmetic_responder(messages)

    return respond


def request(stack: LocalStack, *use_cases: str) -> list[ExperimentRequested]:
    events = [ExperimentRequested.create({"use_case": use_case, "environment": "local"},
                                         correlation_id=f"durable-{use_case}-{time.time_ns()}", source="e2e")
              for use_case in use_cases]
    client = ServiceBusClient.from_connection_string(stack.servicebus_connection_string)
    publisher = ServiceBusPublisher(client, stack.settings()["EVENTS_QUEUE"])
    try:
        publisher.publish(events)  # one batch: they arrive at the same moment
    finally:
        publisher.close()
    return events


def journal(stack: LocalStack, correlation_id: str) -> list[Event]:
    blobs = AzureBlobStore(BlobServiceClient.from_connection_string(stack.storage_connection_string))
    return EventJournal(blobs).events_for(correlation_id)


def outcome(stack: LocalStack, event: ExperimentRequested, timeout: float = 300) -> Event:
    return wait_for(lambda: next((e for e in journal(stack, event.correlation_id)
                                  if e.type in ("evaluation.completed", "experiment.failed")), None),
                    timeout=timeout, interval=0.5, what=f"the outcome of {event.payload.use_case}")


def experiment_id(stack: LocalStack, event: ExperimentRequested) -> str:
    planned = wait_for(lambda: next((e for e in journal(stack, event.correlation_id)
                                     if e.type == "experiment.progressed"), None), what="the plan")
    return str(planned.payload.experiment_id)


def standard_checkpoints(store: BlobExperimentStore, use_case: str, experiment: str) -> int:
    plan = store.plan(use_case, experiment)
    return sum(len(store.lines(use_case, experiment, run.run_id)) for run in plan.standard.runs)


def line_outputs(result: ExperimentResult) -> dict[tuple[str, str, int], Any]:
    return {(run.label, run.dataset, line.line_number): line.outputs
            for run in result.standard_runs for line in run.lines}


def assert_ended_once_and_whole(stack: LocalStack, store: BlobExperimentStore, requested: ExperimentRequested,
                                experiment: str) -> None:
    """After a disruption: one experiment.completed and one evaluation.completed, every planned line has a
    result, and every evaluation scored the scripted (always right) answers as right."""
    events = journal(stack, requested.correlation_id)
    for outcome_type in ("experiment.completed", "evaluation.completed"):
        assert len({e.id for e in events if e.type == outcome_type}) == 1, outcome_type
    plan = store.plan(requested.payload.use_case, experiment)
    result = store.result(requested.payload.use_case, experiment)
    assert [len(run.lines) for run in result.standard_runs] == [len(run.line_numbers) for run in plan.standard.runs]
    assert all(run.metrics["accuracy"] == 1.0 for run in result.evaluation_runs)
