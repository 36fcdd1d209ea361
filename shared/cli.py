"""The project's CLI, used by pipelines and people:

    python -m shared.cli publish TYPE --payload JSON [--correlation-id ID]   post a catalogue event
    python -m shared.cli wait --correlation-id ID --until TYPE [--fail-on T1,T2] [--timeout S]
        exit 0: TYPE seen; 3: a --fail-on event; 4: timed out; 5: a message of the run was dead-lettered
    python -m shared.cli events --correlation-id ID                             print a run's journal
    python -m shared.cli schema [--out FILE]                                    JSON Schema of the catalogue

Connections come from the same settings as the app (env or local.settings.json values exported).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from shared.audit import DeadLetterNote, EventJournal, JournalEntry, JournalingPublisher
from shared.events import EXPERIMENT_WORK_EVENTS, Event, ExperimentProgressed, event_class
from shared.events.envelope import new_event_id
from shared.events.schema import catalogue_schema_json
from shared.settings import get_settings

EXIT_FAILED_EVENT = 3
EXIT_TIMEOUT = 4
EXIT_DEAD_LETTERED = 5


def _journal():
    from shared.adapters.azure_blob import AzureBlobStore, blob_service_client

    return EventJournal(AzureBlobStore(blob_service_client(get_settings())))


def publish(event_type: str, payload: str, correlation_id: str | None, source: str) -> Event:
    from shared.adapters.servicebus import ServiceBusPublisher, servicebus_client

    event = event_class(event_type).create(json.loads(payload), correlation_id=correlation_id or new_event_id(),
                                           source=source)
    settings = get_settings()
    bus = ServiceBusPublisher(servicebus_client(settings), settings.events_queue)
    try:
        JournalingPublisher(bus, _journal()).publish([event])
    finally:
        bus.close()
    return event


def wait(correlation_id: str, until: set[str], fail_on: set[str], timeout: float, poll: float = 2.0) -> int:
    """Follow a run's journal until a wanted or a failing event, or a dead letter, appears; print each one once."""
    journal = _journal()
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in _since_last_trigger(journal.entries_for(correlation_id)):
            key = entry.id if isinstance(entry, Event) else f"{entry.message_key}/{entry.sequence_number}"
            if key in seen:
                continue
            seen.add(key)
            if isinstance(entry, DeadLetterNote):  # a message of this run that can never be handled: the run is stuck
                print(f"{entry.dead_lettered_at.isoformat()} dead-lettered message {entry.message_id}", flush=True)
                print(f"{entry.reason}: {entry.description}", file=sys.stderr)
                return EXIT_DEAD_LETTERED
            line = _describe(entry)
            if line:
                print(line, flush=True)
            if entry.type in fail_on:
                print(json.dumps(entry.payload.model_dump(mode="json"), indent=2), file=sys.stderr)
                return EXIT_FAILED_EVENT
            if entry.type in until:
                return 0
        time.sleep(poll)
    print(f"timed out after {timeout:.0f} s waiting for {', '.join(sorted(until))}", file=sys.stderr)
    return EXIT_TIMEOUT


def _describe(event: Event) -> str | None:
    if event.type in EXPERIMENT_WORK_EVENTS:  # progress says how far the work items are
        return None
    stamp = event.occurred_at.isoformat()
    if isinstance(event, ExperimentProgressed):
        p = event.payload
        return (f"{stamp} progress {p.use_case} {p.experiment_id} {p.stage}: {p.lines_done}/{p.lines_total} lines "
                f"({p.items_done}/{p.items_total} work items)")
    return f"{stamp} {event.type} {event.id}"


def _since_last_trigger(entries: list[JournalEntry]) -> list[JournalEntry]:
    """A re-run pipeline stage reuses its correlation id: only what follows its latest trigger counts."""
    starts = [index for index, entry in enumerate(entries)
              if isinstance(entry, Event) and entry.type == "pipeline.triggered"]
    return entries[starts[-1]:] if starts else entries


def _csv(value: str) -> set[str]:
    types = {part.strip() for part in value.split(",") if part.strip()}
    for event_type in types:
        event_class(event_type)  # fail fast on a typo in a pipeline
    return types


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pub = commands.add_parser("publish", help="post one catalogue event to the events queue")
    pub.add_argument("type")
    pub.add_argument("--payload", required=True, help="the payload as JSON")
    pub.add_argument("--correlation-id")
    pub.add_argument("--source", default="cli")
    wait_cmd = commands.add_parser("wait", help="block until an outcome event appears for a correlation id")
    wait_cmd.add_argument("--correlation-id", required=True)
    wait_cmd.add_argument("--until", required=True, type=_csv)
    wait_cmd.add_argument("--fail-on", default="", type=_csv)
    wait_cmd.add_argument("--timeout", type=float, default=3600)
    wait_cmd.add_argument("--poll", type=float, default=2.0)
    events_cmd = commands.add_parser("events", help="print the journal of one correlation id")
    events_cmd.add_argument("--correlation-id", required=True)
    schema_cmd = commands.add_parser("schema", help="write the event catalogue's JSON Schema")
    schema_cmd.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    if args.command == "publish":
        event = publish(args.type, args.payload, args.correlation_id, args.source)
        print(json.dumps({"id": event.id, "type": event.type, "correlation_id": event.correlation_id}))
        return 0
    if args.command == "wait":
        return wait(args.correlation_id, args.until, args.fail_on, args.timeout, args.poll)
    if args.command == "events":
        for entry in _journal().entries_for(args.correlation_id):  # events and dead letters
            print(entry.model_dump_json())
        return 0
    text = catalogue_schema_json()
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
