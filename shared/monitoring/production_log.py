"""The ProductionLog port: every request an endpoint's deployments served — request id, deployment, inputs,
outputs, latency, status — read back over a time window.

Adapters: `BlobProductionLog` here reads what the local A/B router writes (localstack/serving/production_writer.py)
to `production/{use_case}/{endpoint}/{yyyy}/{mm}/{dd}/…jsonl`; `AzureMLProductionLog`
(shared/monitoring/azureml_production_log.py) reads what an Azure ML endpoint's data collector writes.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, Field, ValidationError

from shared.blob_layout import PRODUCTION, production_day_prefix
from shared.ports import BlobNotFound, BlobStore
from shared.redaction import REDACTED, redact

MAX_FIELD_CHARS = 16_384  # inputs or outputs larger than this are logged truncated: a log line stays small


class ProductionLine(BaseModel):
    """One request a deployment served, as the endpoint saw it. Secrets are masked before it is written."""

    time: datetime
    use_case: str
    endpoint: str
    request_id: str
    deployment: str | None = Field(description="None when no deployment could be chosen")
    pinned: bool = Field(default=False, description="routed by the azureml-model-deployment header (smoke tests)")
    status: int | None = Field(default=None, description="HTTP status; None when the log does not record it")
    latency_ms: float | None = None
    inputs: Any = None
    outputs: Any = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is not None and not 200 <= self.status < 300


def loggable(value: Any, mask_fields: Collection[str] = ()) -> Any:
    """A request or answer body as it may be stored: secrets and the `mask_fields` (personal data, any depth,
    names compared case-insensitively) masked, and cut when it is very large."""
    masked = _mask(redact(value), {name.lower() for name in mask_fields}) if mask_fields else redact(value)
    text = json.dumps(masked, ensure_ascii=False, default=str)
    return masked if len(text) <= MAX_FIELD_CHARS else {"truncated": True, "head": text[:MAX_FIELD_CHARS]}


def _mask(value: Any, fields: set[str]) -> Any:
    if isinstance(value, dict):
        return {key: REDACTED if str(key).lower() in fields else _mask(item, fields) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask(item, fields) for item in value]
    return value


class ProductionLog(Protocol):
    def lines(self, use_case: str, endpoint: str, start: datetime, end: datetime) -> list[ProductionLine]:
        """The requests `endpoint` served from `start` to `end` (inclusive), oldest first."""
        ...


def days(start: datetime, end: datetime) -> Iterator[datetime]:
    """Every UTC day the window touches (a path segment of both layouts)."""
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= end:
        yield day
        day += timedelta(days=1)


class BlobProductionLog:
    """The local endpoints' production log in the PRODUCTION container. Blob names carry the hour, so only the
    hours of the window are read; a torn line (a writer died mid-append) is skipped."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def lines(self, use_case: str, endpoint: str, start: datetime, end: datetime) -> list[ProductionLine]:
        found: list[ProductionLine] = []
        for day in days(start, end):
            prefix = production_day_prefix(use_case, endpoint, day)
            for info in self.blobs.list(PRODUCTION, prefix):
                hour = int(info.name[len(prefix):][:2])
                if not start.replace(minute=0, second=0, microsecond=0) <= day.replace(hour=hour) <= end:
                    continue
                try:
                    data, _ = self.blobs.read(PRODUCTION, info.name)
                except BlobNotFound:  # expired meanwhile
                    continue
                found += [line for line in parse_lines(data) if start <= line.time <= end]
        # An append retried after a lost answer may have landed twice: one line per request.
        unique = {(line.request_id, line.time): line for line in found}
        return sorted(unique.values(), key=lambda line: line.time)


def parse_lines(data: bytes) -> list[ProductionLine]:
    parsed = []
    for raw in data.splitlines():
        if raw.strip():
            try:
                parsed.append(ProductionLine.model_validate_json(raw))
            except ValidationError:
                continue
    return parsed
