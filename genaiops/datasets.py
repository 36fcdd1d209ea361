"""`genaiops upload`: put a dataset where a person would, and name the correlation id its events will carry."""

from __future__ import annotations

from pathlib import Path

from azure.storage.blob import BlobServiceClient

from shared.blob_layout import DATASETS
from shared.services.intake import dataset_uploaded_event


def upload(storage: BlobServiceClient, path: Path, use_case: str, name: str | None = None) -> tuple[str, str]:
    """Upload `path` to datasets/{use_case}/{name}; returns the blob name and the upload's correlation id (derived
    from the blob version, as the blob trigger derives it)."""
    blob_name = f"{use_case}/{name or path.name}"
    content = path.read_bytes()
    etag = storage.get_blob_client(DATASETS, blob_name).upload_blob(content, overwrite=True)["etag"]
    event = dataset_uploaded_event(DATASETS, blob_name, len(content), etag)
    if event is None:
        raise ValueError(f"{path.name} is not a dataset file (.jsonl, .json or .csv): nothing will pick it up")
    return blob_name, event.correlation_id
