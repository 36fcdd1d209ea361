"""Dataset intake: an uploaded blob becomes a dataset.uploaded event, and each upload gets a check report
(content hash, rows, columns, line-numbered errors) — a bad dataset yields a readable report, not a crash loop.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from shared.blob_layout import REPORTS, intake_report_name
from shared.events import DatasetUploaded
from shared.events.envelope import derived_event_id
from shared.ports import BlobStore, Clock

MAX_REPORTED_ERRORS = 20
DATASET_SUFFIXES = (".jsonl",)


class IntakeReport(BaseModel):
    use_case: str
    dataset: str
    blob: str
    etag: str
    status: Literal["valid", "invalid"]
    content_hash: str
    size_bytes: int
    rows: int
    columns: list[str]
    errors: list[str]
    error_count: int
    checked_at: datetime


def dataset_uploaded_event(container: str, blob_name: str, size: int, etag: str) -> DatasetUploaded | None:
    """The event for an upload, or None for blobs that are not datasets (e.g. a README beside them).

    The id is derived from the blob version (name + ETag), so a re-fired trigger publishes the same event
    and the whole chain after it stays exactly-once."""
    if not blob_name.endswith(DATASET_SUFFIXES):
        return None
    etag = etag.strip('"')  # SDKs and hosts disagree on quoting; the identity of a version must not
    folder, file_name = posixpath.split(blob_name)
    version_key = derived_event_id(container, blob_name, etag)
    event = DatasetUploaded.create(
        {
            "container": container,
            "blob_name": blob_name,
            "use_case": folder.split("/")[0] if folder else None,
            "dataset": posixpath.splitext(file_name)[0],
            "size_bytes": size,
            "etag": etag,
        },
        correlation_id=f"upload-{version_key}",
        source=f"blob://{container}/{blob_name}",
    )
    return event.model_copy(update={"id": version_key})


def _lines(chunks: Iterable[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    """Split a chunk stream into lines while hashing it: one pass, memory bounded by the longest line."""
    pending = b""
    for chunk in chunks:
        digest.update(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def check_dataset(event: DatasetUploaded, blobs: BlobStore, clock: Clock) -> IntakeReport:
    """Stream the uploaded dataset once, validate every line, and write the intake report next to reports."""
    payload = event.payload
    digest = hashlib.sha256()
    rows, error_count = 0, 0
    columns: dict[str, None] = {}
    errors: list[str] = []
    for number, raw in enumerate(_lines(blobs.stream(payload.container, payload.blob_name), digest), start=1):
        if not raw.strip():
            continue
        record, problem = _parse_line(raw)
        if record is not None:
            rows += 1
            columns.update(dict.fromkeys(record))
            continue
        error_count += 1
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append(f"line {number}: {problem}")
    if rows == 0 and error_count == 0:
        error_count, errors = 1, ["dataset is empty"]
    report = IntakeReport(
        use_case=payload.use_case or "_unassigned", dataset=payload.dataset,
        blob=f"{payload.container}/{payload.blob_name}", etag=payload.etag,
        status="invalid" if error_count else "valid", content_hash=f"sha256:{digest.hexdigest()}",
        size_bytes=payload.size_bytes, rows=rows, columns=list(columns), errors=errors,
        error_count=error_count, checked_at=clock.now(),
    )
    blobs.write(REPORTS, intake_report_name(report.use_case, report.dataset), report.model_dump_json(indent=2).encode())
    return report


def _parse_line(raw: bytes) -> tuple[dict[str, object] | None, str]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"not valid JSON ({exc})"
    if not isinstance(value, dict):
        return None, "each line must be a JSON object"
    return value, ""
