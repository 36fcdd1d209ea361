"""Which experiments an upload asks for: the standard datasets it replaces, directly or through an evaluator's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shared.events import DatasetUploaded
from shared.services.experiment_requests import requests_for_upload

FLOWS = Path(__file__).resolve().parents[2] / "flows"


@pytest.fixture
def flows_root(tmp_path: Path) -> Path:
    """math_coding with its test set's ground truth in a file of its own (data/math_test_labels.jsonl)."""
    use_case = tmp_path / "math_coding"
    shutil.copytree(FLOWS / "math_coding", use_case)
    shutil.copy(use_case / "data" / "math_test.jsonl", use_case / "data" / "math_test_labels.jsonl")
    config = use_case / "experiment.yaml"
    text = config.read_text()
    marker = "  - name: math_test_eval\n    reference: math_test\n    source: data/math_test.jsonl\n"
    assert marker in text
    config.write_text(text.replace(marker, marker.replace("math_test.jsonl", "math_test_labels.jsonl")))
    return tmp_path


def upload(blob_name: str) -> DatasetUploaded:
    return DatasetUploaded.create({"container": "datasets", "blob_name": blob_name, "use_case": "math_coding",
                                   "dataset": Path(blob_name).stem, "size_bytes": 1, "etag": "0x1"},
                                  correlation_id="c1")


@pytest.mark.parametrize(("blob_name", "datasets"), [
    ("math_coding/math_train.jsonl", ["math_train"]),  # the standard file, also its evaluator's
    ("math_coding/math_test_labels.jsonl", ["math_test"]),  # only the evaluator's: the run it scores is redone
])
def test_an_upload_requests_the_standard_runs_it_feeds(flows_root: Path, blob_name: str, datasets: list[str]) -> None:
    [request] = requests_for_upload(upload(blob_name), flows_root, "local")
    assert request.payload.use_case == "math_coding"
    assert request.payload.datasets == datasets


def test_an_upload_no_use_case_reads_requests_nothing(flows_root: Path) -> None:
    assert requests_for_upload(upload("math_coding/unused.jsonl"), flows_root, "local") == []
