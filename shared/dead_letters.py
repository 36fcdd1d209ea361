"""Messages that can never be handled are kept, with the reason, instead of being retried or dropped.

Azure Service Bus dead-letters on its own after MaxDeliveryCount; a message we *know* is bad (not JSON,
unknown type, invalid payload) is recorded here at once and completed, so it costs one delivery, not ten.

Writing the record cannot fail on the message's content: a body (or properties) that cannot be written as JSON
— nested too deeply, lone surrogates, values of odd types — is kept as the raw bytes in base64 with the reason,
and a body that is not UTF-8 keeps its raw bytes too; secrets in those bytes are redacted where they decode as text
(`_redacted_raw`). Each message gets its own record, named by the hash of its id and its sequence number (see
`blob_layout.dead_letter_name`); the id itself is inside.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.blob_layout import SYSTEM, dead_letter_name, dead_letter_prefix, message_key
from shared.ports import BlobNotFound, BlobStore, Clock
from shared.redaction import redact, redact_text


class DeadLetter(BaseModel):
    queue: str
    message_id: str  # lone surrogates written as `\udXXX` escapes; message_key is the hash of the id itself
    message_key: str = ""  # sha256 of the message id: the record's name
    sequence_number: int | None = None
    reason: str
    description: str
    dead_lettered_at: datetime
    delivery_count: int | None
    content_type: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    properties: dict[str, Any]  # the message's application properties; secrets redacted
    body: Any  # parsed JSON when it parses, else the text; secrets redacted either way
    body_base64: str | None = None  # the raw bytes (redacted where they decode) when `body` cannot hold them
    body_note: str | None = None  # why body_base64 is there


def _text(value: Any, limit: int | None = None) -> str:
    """Any value as text that UTF-8 can hold: lone surrogates become `\\udXXX` escapes."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception as exc:  # noqa: BLE001 - str() of an odd property value (or an int past the digit limit)
        text = f"<{type(value).__name__}: {type(exc).__name__}>"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if limit is None or len(text) <= limit else text[:limit] + "…"


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value, 1000)


def _readable_body(body: bytes) -> tuple[Any, str | None]:
    """(the body for people, a note when the raw bytes must be kept as well)."""
    try:  # the encoding the codec reads JSON in (UTF-8, or UTF-16/32 by its first bytes), so redaction sees the text
        text = body.decode(json.detect_encoding(body))
        note = None
    except UnicodeDecodeError as exc:
        text = body.decode("utf-8", errors="replace")
        note = f"body is not text ({_text(exc)}); body_base64 holds the raw bytes, secrets redacted where readable"
    try:
        return redact(json.loads(text)), note
    except Exception:  # noqa: BLE001 - not JSON (or too deep, ints past the limit): keep the text
        return redact_text(text), note


def _redacted_raw(body: bytes) -> str:
    """The body as base64, secrets masked wherever its bytes decode as text: in the encoding JSON detection names
    (lone surrogates kept as they were), else as UTF-8 with each undecodable byte kept as it was (surrogateescape) —
    the readable bytes are redacted, the rest unchanged. What cannot be redacted: a secret in bytes that are not
    text in that encoding (compressed, encrypted or binary content, a secret split by undecodable bytes, a body
    that mixes encodings)."""
    encoding = json.detect_encoding(body)
    try:
        redacted = redact_text(body.decode(encoding, "surrogatepass")).encode(encoding, "surrogatepass")
    except UnicodeError:
        redacted = redact_text(body.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
    return base64.b64encode(redacted).decode()


def _plain_properties(properties: dict[Any, Any]) -> dict[str, Any]:
    """Application properties as JSON-able scalars (the SDK may hand over bytes, UUIDs, datetimes), redacted."""
    plain: dict[str, Any] = {}
    for key, value in properties.items():
        if isinstance(value, bool | float) or value is None or (isinstance(value, int) and -2**63 <= value < 2**64):
            plain[_text(key)] = value
        elif isinstance(value, bytes):
            plain[_text(key)] = value.decode("utf-8", errors="backslashreplace")
        else:
            plain[_text(key)] = _text(value, 4000)
    return redact(plain)


class DeadLetterStore:
    def __init__(self, blobs: BlobStore, clock: Clock) -> None:
        self._blobs = blobs
        self._clock = clock

    def record(self, *, queue: str, message_id: str, body: bytes, reason: str, description: str,
               delivery_count: int | None = None, properties: dict[str, Any] | None = None,
               sequence_number: int | None = None, content_type: str | None = None,
               correlation_id: str | None = None, subject: str | None = None) -> DeadLetter:
        common: dict[str, Any] = {
            "queue": queue, "message_key": message_key(message_id), "sequence_number": sequence_number,
            "reason": reason, "dead_lettered_at": self._clock.now(), "delivery_count": delivery_count,
        }
        try:
            readable, note = _readable_body(body)
            letter = DeadLetter(
                **common, message_id=_text(message_id), description=redact_text(_text(description)),
                content_type=_optional_text(content_type), correlation_id=_optional_text(correlation_id),
                subject=_optional_text(subject), properties=_plain_properties(properties or {}),
                body=readable, body_base64=_redacted_raw(body) if note else None, body_note=note,
            )
            data = letter.model_dump_json(indent=2).encode()
        except Exception as exc:  # noqa: BLE001 - RecursionError, PydanticSerializationError, odd property types
            letter = self._raw_letter(common, message_id, body, description, content_type, correlation_id, subject,
                                      properties, f"{type(exc).__name__}: {_text(exc, 300)}")
            data = letter.model_dump_json(indent=2).encode()
        self._blobs.write(SYSTEM, dead_letter_name(queue, message_id, sequence_number), data)
        return letter

    @staticmethod
    def _raw_letter(common: dict[str, Any], message_id: str, body: bytes, description: str,
                    content_type: str | None, correlation_id: str | None, subject: str | None,
                    properties: dict[str, Any] | None, problem: str) -> DeadLetter:
        """The record that always serialises: every text made UTF-8-safe, the body as raw base64."""
        try:
            plain = _plain_properties(properties or {})
            json.dumps(plain)
        except Exception:  # noqa: BLE001 - keep what can be kept: the property names
            plain = {"unreadable_properties": [_text(key, 200) for key in (properties or {})]}
        return DeadLetter(
            **common, message_id=_text(message_id), description=redact_text(_text(description, 4000)),
            content_type=_optional_text(content_type), correlation_id=_optional_text(correlation_id),
            subject=_optional_text(subject), properties=plain, body=None,
            body_base64=_redacted_raw(body),
            body_note=f"the body cannot be written as JSON ({problem}); body_base64 holds the raw bytes, secrets "
                      "redacted where they decode as text",
        )

    def all_for(self, queue: str, message_id: str) -> list[DeadLetter]:
        """Every record of a message id, oldest sequence number first (normally exactly one)."""
        names = sorted(info.name for info in self._blobs.list(SYSTEM, dead_letter_prefix(queue, message_id)))
        return [DeadLetter.model_validate_json(self._blobs.read(SYSTEM, name)[0]) for name in names]

    def get(self, queue: str, message_id: str, sequence_number: int | None = None) -> DeadLetter:
        """The record of a message: by id and sequence number, or by id alone (the latest record of that id)."""
        if sequence_number is not None:
            data, _ = self._blobs.read(SYSTEM, dead_letter_name(queue, message_id, sequence_number))
            return DeadLetter.model_validate_json(data)
        letters = self.all_for(queue, message_id)
        if not letters:
            raise BlobNotFound(f"no dead-letter record for message {_text(message_id, 200)!r} on {queue}")
        return max(letters, key=lambda letter: letter.dead_lettered_at)
