"""Raw AMQP 1.0 message handling: split a payload into sections, stamp broker fields, unpack batches.

Messages are stored as the exact bytes the client sent. Only the header and the annotation /
application-property sections are rewritten when the broker needs to, so bodies and properties
survive byte for byte (no lossy decode/re-encode round trip through proton's ``Message``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from proton import Data, Described, symbol, timestamp, uint, ulong

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78

BODY_CODES = frozenset({DATA, AMQP_SEQUENCE, AMQP_VALUE})
_SYMBOLIC_CODES = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE,
    "amqp:amqp-value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}
_HEADER_FIELDS = 5  # durable, priority, ttl, first-acquirer, delivery-count
_DELIVERY_COUNT_INDEX = 4


class MessageDecodeError(ValueError):
    """The payload is not a well-formed AMQP 1.0 message."""


@dataclass(frozen=True)
class Section:
    """One encoded message section: its descriptor code and its exact bytes."""

    code: int
    raw: bytes


def parse_sections(payload: bytes) -> list[Section]:
    """Split an encoded message into its sections, keeping each section's original bytes."""
    sections: list[Section] = []
    offset = 0
    data = Data()
    while offset < len(payload):
        data.clear()
        try:
            consumed = data.decode(payload[offset:])
        except Exception as exc:  # proton raises DataException and friends
            raise MessageDecodeError(f"undecodable section at byte {offset}: {exc}") from exc
        if consumed <= 0:
            raise MessageDecodeError(f"empty section at byte {offset}")
        sections.append(Section(_descriptor_code(data, offset), bytes(payload[offset : offset + consumed])))
        offset += consumed
    return sections


def _descriptor_code(data: Data, offset: int) -> int:
    data.rewind()
    if data.next() != Data.DESCRIBED:
        raise MessageDecodeError(f"section at byte {offset} is not a described type")
    data.enter()
    data.next()
    descriptor = data.get_object()
    data.exit()
    if isinstance(descriptor, str):
        descriptor = _SYMBOLIC_CODES.get(descriptor, -1)
    if not isinstance(descriptor, int) or not HEADER <= descriptor <= FOOTER:
        raise MessageDecodeError(f"section at byte {offset} has unknown descriptor {descriptor!r}")
    return int(descriptor)


def section_value(section: Section) -> Any:
    """Decode the value carried by a section (a list, map or binary)."""
    data = Data()
    data.decode(section.raw)
    data.rewind()
    data.next()
    described = data.get_object()
    if not isinstance(described, Described):  # every AMQP message section is a described type
        raise MessageDecodeError(f"a message section holds {type(described).__name__}, not a described value")
    value = described.value
    return bytes(value) if isinstance(value, memoryview) else value


def encode_section(code: int, value: Any) -> Section:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return Section(code, bytes(data.encode()))


def join(sections: list[Section]) -> bytes:
    ordered = sorted(sections, key=lambda section: section.code)  # stable: body sections keep their order
    return b"".join(section.raw for section in ordered)


def split_batch(payload: bytes) -> list[bytes]:
    """Return the individual messages of an SDK batch, or ``[payload]`` for a plain message.

    ``ServiceBusMessageBatch`` is sent as message-format 0x80013700: one envelope whose data sections
    each hold a complete encoded message. Proton's Python API does not expose the transfer's
    message-format, so a batch is recognised by its shape: only data body sections, no application
    properties on the envelope, and every data section decoding as a full AMQP message.
    """
    sections = parse_sections(payload)
    body = [section for section in sections if section.code in BODY_CODES]
    if any(section.code != DATA for section in body):
        return [payload]
    if any(section.code == APPLICATION_PROPERTIES for section in sections):
        return [payload]
    inner = [section_value(section) for section in body]
    return inner if inner and all(_is_complete_message(candidate) for candidate in inner) else [payload]


def _is_complete_message(candidate: bytes) -> bool:
    try:
        return any(section.code in BODY_CODES for section in parse_sections(candidate))
    except MessageDecodeError:
        return False


def stamp(payload: bytes, *, delivery_count: int, annotations: Mapping[str, Any]) -> bytes:
    """Return the payload with the header's delivery-count and broker annotations set."""
    parsed = parse_sections(payload)
    sections = [s for s in parsed if s.code not in (HEADER, MESSAGE_ANNOTATIONS)]
    original = {s.code: s for s in parsed if s.code in (HEADER, MESSAGE_ANNOTATIONS)}
    header = _header_fields(original.get(HEADER))
    header[_DELIVERY_COUNT_INDEX] = uint(delivery_count)
    merged = dict(section_value(original[MESSAGE_ANNOTATIONS])) if MESSAGE_ANNOTATIONS in original else {}
    merged.update({symbol(key): value for key, value in annotations.items()})
    sections += [encode_section(HEADER, header), encode_section(MESSAGE_ANNOTATIONS, merged)]
    return join(sections)


def _header_fields(section: Section | None) -> list[Any]:
    fields = list(section_value(section) or []) if section else []
    return fields + [None] * (_HEADER_FIELDS - len(fields))


def add_application_properties(payload: bytes, properties: Mapping[str, Any]) -> bytes:
    """Return the payload with extra application properties (e.g. DeadLetterReason) merged in."""
    sections = parse_sections(payload)
    current: dict[Any, Any] = {}
    for section in sections:
        if section.code == APPLICATION_PROPERTIES:
            current = dict(section_value(section) or {})
    current.update(properties)
    kept = [section for section in sections if section.code != APPLICATION_PROPERTIES]
    return join([*kept, encode_section(APPLICATION_PROPERTIES, current)])


def epoch_ms(seconds: float) -> timestamp:
    """AMQP timestamp (milliseconds since the epoch), the type Service Bus uses for its time annotations."""
    return timestamp(int(seconds * 1000))


SCHEDULED_ENQUEUE_TIME = "x-opt-scheduled-enqueue-time"


def scheduled_enqueue_time(payload: bytes) -> float | None:
    """The message annotation ``x-opt-scheduled-enqueue-time`` (AMQP timestamp) in epoch seconds, if set."""
    for section in parse_sections(payload):
        if section.code == MESSAGE_ANNOTATIONS:
            value = dict(section_value(section) or {}).get(symbol(SCHEDULED_ENQUEUE_TIME))
            return None if value is None else _epoch_seconds(value)
    return None


def _epoch_seconds(value: Any) -> float:
    if isinstance(value, datetime):  # some encoders hand back a datetime rather than a raw timestamp
        return value.timestamp()
    return int(value) / 1000.0
