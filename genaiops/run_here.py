"""`genaiops run`: one experiment on this machine, without a bus — the same entry point, handlers, experiment
store and reports as in the Function App (storage from the settings, Azurite locally), only the queue between
handlers lives in this process. It ends at the experiment's outcome (`evaluation.completed` or
`experiment.failed`); the gate, registration and deployment stay with the app."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from shared.bootstrap import build_application
from shared.events import Event, ExperimentRequested
from shared.events.codec import encode
from shared.events.envelope import new_event_id
from shared.observability import install_masking
from shared.settings import Settings

EXPERIMENT_EVENTS = frozenset({"experiment.requested", "experiment.item_requested", "experiment.stage_completed"})
OUTCOMES = frozenset({"evaluation.completed", "experiment.failed"})


class InProcessQueue:
    """An EventPublisher whose messages wait in memory, in order, until their `not_before` (as scheduled Service
    Bus messages do)."""

    def __init__(self) -> None:
        self.waiting: deque[Event] = deque()

    def publish(self, events: Sequence[Event]) -> None:
        self.waiting.extend(events)

    def next(self) -> Event | None:
        if not self.waiting:
            return None
        event = self.waiting.popleft()
        due = event.not_before()
        if due is not None:
            time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
        return event


def run_experiment(settings: Settings, use_case: str, environment: str, *,
                   on_event: Callable[[Event], None] = lambda event: None) -> Event:
    """Run `use_case`'s experiment here and return its outcome event."""
    # promptflow runs in this process: its log lines and prints are masked as in the app
    install_masking(settings.app_settings)
    queue = InProcessQueue()
    app = build_application(settings, queue)
    requested = ExperimentRequested.create({"use_case": use_case, "environment": environment, "reason": "manual"},
                                           correlation_id=f"run-{new_event_id()}", source="genaiops run")
    queue.publish([requested])
    while (event := queue.next()) is not None:
        on_event(event)
        if event.type in OUTCOMES:
            return event
        if event.type in EXPERIMENT_EVENTS:
            message = encode(event)
            app.on_bus_message(message.body, message_id=message.message_id, delivery_count=1, properties={},
                               correlation_id=message.correlation_id, subject=message.subject)
    raise RuntimeError(f"the experiment for {use_case} ended without an outcome event")
