"""Dataset intake: an uploaded blob becomes a dataset.uploaded event, and each upload gets a check report
(content hash, rows, columns, line-numbered errors, where it belongs) — a bad dataset, an odd name or an upload
outside any use case yields a readable report, not a crash loop.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from shared.blob_layout import DATASET_SUFFIX, REPORTS, data_asset_name, intake_report_name, upload_location
from shared.events import DatasetUploaded
from shared.events.envelope import derived_event_id
from shared.events.payloads import DatasetUploadedPayload
from shared.experiments.catalog import find_use_cases, use_cases_for_blob
from shared.experiments.datasets import parse_line
from shared.ports import BlobStore, Clock, PreconditionFailed
from shared.registry.hashing import hashed_lines

MAX_REPORTED_ERRORS = 20
# Ranged reads of 2 MiB: the storage SDK holds a few copies of each read, so the chunk sets intake's memory (about
# 11 MB, the same for 10 MB and 1 GB: benchmarks/intake_memory.py); 4 MiB costs 12 MB more and is no faster, 1 MiB
# saves 7 MB and takes 1.5-2x as long.
READ_CHUNK_BYTES = 2 * 1024 * 1024
MAX_COLUMNS = 1000  # distinct column names kept in the report: a file of unique keys must not grow memory
_SOURCE_LIMIT = 256  # the envelope's `source`; the payload keeps the full blob name


class UnusableBlobName(ValueError):
    """A blob name no dataset can come from (e.g. nothing before `.jsonl`): reported, never retried."""


class IntakeReport(BaseModel):
    use_case: str | None  # what the upload is registered under; None when it is refused
    dataset: str
    blob: str
    etag: str
    status: Literal["valid", "invalid", "refused"]
    refusal: str | None = None  # why nothing is registered or run although the content may be fine
    data_name: str | None = None  # the registry name a valid upload is registered under
    content_hash: str | None
    size_bytes: int
    rows: int
    columns: list[str]
    columns_truncated: bool = False
    errors: list[str]
    error_count: int
    checked_at: datetime


def dataset_uploaded_event(container: str, blob_name: str, size: int, etag: str) -> DatasetUploaded | None:
    """The event for an upload, or None for blobs that are not datasets (e.g. a README beside them). Raises
    UnusableBlobName for a dataset file whose name cannot become an event.

    The id is derived from the blob version (name + ETag), so a re-fired trigger publishes the same event
    and the whole chain after it stays exactly-once."""
    if not blob_name.endswith(DATASET_SUFFIX):
        return None
    etag = etag.strip('"')  # SDKs and hosts disagree on quoting; the identity of a version must not
    location = upload_location(blob_name)
    if not location.dataset.rpartition("/")[2]:
        raise UnusableBlobName(f"{container}/{blob_name}: there is no file name before {DATASET_SUFFIX}")
    version_key = derived_event_id(container, blob_name, etag)
    try:
        payload = DatasetUploadedPayload(container=container, blob_name=blob_name, use_case=location.folder,
                                         dataset=location.dataset, size_bytes=size, etag=etag)
    except ValidationError as problem:
        raise UnusableBlobName(f"{container}/{blob_name}: {problem.errors()[0]['msg']}") from None
    event = DatasetUploaded.create(payload, correlation_id=f"upload-{version_key}",
                                   source=f"blob://{container}/{blob_name}"[:_SOURCE_LIMIT])
    return event.model_copy(update={"id": version_key})


def refuse_blob_name(container: str, blob_name: str, size: int, etag: str, reason: str, blobs: BlobStore,
                     clock: Clock) -> IntakeReport:
    """The report for a name that never became an event: written from the blob trigger, the same each time."""
    report = IntakeReport(use_case=None, dataset=upload_location(blob_name).dataset, blob=f"{container}/{blob_name}",
                          etag=etag.strip('"'), status="refused", refusal=reason, content_hash=None,
                          size_bytes=size, rows=0, columns=[], errors=[], error_count=0, checked_at=clock.now())
    _write(report, blob_name, blobs)
    return report


def check_dataset(event: DatasetUploaded, blobs: BlobStore, clock: Clock, flows_root: Path,
                  environment: str | None) -> IntakeReport:
    """Stream the uploaded dataset once, validate every line, decide where it belongs, and write the intake
    report next to reports. Memory: one chunk plus one line, whatever the file's size."""
    payload = event.payload
    owner, refusal = _owner(payload, flows_root, environment)
    digest = hashlib.sha256()
    rows, error_count, truncated = 0, 0, False
    columns: dict[str, None] = {}
    errors: list[str] = []
    # Pinned to the event's version: the hash and the rows describe one version, never a mix of two.
    chunks = blobs.stream(payload.container, payload.blob_name, chunk_size=READ_CHUNK_BYTES, etag=payload.etag)
    try:
        for number, raw in hashed_lines(chunks, digest):
            if raw is not None and not raw.strip():
                continue
            record, problem = parse_line(raw)
            if record is not None:
                rows += 1
                if not columns.keys() >= record.keys():
                    unseen = [key for key in record if key not in columns]
                    room = MAX_COLUMNS - len(columns)
                    columns.update(dict.fromkeys(unseen[:room]))
                    truncated = truncated or len(unseen) > room
                continue
            error_count += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(f"line {number}: {problem}")
    except PreconditionFailed:
        return _superseded(event, clock)
    if rows == 0 and error_count == 0:
        error_count, errors = 1, ["dataset is empty"]
    status: Literal["valid", "invalid", "refused"] = "refused" if refusal else "invalid" if error_count else "valid"
    report = IntakeReport(
        use_case=owner, dataset=payload.dataset, blob=f"{payload.container}/{payload.blob_name}", etag=payload.etag,
        status=status, refusal=refusal,
        data_name=data_asset_name(owner, payload.dataset, payload.blob_name) if status == "valid" and owner else None,
        content_hash=f"sha256:{digest.hexdigest()}", size_bytes=payload.size_bytes, rows=rows,
        columns=list(columns), columns_truncated=truncated, errors=errors,
        error_count=error_count, checked_at=clock.now(),
    )
    _write(report, payload.blob_name, blobs)
    return report


def _superseded(event: DatasetUploaded, clock: Clock) -> IntakeReport:
    """A version replaced before (or while) it was read: the newer version has its own event and writes the report
    at the same place, so this one is returned, not written — it must not overwrite the newer one's."""
    payload = event.payload
    return IntakeReport(use_case=None, dataset=payload.dataset, blob=f"{payload.container}/{payload.blob_name}",
                        etag=payload.etag, status="refused", refusal="replaced by a newer version while it was read",
                        content_hash=None, size_bytes=payload.size_bytes, rows=0, columns=[], errors=[],
                        error_count=0, checked_at=clock.now())


def _owner(payload: DatasetUploadedPayload, flows_root: Path, environment: str | None) -> tuple[str | None, str | None]:
    """(what the upload is registered under, None) or (None, why it is refused). A file in a use case folder —
    sub-folders included, they stay part of the dataset's name — belongs to that use case; a file elsewhere only
    when some use case names it as its `blob://` source (one shared file feeding several use cases)."""
    use_cases = find_use_cases(flows_root)
    if payload.use_case in use_cases:
        return payload.use_case, None
    if use_cases_for_blob(flows_root, payload.container, payload.blob_name, environment):
        return payload.use_case or payload.container, None
    where, known = f"{payload.container}/{payload.blob_name}", ", ".join(use_cases) or "none"
    if payload.use_case is None:
        reason = f"{where} is not in a use case folder"
    else:
        reason = f"{payload.use_case!r} is not a use case and no use case names {where} as a source"
    return None, (f"{reason}: nothing is registered or run. Upload to {payload.container}/<use case>/<file>"
                  f"{DATASET_SUFFIX} (use cases: {known}).")


def _write(report: IntakeReport, blob_name: str, blobs: BlobStore) -> None:
    blobs.write(REPORTS, intake_report_name(blob_name), report.model_dump_json(indent=2).encode())
