from __future__ import annotations

import json

import pytest

from shared.events import EVENT_TYPES, DatasetUploaded, ExperimentRequested, PipelineTriggered
from shared.events.codec import MalformedEvent, decode, encode
from shared.events.schema import catalogue_schema

LIFECYCLE = {
    "dataset.uploaded", "data.registered", "experiment.requested", "experiment.completed", "experiment.failed",
    "evaluation.completed", "gate.passed", "gate.failed", "flow.registered", "approval.requested",
    "approval.granted", "approval.rejected", "approval.expired", "deployment.requested", "deployment.completed",
    "deployment.verified", "deployment.unchanged", "smoke.passed", "smoke.failed", "deployment.rolled_back",
    "pipeline.triggered",
    "deployment.traffic_requested", "deployment.traffic_changed", "deployment.traffic_failed",
    "deployment.check_requested", "experiment.item_requested", "experiment.stage_completed", "experiment.progressed",
    "deployment.degraded", "production.evaluation_requested", "production.evaluated", "production.degraded",
}


def pipeline_event() -> PipelineTriggered:
    return PipelineTriggered.create(
        {"pipeline": "pr", "run_id": "42", "environment": "pr", "use_cases": ["math_coding"]}, correlation_id="42"
    )


def test_catalogue_covers_the_whole_lifecycle() -> None:
    assert set(EVENT_TYPES) == LIFECYCLE


def test_encode_decode_round_trip_keeps_broker_properties() -> None:
    event = pipeline_event()
    message = encode(event)
    assert message.message_id == event.id
    assert message.correlation_id == "42"
    assert message.subject == "pipeline.triggered"
    assert decode(message.body) == event


def test_follow_up_ids_are_deterministic_per_cause_type_and_key() -> None:
    cause = pipeline_event()
    first = cause.follow_up(ExperimentRequested, {"use_case": "math_coding"}, key="math_coding")
    again = cause.follow_up(ExperimentRequested, {"use_case": "math_coding"}, key="math_coding")
    other = cause.follow_up(ExperimentRequested, {"use_case": "ner"}, key="ner")
    assert first.id == again.id != other.id
    assert first.correlation_id == cause.correlation_id
    assert first.causation_id == cause.id


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "InvalidJson"),
        (b"[1, 2]", "InvalidEnvelope"),
        (b'{"type": "experiment.exploded", "correlation_id": "c", "payload": {}}', "UnknownEventType"),
        (b'{"type": "pipeline.triggered", "version": 9, "correlation_id": "c", "payload": {}}', "UnsupportedVersion"),
        (b'{"type": "pipeline.triggered", "correlation_id": "c", "payload": {"pipeline": "p"}}',
         "SchemaValidationFailed"),
    ],
)
def test_malformed_bodies_fail_with_a_named_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent) as raised:
        decode(body)
    assert raised.value.reason == reason


def test_validation_error_names_the_field() -> None:
    body = json.dumps({"type": "pipeline.triggered", "correlation_id": "c",
                       "payload": {"pipeline": "p", "run_id": "1", "environment": "staging", "use_cases": ["x"]}})
    with pytest.raises(MalformedEvent, match=r"payload\.environment"):
        decode(body.encode())


def test_unknown_payload_fields_are_rejected() -> None:
    event = pipeline_event().model_dump(mode="json")
    event["payload"]["use_case"] = "typo"
    with pytest.raises(MalformedEvent, match="use_case"):
        decode(json.dumps(event).encode())


def test_schema_export_lists_every_event_type() -> None:
    schema = catalogue_schema()
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) == LIFECYCLE
    assert "DatasetUploaded" in schema["$defs"]
    json.dumps(schema)  # serialisable as written by the CLI


def test_dataset_uploaded_rejects_path_traversal_names() -> None:
    with pytest.raises(ValueError, match="blob_name"):
        DatasetUploaded.create({"container": "datasets", "blob_name": "../etc/passwd", "dataset": "x",
                                "size_bytes": 1, "etag": "e"}, correlation_id="c")


def test_committed_schema_matches_the_catalogue() -> None:
    from pathlib import Path

    from shared.events.schema import catalogue_schema_json

    committed = Path(__file__).resolve().parents[2] / "docs" / "events.schema.json"
    assert committed.read_text() == catalogue_schema_json(), "run `make schema` and commit docs/events.schema.json"
