"""The raw-bytes fallback of a dead-letter record is redacted where its bytes decode as text, and keeps every byte
it cannot read as it was."""

from __future__ import annotations

import base64

import pytest

from shared.dead_letters import DeadLetterStore
from tests.fakes.memory import ManualClock, MemoryBlobStore

SECRET = "c2VjcmV0LWtleQ=="


def record(body: bytes) -> tuple[bytes, str]:
    letter = DeadLetterStore(MemoryBlobStore(), ManualClock()).record(
        queue="q", message_id="m", body=body, reason="InvalidJson", description="test")
    assert letter.body_base64 is not None
    return base64.b64decode(letter.body_base64), letter.body_note or ""


def test_a_body_that_is_not_utf8_is_redacted_and_keeps_its_unreadable_bytes() -> None:
    body = f'{{"conn": "AccountName=a;AccountKey={SECRET}"}}'.encode() + b"\xff\xfe tail"
    raw, note = record(body)
    assert SECRET.encode() not in raw
    assert raw == body.replace(SECRET.encode(), b"***")
    assert "secrets redacted where readable" in note


@pytest.mark.parametrize("value", ["[" * 300 + "]" * 300, '"\\ud800"'])
def test_a_body_the_record_cannot_hold_as_json_is_redacted_too(value: str) -> None:
    body = f'{{"type": "nope", "url": "https://x/y?sv=1&sig={SECRET}", "x": {value}}}'.encode()
    raw, note = record(body)
    assert raw == body.replace(SECRET.encode(), b"***")
    assert "cannot be written as JSON" in note


def test_a_utf16_body_is_redacted_in_its_own_encoding() -> None:
    readable = f'["api_key={SECRET}"]'.encode("utf-16-le")
    letter = DeadLetterStore(MemoryBlobStore(), ManualClock()).record(
        queue="q", message_id="m", body=readable, reason="InvalidEnvelope", description="test")
    assert letter.body == ["api_key=***"]
    broken = f'["api_key={SECRET}", "\ud800"]'.encode("utf-16-le", "surrogatepass")  # a lone surrogate: not text
    raw, _ = record(broken)
    assert raw == broken.decode("utf-16-le", "surrogatepass").replace(SECRET, "***").encode("utf-16-le",
                                                                                             "surrogatepass")
