"""`genaiops wait` over a journal in Azurite: progress lines while an experiment runs, the outcome's exit code."""

from __future__ import annotations

from datetime import timedelta

import pytest

from genaiops.follow import EXIT_DEAD_LETTERED
from shared.audit import EventJournal
from shared.dead_letters import DeadLetterStore
from shared.events import (
    EvaluationCompleted,
    ExperimentItemRequested,
    ExperimentProgressed,
    ExperimentRequested,
    GatePassed,
    PipelineTriggered,
)
from shared.ports import BlobStore
from tests.fakes.memory import ManualClock
from tests.following import waited

pytestmark = pytest.mark.azurite


def test_wait_prints_progress_and_hides_the_work_items(blob_store: BlobStore, unique: str) -> None:
    journal = EventJournal(blob_store)
    requested = ExperimentRequested.create({"use_case": "math_coding"}, correlation_id=unique)
    item = requested.follow_up(ExperimentItemRequested, {"use_case": "math_coding", "experiment_id": "e1",
                                                         "stage": "standard", "item_id": "r.000000"}, key="a")
    progress = {"use_case": "math_coding", "experiment_id": "e1", "stage": "standard", "items_total": 4,
                "lines_total": 44}
    halfway = requested.follow_up(ExperimentProgressed, {**progress, "items_done": 2, "lines_done": 24}, key="1")
    done = requested.follow_up(EvaluationCompleted, {"use_case": "math_coding", "experiment_id": "e1", "runs": [],
                                                     "report_uri": "reports/math_coding/e1/summary.html"})
    for event in (requested, item, halfway, done):
        journal.record(event)

    code, printed = waited(journal, unique, {"evaluation.completed"}, {"experiment.failed"}, timeout=10)
    assert code == 0
    lines = printed.splitlines()
    assert any("experiment.progressed" in line and "math_coding standard: 24/44 lines (2/4 work items)" in line
               for line in lines)
    assert not any("experiment.item_requested" in line for line in lines)
    assert "evaluation.completed" in lines[-1]


def test_a_dead_letter_ends_the_wait_unless_a_later_trigger_started_the_run_again(
        blob_store: BlobStore, clock: ManualClock, unique: str) -> None:
    journal = EventJournal(blob_store)
    trigger = PipelineTriggered.create({"pipeline": "pr", "run_id": "1", "environment": "pr",
                                        "use_cases": ["math_coding"]}, correlation_id=unique)
    clock.current = trigger.occurred_at + timedelta(seconds=1)
    letter = DeadLetterStore(blob_store, clock).record(
        queue="q", message_id=f"m-{unique}", body=b'{"type": "experiment.requestd"}', reason="UnknownEventType",
        description="type 'experiment.requestd' is not in the event catalogue", sequence_number=3)
    journal.record(trigger)
    journal.record_dead_letter(unique, letter)

    code, printed = waited(journal, unique, {"gate.passed"}, {"gate.failed"})
    assert code == EXIT_DEAD_LETTERED
    assert f"dead-lettered message m-{unique}: UnknownEventType: type 'experiment.requestd'" in printed

    # The pipeline fixed its typo and ran the stage again under the same correlation id: the old letter is history.
    rerun = PipelineTriggered.create(trigger.payload.model_dump(), correlation_id=unique)
    passed = rerun.follow_up(GatePassed, {
        "use_case": "math_coding", "experiment_id": "e1", "environment": "pr", "primary_metric": "accuracy",
        "best_variant": {}, "best_value": 1.0, "checks": [], "report_uri": "reports/math_coding/e1/summary.html"})
    journal.record(rerun.model_copy(update={"occurred_at": clock.current + timedelta(seconds=1)}))
    journal.record(passed.model_copy(update={"occurred_at": clock.current + timedelta(seconds=2)}))
    assert [type(entry).__name__ for entry in journal.entries_for(unique)] == [
        "PipelineTriggered", "DeadLetterNote", "PipelineTriggered", "GatePassed"]
    assert waited(journal, unique, {"gate.passed"}, {"gate.failed"})[0] == 0
