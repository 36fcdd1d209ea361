"""An experiment's dataset is hashed and parsed in one streaming pass, from the use case folder or from a blob that
replaced it: the same rows and hash either way, and a missing blob or an overlong line is a DatasetError."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from shared.experiments.config import load_experiment
from shared.experiments.datasets import DatasetError, load_dataset
from shared.ports import BlobStore
from shared.registry.hashing import MAX_LINE_BYTES

pytestmark = pytest.mark.azurite
FLOWS = Path(__file__).resolve().parents[2] / "flows"


def test_a_file_and_the_blob_replacing_it_give_the_same_rows_and_hash(blob_store: BlobStore, unique: str) -> None:
    dataset = load_experiment(FLOWS / "math_coding", "local").datasets[0]
    assert dataset.local_path is not None
    content = dataset.local_path.read_bytes()
    from_file = load_dataset(dataset, blob_store, {})
    assert from_file.content_hash == "sha256:" + hashlib.sha256(content).hexdigest()
    assert from_file.rows == [json.loads(line) for line in content.splitlines() if line.strip()]

    name = f"math_coding/replaced{unique}.jsonl"
    blob_store.write("datasets", name, content)
    from_blob = load_dataset(dataset, blob_store, {dataset.source_text or "": f"blob://datasets/{name}"})
    assert (from_blob.content_hash, from_blob.rows, from_blob.source_uri) == (
        from_file.content_hash, from_file.rows, f"blob://datasets/{name}")


def test_a_missing_blob_or_an_overlong_line_fails_with_the_reason(blob_store: BlobStore, unique: str) -> None:
    dataset = load_experiment(FLOWS / "math_coding", "local").datasets[0]
    source = dataset.source_text or ""
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(dataset, blob_store, {source: f"blob://datasets/math_coding/missing{unique}.jsonl"})
    name = f"math_coding/long{unique}.jsonl"
    blob_store.write("datasets", name, b'{"a": 1}\n{"b": "' + b"x" * MAX_LINE_BYTES + b'"}\n')
    with pytest.raises(DatasetError, match="line 2: longer than 1 MiB"):
        load_dataset(dataset, blob_store, {source: f"blob://datasets/{name}"})
