"""Reading a dataset's rows from wherever its source points: the use case folder, blob storage, or an upload
that replaced it (the experiment.requested event says which blob to use instead)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.experiments.config import DatasetConfig, EvaluatorDatasetConfig, parse_blob_source
from shared.ports import BlobNotFound, BlobStore
from shared.registry.hashing import sha256_stream


class DatasetError(ValueError):
    """A dataset that cannot be read: the experiment fails with this message, it is not retried."""


def parse_jsonl(content: bytes, origin: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{origin} line {number}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{origin} line {number}: each line must be a JSON object")
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
        try:
            content, _ = blobs.read(*blob)
        except BlobNotFound:
            raise DatasetError(f"dataset {dataset.name!r}: blob {source} does not exist") from None
        origin = source
    elif dataset.local_path is not None and source == dataset.source_text:
        if not dataset.local_path.exists():
            raise DatasetError(f"dataset {dataset.name!r}: {dataset.local_path} does not exist")
        content, origin = dataset.local_path.read_bytes(), str(dataset.local_path)
    else:
        raise DatasetError(
            f"dataset {dataset.name!r}: source {source!r} is an Azure ML data asset; the local runner reads local "
            "files and blob:// sources — register-and-run on Azure ML, or point the source at a file"
        )
    return LoadedDataset(name=dataset.name, source_uri=origin, content_hash=sha256_stream([content]),
                         rows=parse_jsonl(content, Path(origin).name if blob is None else origin))
