"""Runs that cannot succeed end on the first delivery, visibly: through `Application.on_bus_message` on Azurite, a
permanent handler failure becomes its stage's failure event or a dead letter journaled under the run's correlation
id, and `genaiops wait` on that id ends at once with the reason instead of timing out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from genaiops.follow import EXIT_DEAD_LETTERED, EXIT_FAILED_EVENT
from shared.adapters.promptflow_runner import PromptflowRunner
from shared.application import Application
from shared.audit import DeadLetterNote
from shared.bootstrap import build_deployments
from shared.events import DeploymentRequested, Event, ExperimentRequested
from shared.events.codec import encode
from shared.ports import BlobStore
from shared.registry.blob_registry import BlobRegistry
from shared.settings import Settings
from tests.fakes.memory import ManualClock
from tests.following import waited

pytestmark = pytest.mark.azurite


class RecordingBus:
    def __init__(self) -> None:
        self.sent: list[Event] = []

    def publish(self, events: Sequence[Event]) -> None:
        self.sent.extend(events)


@pytest.fixture
def app(blob_store: BlobStore, clock: ManualClock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> tuple[Application, RecordingBus]:
    bus = RecordingBus()
    settings = Settings.model_validate({"GENAIOPS_ENV": "local", "GENAIOPS_WORK_DIR": str(tmp_path / "work")})
    application = Application(settings, blob_store, bus, clock, PromptflowRunner(), BlobRegistry(blob_store, clock),
                              build_deployments(settings, blob_store, clock))
    return application, bus


def deliver(application: Application, event: Event, **broker: object) -> str:
    application.clock.current = datetime.now(UTC)  # type: ignore[attr-defined] # journal names sort by time, events' by the wall clock
    return application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=1, properties={},
                                      **broker).status  # type: ignore[arg-type]


def test_a_mistyped_event_is_journaled_under_its_correlation_id(app: tuple[Application, RecordingBus],
                                                                unique: str) -> None:
    application, _ = app
    run = f"pipeline-{unique}"
    body = json.dumps({"type": "experiment.requestd", "correlation_id": run, "payload": {}}).encode()

    # The broker property when a publisher set it, else the envelope's field.
    for message_id, broker in ((f"a{unique}", run), (f"b{unique}", None)):
        outcome = application.on_bus_message(body, message_id=message_id, delivery_count=1, properties={},
                                             sequence_number=1, correlation_id=broker)
        assert outcome.status == "dead_lettered"

    letters = application.journal.entries_for(run)
    assert sorted((letter.reason, letter.message_id) for letter in letters) == [  # type: ignore[union-attr]
        ("UnknownEventType", f"a{unique}"), ("UnknownEventType", f"b{unique}")]  # same clock reading: either order
    code, printed = waited(application.journal, run, {"gate.passed"})
    assert code == EXIT_DEAD_LETTERED
    assert "UnknownEventType: type 'experiment.requestd' is not in the event catalogue" in printed


def test_a_deployment_that_cannot_start_rolls_back_on_the_first_delivery(app: tuple[Application, RecordingBus],
                                                                         unique: str) -> None:
    application, bus = app
    request = DeploymentRequested.create({"use_case": "math_coding", "flow_name": f"never-{unique}",
                                          "flow_version": "1", "environment": "local"}, correlation_id=f"r{unique}")

    assert deliver(application, request) == "handled"

    assert [event.type for event in bus.sent] == ["deployment.rolled_back"]
    assert bus.sent[0].payload.reason == \
        f"deployment failed: DeploymentRefused: flow never-{unique} version 1 is not registered"
    assert [event.type for event in application.journal.events_for(request.correlation_id)] == [
        "deployment.requested", "deployment.rolled_back"]
    assert waited(application.journal, request.correlation_id, {"deployment.verified"},
                  {"deployment.rolled_back"})[0] == EXIT_FAILED_EVENT
    assert deliver(application, request) == "replayed"  # a redelivery re-sends the outcome, it does not retry
    assert [event.id for event in bus.sent] == [bus.sent[0].id] * 2


def test_a_reused_id_with_another_payload_is_reported_and_not_run(app: tuple[Application, RecordingBus],
                                                                  unique: str) -> None:
    application, bus = app
    first = ExperimentRequested.create({"use_case": "no_such_use_case"}, correlation_id=f"c{unique}")
    assert deliver(application, first) == "handled"
    handled = list(bus.sent)
    other = first.model_copy(update={"payload": first.payload.model_copy(update={"use_case": "math_coding"})})

    assert deliver(application, other, sequence_number=99) == "dead_lettered"

    assert bus.sent == handled  # not run, nothing re-sent
    letter = application.dead_letters.get(application.settings.events_queue, first.id, 99)
    assert letter.reason == "IdempotencyPayloadMismatch"
    assert "on_experiment_requested" in letter.description
    assert letter.body["payload"]["use_case"] == "math_coding"
    assert isinstance(application.journal.entries_for(first.correlation_id)[-1], DeadLetterNote)
