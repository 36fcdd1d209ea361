"""Reading a dataset's rows from wherever its source points: the use case folder, blob storage, or an upload
that replaced it (the experiment.requested event says which blob to use instead)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.experiments.config import DatasetConfig, EvaluatorDatasetConfig, parse_blob_source
from shared.ports import BlobNotFound, BlobStore
from shared.registry.hashing import MAX_LINE_BYTES, hashed_lines


class DatasetError(ValueError):
    """A dataset that cannot be read: the experiment fails with this message, it is not retried."""


def parse_jsonl(content: bytes, origin: str) -> list[dict[str, Any]]:
    return _rows(enumerate(content.splitlines(), start=1), origin)


def parse_line(line: bytes | None) -> tuple[dict[str, Any] | None, str]:
    """One JSONL line (None: longer than MAX_LINE_BYTES, see hashed_lines): (the row, "") or (None, what is wrong).
    The intake check and the experiments both read lines with it, so a file intake calls valid always loads."""
    if line is None:
        return None, f"longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB"
    try:
        row = json.loads(line)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, integers past 4,300 digits, deep nesting
        return None, f"not valid JSON ({exc})"
    if not isinstance(row, dict):
        return None, "each line must be a JSON object"
    return row, ""


def _rows(lines: Iterable[tuple[int, bytes | None]], origin: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in lines:
        if line is not None and not line.strip():
            continue
        row, problem = parse_line(line)
        if row is None:
            raise DatasetError(f"{origin} line {number}: {problem}")
        rows.append(row)
    if not rows:
        raise DatasetError(f"{origin} is empty")
    return rows


@dataclass(frozen=True)
class LoadedDataset:
    name: str
    source_uri: str  # where the content came from: blob://... or the local file path
    content_hash: str
    rows: list[dict[str, Any]]


def load_dataset(dataset: DatasetConfig | EvaluatorDatasetConfig, blobs: BlobStore,
                 overrides: Mapping[str, str]) -> LoadedDataset:
    """`overrides` maps a dataset's configured source to the blob URI that replaced it (an upload)."""
    source = overrides.get(dataset.source_text or "", dataset.source_text or "")
    blob = parse_blob_source(source)
    if blob is not None:
        chunks, origin, label = blobs.stream(*blob), source, source
    elif dataset.local_path is not None and source == dataset.source_text:
        if not dataset.local_path.exists():
            raise DatasetError(f"dataset {dataset.name!r}: {dataset.local_path} does not exist")
        chunks, origin, label = _file_chunks(dataset.local_path), str(dataset.local_path), dataset.local_path.name
    else:
        raise DatasetError(
            f"dataset {dataset.name!r}: source {source!r} is an Azure ML data asset; the local runner reads local "
            "files and blob:// sources — register-and-run on Azure ML, or point the source at a file"
        )
    # One streaming pass hashes and parses: only the rows are held, never the file's bytes next to them.
    digest = hashlib.sha256()
    try:
        rows = _rows(hashed_lines(chunks, digest), label)
    except BlobNotFound:
        raise DatasetError(f"dataset {dataset.name!r}: blob {source} does not exist") from None
    return LoadedDataset(name=dataset.name, source_uri=origin, content_hash=f"sha256:{digest.hexdigest()}", rows=rows)


def _file_chunks(path: Path, size: int = 4 * 1024 * 1024) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk
