"""The envelope every event shares: identity, type, version, correlation, causation and time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_serializer

from shared.redaction import redact


def new_event_id() -> str:
    return uuid.uuid4().hex


def derived_event_id(*parts: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, "genaiops:" + "|".join(parts)).hex


def utc_now() -> datetime:
    return datetime.now(UTC)


E = TypeVar("E", bound="Event")


class Payload(BaseModel):
    """Base of every payload: unknown fields are an error, so a typo in a pipeline's event fails loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(BaseModel):
    """Envelope. `id` doubles as the Service Bus message_id (broker duplicate detection, idempotency key);
    `correlation_id` ties every event of one pipeline run or upload together; `causation_id` names the
    event this one was produced by, so the audit trail is a tree."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=new_event_id, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    type: str
    version: int = Field(default=1, ge=1)
    correlation_id: str = Field(min_length=1, max_length=128)
    causation_id: str | None = None
    occurred_at: datetime = Field(default_factory=utc_now)
    source: str = Field(default="genaiops-functions", max_length=256)
    payload: Payload

    @field_serializer("payload", mode="wrap")
    def _masked(self, payload: Payload, serialize: SerializerFunctionWrapHandler) -> Any:
        # Whatever a handler put into an event (an LLM's error echoing a key), the bus, the journal and the
        # idempotency records get it masked. By value and shape only: payload field names are not secrets.
        return redact(serialize(payload), by_name=False)

    def not_before(self) -> datetime | None:
        """When the bus should deliver this event (Service Bus scheduled enqueue time); None means now.
        Re-check events (a long operation polled later) carry it in their payload as `not_before`."""
        value = getattr(self.payload, "not_before", None)
        return value if isinstance(value, datetime) else None

    @classmethod
    def event_type(cls) -> str:
        return str(cls.model_fields["type"].default)

    @classmethod
    def create(cls, payload: Payload | dict[str, Any], *, correlation_id: str,
               source: str = "genaiops-functions", causation_id: str | None = None) -> Self:
        return cls.model_validate({
            "type": cls.event_type(),
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "source": source,
            "payload": payload,
        })

    def follow_up(self, event_cls: type[E], payload: Payload | dict[str, Any], key: str = "") -> E:
        """An event caused by this one: same correlation id, causation id pointing here, and an id derived
        from (this id, type, key) — so a handler re-run after a redelivery emits the very same event ids and
        every duplicate is dropped downstream. `key` tells apart several follow-ups of one type."""
        event = event_cls.create(payload, correlation_id=self.correlation_id, causation_id=self.id)
        return event.model_copy(update={"id": derived_event_id(self.id, event.type, key)})
