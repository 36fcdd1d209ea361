"""Decoding never raises anything but MalformedEvent, for each class of input the attack campaign found
(issue 12): integers past the int-string limit, deep nesting, lone surrogates, `type`/`version` of any JSON
shape; and dead-letter names cannot collide."""

from __future__ import annotations

import json

import pytest

from shared.blob_layout import dead_letter_name, dead_letter_prefix, message_key
from shared.events import ExperimentProgressed
from shared.events.codec import MalformedEvent, decode, encode


def valid() -> dict:
    event = ExperimentProgressed.create(
        {"use_case": "math", "experiment_id": "e1", "stage": "standard", "items_done": 1, "items_total": 2,
         "lines_done": 3, "lines_total": 4}, correlation_id="c1")
    return json.loads(encode(event).body)


def reason(body: bytes | str) -> str:
    with pytest.raises(MalformedEvent) as bad:
        decode(body)
    return bad.value.reason


def test_the_valid_envelope_decodes() -> None:
    assert decode(json.dumps(valid()).encode()).type == "experiment.progressed"


@pytest.mark.parametrize("body", [
    b'{"type": "gate.failed", "n": ' + b"9" * 4301 + b"}",
    b"9" * 10_000,
    b'{"type": "experiment.progressed", "version": ' + b"1" * 5000 + b"}",
])
def test_integers_past_the_int_string_limit_are_invalid_json(body: bytes) -> None:
    assert reason(body) == "InvalidJson"


@pytest.mark.parametrize(("opener", "closer"), [("[", "]"), ('{"a":', "}"), ('[{"k":', "}]")])
def test_nesting_past_the_parser_limit_is_invalid_json(opener: str, closer: str) -> None:
    assert reason((opener * 2000 + "1" + closer * 2000).encode()) == "InvalidJson"


@pytest.mark.parametrize("depth", [100, 500, 800])
def test_deep_nesting_inside_a_valid_envelope_is_a_schema_failure(depth: int) -> None:
    envelope = json.dumps(valid(), separators=(",", ":"))
    body = envelope.replace('"items_done":1', '"items_done":' + "[" * depth + "]" * depth)
    assert body != envelope
    assert reason(body.encode()) == "SchemaValidationFailed"
    body = envelope[:-1] + ',"extra":' + "[" * depth + "]" * depth + "}"
    assert reason(body.encode()) == "SchemaValidationFailed"


@pytest.mark.parametrize("depth", [100, 800])
def test_deeply_nested_type_or_version_is_named_without_printing_it(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    with pytest.raises(MalformedEvent) as bad:
        decode(('{"type": ' + nested + "}").encode())
    assert bad.value.reason == "UnknownEventType"
    assert len(bad.value.description) < 200
    envelope = valid()
    envelope["version"] = "VERSION"
    assert reason(json.dumps(envelope).replace('"VERSION"', nested).encode()) == "UnsupportedVersion"


@pytest.mark.parametrize("field", ["correlation_id", "source", "id"])
def test_lone_surrogates_are_a_schema_failure(field: str) -> None:
    envelope = valid()
    envelope[field] = "a\ud800b"
    assert reason(json.dumps(envelope).encode()) == "SchemaValidationFailed"


def test_lone_surrogates_in_a_free_form_field_cannot_reach_the_journal() -> None:
    body = json.dumps({"type": "evaluation.completed", "payload": {"best_hyperparameters": {"x": "\udfff"}}})
    assert reason(body.encode()) == "SchemaValidationFailed"


@pytest.mark.parametrize("body", [b"\xff\xfe\x00{", b'{"type": "\xed\xa0\x80"}', b"\xc3", "\ud800".encode(
    "utf-8", "surrogatepass")])
def test_bytes_that_are_not_utf8_are_invalid_json(body: bytes) -> None:
    assert reason(body) == "InvalidJson"


def test_a_str_body_with_a_raw_lone_surrogate_never_raises_anything_else() -> None:
    assert reason('{"type": "\ud800"}') == "UnknownEventType"


@pytest.mark.parametrize("value", [["gate.failed"], {"a": 1}, 1, 1.5, True, None, 10**4000])
def test_type_of_any_json_shape_is_an_unknown_event_type(value: object) -> None:
    envelope = valid()
    envelope["type"] = value
    assert reason(json.dumps(envelope).encode()) == "UnknownEventType"


@pytest.mark.parametrize("value", [[1], {"v": 1}, "1", None, True, 1.5, 2, float("nan"), 10**4000])
def test_version_of_any_json_shape_is_unsupported(value: object) -> None:
    envelope = valid()
    envelope["version"] = value
    assert reason(json.dumps(envelope).encode()) == "UnsupportedVersion"


def test_existing_reasons_keep_their_meaning() -> None:
    assert reason(b"{not json") == "InvalidJson"
    assert reason(b"[1, 2]") == "InvalidEnvelope"
    assert reason(b'{"type": "experiment.exploded"}') == "UnknownEventType"
    envelope = valid()
    envelope["payload"]["items_done"] = -1
    assert reason(json.dumps(envelope).encode()) == "SchemaValidationFailed"


def test_dead_letter_names_do_not_collide_where_the_old_sanitiser_did() -> None:
    ids = ["col/1", "col_1", "col?1", "col 1", "_col_1_", "col\ud8001", "x" * 250 + "a", "x" * 250 + "b"]
    names = {dead_letter_name("genaiops-events", message_id, 7) for message_id in ids}
    assert len(names) == len(ids)
    assert all(len(name) < 120 for name in names)
    assert dead_letter_name("q", "m", 1) != dead_letter_name("q", "m", 2)  # two messages that share an id
    assert dead_letter_name("q", "m", 1).startswith(dead_letter_prefix("q", "m"))
    assert message_key("col/1") != message_key("col_1")
