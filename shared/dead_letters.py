"""Messages that can never be handled are kept, with the reason, instead of being retried or dropped.

Azure Service Bus dead-letters on its own after MaxDeliveryCount; a message we *know* is bad (not JSON,
unknown type, invalid payload) is recorded here at once and completed, so it costs one delivery, not ten.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.blob_layout import SYSTEM, dead_letter_name
from shared.ports import BlobStore, Clock
from shared.redaction import redact, redact_text


class DeadLetter(BaseModel):
    queue: str
    message_id: str
    reason: str
    description: str
    dead_lettered_at: datetime
    delivery_count: int | None
    properties: dict[str, Any]
    body: Any  # parsed JSON when it parses, else the text; secrets redacted either way


def _readable_body(body: bytes) -> Any:
    text = body.decode("utf-8", errors="replace")
    try:
        return redact(json.loads(text))
    except json.JSONDecodeError:
        return redact_text(text)


class DeadLetterStore:
    def __init__(self, blobs: BlobStore, clock: Clock) -> None:
        self._blobs = blobs
        self._clock = clock

    def record(self, *, queue: str, message_id: str, body: bytes, reason: str, description: str,
               delivery_count: int | None = None, properties: dict[str, Any] | None = None) -> DeadLetter:
        letter = DeadLetter(
            queue=queue, message_id=message_id, reason=reason, description=redact_text(description),
            dead_lettered_at=self._clock.now(), delivery_count=delivery_count,
            properties=redact(properties or {}), body=_readable_body(body),
        )
        self._blobs.write(SYSTEM, dead_letter_name(queue, message_id), letter.model_dump_json(indent=2).encode())
        return letter

    def get(self, queue: str, message_id: str) -> DeadLetter:
        data, _ = self._blobs.read(SYSTEM, dead_letter_name(queue, message_id))
        return DeadLetter.model_validate_json(data)
