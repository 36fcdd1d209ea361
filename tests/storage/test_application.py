"""The Application entry points over real Azurite storage; only the bus is a recorder (the e2e tests use
the real broker)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.promptflow_runner import PromptflowRunner
from shared.application import Application
from shared.blob_layout import REPORTS, idempotency_name, intake_report_name
from shared.bootstrap import build_deployments
from shared.events import Event
from shared.events.codec import encode
from shared.handlers import HANDLERS
from shared.idempotency import IdempotencyStore
from shared.ports import BlobNotFound, BlobStore
from shared.registry.blob_registry import BlobRegistry
from shared.registry.hashing import MAX_LINE_BYTES
from shared.services.intake import dataset_uploaded_event
from shared.settings import Settings
from tests.fakes.memory import ManualClock, RecordingPublisher

pytestmark = pytest.mark.azurite


@pytest.fixture
def app(blob_store: BlobStore, clock: ManualClock) -> tuple[Application, RecordingPublisher]:
    bus = RecordingPublisher()
    settings = Settings()
    application = Application(settings, blob_store, bus, clock, PromptflowRunner(), BlobRegistry(blob_store, clock),
                              build_deployments(settings, blob_store, clock))
    return application, bus


def upload(blob_store: BlobStore, name: str, content: bytes) -> Event:
    etag = blob_store.write("datasets", name, content, content_type="application/x-ndjson")
    event = dataset_uploaded_event("datasets", name, len(content), etag)
    assert event is not None
    return event


def test_blob_upload_publishes_one_dataset_event_per_version(app, blob_store: BlobStore, unique: str) -> None:
    application, bus = app
    etag = blob_store.write("datasets", f"math_coding/train{unique}.jsonl", b'{"q": 1}\n')
    first = application.on_blob_uploaded("datasets", f"math_coding/train{unique}.jsonl", 9, etag)
    again = application.on_blob_uploaded("datasets", f"math_coding/train{unique}.jsonl", 9, etag)
    assert first == again  # the same blob version always yields the same event id
    assert [e.type for e in bus.events] == ["dataset.uploaded", "dataset.uploaded"]
    assert bus.events[0].payload.use_case == "math_coding"
    assert application.on_blob_uploaded("datasets", "math_coding/README.md", 3, etag) is None


def test_valid_dataset_gets_a_report_with_hash_rows_and_columns(app, blob_store: BlobStore, unique: str) -> None:
    application, _ = app
    content = b'{"question": "1+1", "answer": "2"}\n\n{"question": "2+2", "answer": "4", "level": 1}\n'
    event = upload(blob_store, f"math_coding/math{unique}.jsonl", content)
    outcome = application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=1, properties={})
    assert outcome.status == "handled"
    report = json.loads(blob_store.read(REPORTS, intake_report_name(f"math_coding/math{unique}.jsonl"))[0])
    assert report["status"] == "valid"
    assert report["rows"] == 2
    assert report["columns"] == ["question", "answer", "level"]
    assert report["content_hash"] == "sha256:" + hashlib.sha256(content).hexdigest()


def test_bad_dataset_gets_an_error_report_not_a_crash(app, blob_store: BlobStore, unique: str) -> None:
    application, _ = app
    event = upload(blob_store, f"math_coding/bad{unique}.jsonl", b'{"ok": 1}\nnot json\n[1,2]\n')
    assert application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=1,
                                      properties={}).status == "handled"
    report = json.loads(blob_store.read(REPORTS, intake_report_name(f"math_coding/bad{unique}.jsonl"))[0])
    assert report["status"] == "invalid"
    assert report["error_count"] == 2
    assert report["errors"][0].startswith("line 2: not valid JSON")
    assert report["errors"][1] == "line 3: each line must be a JSON object"


def test_redelivered_event_runs_its_handler_once(app, blob_store: BlobStore, unique: str) -> None:
    application, _ = app
    event = upload(blob_store, f"math_coding/once{unique}.jsonl", b'{"a": 1}\n')
    body = encode(event).body
    first = application.on_bus_message(body, message_id=event.id, delivery_count=1, properties={})
    report_before = blob_store.read(REPORTS, intake_report_name(f"math_coding/once{unique}.jsonl"))
    second = application.on_bus_message(body, message_id=event.id, delivery_count=2, properties={})
    assert (first.status, second.status) == ("handled", "replayed")
    assert blob_store.read(REPORTS, intake_report_name(f"math_coding/once{unique}.jsonl")) == report_before  # same


def test_a_copy_of_an_event_being_handled_is_settled_not_retried(app, blob_store: BlobStore, clock: ManualClock,
                                                                  unique: str) -> None:
    """Two messages with one event id (published twice at once): while message 41 holds the claim, message 42 is
    settled as a copy on any delivery, never taking the claim over (which ran the handler twice at once before)."""
    application, _ = app
    name = f"math_coding/copy{unique}.jsonl"
    event = upload(blob_store, name, b'{"a": 1}\n')
    handler = HANDLERS[type(event)].__name__
    IdempotencyStore(blob_store, clock)._claim(idempotency_name(handler, event.id), handler, event.id,
                                               delivery_count=1, sequence_number=41)
    for delivery in (1, 2):
        copy = application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=delivery,
                                          properties={}, sequence_number=42)
        assert copy.status == "replayed"
    with pytest.raises(BlobNotFound):  # the copy ran nothing
        blob_store.read(REPORTS, intake_report_name(name))
    resumed = application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=2, properties={},
                                         sequence_number=41)  # the holder's own redelivery: it had died
    assert resumed.status == "handled"
    assert blob_store.read(REPORTS, intake_report_name(name))


def test_malformed_message_is_dead_lettered_with_reason_and_redacted(app, unique: str) -> None:
    application, _ = app
    body = json.dumps({"type": "nope", "payload": {"api_key": "s3cr3t"}}).encode()
    outcome = application.on_bus_message(body, message_id=f"m{unique}", delivery_count=1,
                                         properties={"token": "t0ken"})
    assert outcome.status == "dead_lettered"
    letter = application.dead_letters.get(application.settings.events_queue, f"m{unique}")
    assert letter.reason == "UnknownEventType"
    assert "s3cr3t" not in letter.model_dump_json()
    assert "t0ken" not in letter.model_dump_json()


def test_journal_lists_a_runs_events_in_order(app, blob_store: BlobStore, unique: str) -> None:
    application, _ = app
    event = upload(blob_store, f"math_coding/j{unique}.jsonl", b'{"a": 1}\n')
    application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=1, properties={})
    journal = application.journal.events_for(event.correlation_id)
    assert [e.type for e in journal] == ["dataset.uploaded", "data.registered"]
    assert journal[0].id == event.id
    assert journal[1].causation_id == event.id


def test_event_identity_ignores_etag_quoting(app, unique: str) -> None:
    application, _ = app
    quoted = application.on_blob_uploaded("datasets", f"math_coding/q{unique}.jsonl", 3, '"0x8DB1"')
    bare = application.on_blob_uploaded("datasets", f"math_coding/q{unique}.jsonl", 3, "0x8DB1")
    assert quoted == bare


def registered(application: Application, bus: RecordingPublisher, event: Event) -> dict:
    application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=1, properties={})
    return next(e for e in reversed(bus.events) if e.type == "data.registered").payload.model_dump()


def test_data_is_registered_only_when_its_content_changes(app, blob_store: BlobStore, unique: str) -> None:
    application, bus = app
    name = f"math_coding/reg{unique}.jsonl"
    first = registered(application, bus, upload(blob_store, name, b'{"a": 1}\n'))
    same_again = registered(application, bus, upload(blob_store, name, b'{"a": 1}\n'))  # new blob version, same bytes
    changed = registered(application, bus, upload(blob_store, name, b'{"a": 2}\n'))  # one byte differs
    assert (first["version"], first["created"]) == ("1", True)
    assert (same_again["version"], same_again["created"]) == ("1", False)
    assert (changed["version"], changed["created"]) == ("2", True)


def test_a_duplicate_upload_event_registers_nothing_twice(app, blob_store: BlobStore, unique: str) -> None:
    application, bus = app
    event = upload(blob_store, f"math_coding/dup{unique}.jsonl", b'{"a": 1}\n')
    for delivery in (1, 2, 3):
        application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=delivery, properties={})
    versions = application.registry.latest_data(f"math_coding-dup{unique}")
    assert versions is not None
    assert versions.version == "1"
    sent = [e for e in bus.events if e.type == "data.registered"]
    assert [e.payload.created for e in sent] == [True, True, True]  # the stored follow-up is re-sent as it was
    assert len({e.id for e in sent}) == 1  # with the same id, so downstream drops the copies


FIXTURE_FLOWS = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "experiments" / "flows"


def test_a_shared_blob_named_as_a_source_is_registered_and_feeds_every_use_case_naming_it(
        blob_store: BlobStore, clock: ManualClock) -> None:
    bus = RecordingPublisher()
    settings = Settings().model_copy(update={"flows_dir": FIXTURE_FLOWS})
    application = Application(settings, blob_store, bus, clock, PromptflowRunner(), BlobRegistry(blob_store, clock),
                              build_deployments(settings, blob_store, clock))
    event = upload(blob_store, "shared/qa.jsonl", b'{"question": "q"}\n')  # not a use case folder
    application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=1, properties={})
    report = json.loads(blob_store.read(REPORTS, intake_report_name("shared/qa.jsonl"))[0])
    assert (report["status"], report["use_case"], report["data_name"]) == ("valid", "shared", "shared-qa")
    requested = sorted(e.payload.use_case for e in bus.events if e.type == "experiment.requested")
    assert requested == ["math_coding", "qa_bot"]


def test_a_line_longer_than_the_limit_is_reported_not_held(app, blob_store: BlobStore, unique: str) -> None:
    application, bus = app
    name = f"math_coding/long{unique}.jsonl"
    event = upload(blob_store, name, b'{"a": 1}\n{"b": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n{"c": 3}\n')
    application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=1, properties={})
    report = json.loads(blob_store.read(REPORTS, intake_report_name(name))[0])
    assert (report["status"], report["rows"], report["errors"]) == ("invalid", 2, ["line 2: longer than 1 MiB"])
    assert not [e for e in bus.events if e.correlation_id == event.correlation_id]  # nothing registered or requested


@pytest.mark.parametrize("name", ["toplevel{u}.jsonl", "no_such_use_case{u}/x.jsonl", "nested{u}/dir/deep.jsonl"])
def test_an_upload_outside_a_use_case_is_refused_and_registers_nothing(app, blob_store: BlobStore, unique: str,
                                                                       name: str) -> None:
    application, bus = app
    name = name.format(u=unique)
    event = upload(blob_store, name, b'{"a": 1}\n')
    assert application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=1,
                                      properties={}).status == "handled"
    report = json.loads(blob_store.read(REPORTS, intake_report_name(name))[0])
    assert (report["status"], report["use_case"], report["rows"]) == ("refused", None, 1)
    assert "math_coding, named_entity_recognition" in report["refusal"]
    assert not [e for e in bus.events if e.correlation_id == event.correlation_id]


def test_a_name_no_dataset_can_come_from_is_refused_at_the_trigger(app, blob_store: BlobStore, unique: str) -> None:
    application, bus = app
    name = f"math_coding/{unique}/.jsonl"
    etag = blob_store.write("datasets", name, b'{"a": 1}\n')
    assert application.on_blob_uploaded("datasets", name, 9, etag) is None  # returns: the trigger does not retry
    report = json.loads(blob_store.read(REPORTS, intake_report_name(name))[0])
    assert report["status"] == "refused"
    assert "no file name before .jsonl" in report["refusal"]
    assert bus.events == []


def test_a_version_replaced_before_it_is_read_is_not_reported_or_registered(app, blob_store: BlobStore,
                                                                            unique: str) -> None:
    application, bus = app
    name = f"math_coding/replaced{unique}.jsonl"
    old = upload(blob_store, name, b'{"v": 1}\n')
    new = upload(blob_store, name, b'{"v": 2}\n{"v": 3}\n')  # overwritten before the first event is handled
    application.on_bus_message(encode(old).body, message_id=old.id, delivery_count=1, properties={})
    assert not [e for e in bus.events if e.correlation_id == old.correlation_id]
    with pytest.raises(BlobNotFound):
        blob_store.read(REPORTS, intake_report_name(name))
    application.on_bus_message(encode(new).body, message_id=new.id, delivery_count=1, properties={})
    report = json.loads(blob_store.read(REPORTS, intake_report_name(name))[0])
    assert (report["status"], report["rows"], report["etag"]) == ("valid", 2, new.payload.etag)


class ReplacedWhileRead:
    """The real store, with the blob overwritten by someone else right after the first chunk was read."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def __getattr__(self, attribute: str) -> object:
        return getattr(self._blobs, attribute)

    def stream(self, container: str, name: str, chunk_size: int = 4 * 1024 * 1024, *,
               etag: str | None = None) -> Iterator[bytes]:
        for number, chunk in enumerate(self._blobs.stream(container, name, chunk_size, etag=etag)):
            yield chunk
            if number == 0:
                self._blobs.write(container, name, b'{"replaced": true}\n')


def test_a_version_replaced_while_it_is_read_is_never_hashed_as_a_mix(blob_store: BlobStore, clock: ManualClock,
                                                                      unique: str) -> None:
    bus, blobs = RecordingPublisher(), ReplacedWhileRead(blob_store)
    settings = Settings()
    application = Application(settings, blobs, bus, clock, PromptflowRunner(), BlobRegistry(blobs, clock),
                              build_deployments(settings, blobs, clock))
    name = f"math_coding/midread{unique}.jsonl"
    event = upload(blob_store, name, b'{"n": 1}\n' * 600_000)  # 5.4 MB: three ranges
    application.on_bus_message(encode(event).body, message_id=event.id, delivery_count=1, properties={})
    assert not [e for e in bus.events if e.correlation_id == event.correlation_id]  # nothing registered
    assert application.registry.latest_data(f"math_coding-midread{unique}") is None
