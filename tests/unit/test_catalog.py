import logging
import shutil
from pathlib import Path

import pytest

from shared.experiments.catalog import find_use_cases, use_cases_for_blob

FLOWS = Path(__file__).parent / "fixtures" / "experiments" / "flows"


def test_use_cases_are_folders_with_an_experiment_yaml_sorted(tmp_path: Path) -> None:
    assert find_use_cases(FLOWS) == ["math_coding", "qa_bot"]  # not_a_use_case has no experiment.yaml
    assert find_use_cases(tmp_path / "missing") == []


def test_a_shared_blob_feeds_every_use_case_that_names_it() -> None:
    # math_coding uses it as a standard dataset and (reused by name) as an evaluator dataset: listed once.
    assert use_cases_for_blob(FLOWS, "datasets", "shared/qa.jsonl", None) == [
        ("math_coding", "shared_qa"),
        ("qa_bot", "shared_qa"),
    ]


def test_an_upload_under_the_use_case_replaces_its_local_file() -> None:
    assert use_cases_for_blob(FLOWS, "datasets", "math_coding/math_train.jsonl", None) == [
        ("math_coding", "math_training"),
    ]


def test_evaluator_datasets_count_too() -> None:
    assert use_cases_for_blob(FLOWS, "datasets", "math_coding/math_eval.jsonl", None) == [
        ("math_coding", "math_training_eval"),
    ]
    # qa_local_eval has no source of its own: it reads qa_local's file, so that upload feeds both.
    assert use_cases_for_blob(FLOWS, "datasets", "qa_bot/qa_local.jsonl", None) == [
        ("qa_bot", "qa_local"),
        ("qa_bot", "qa_local_eval"),
    ]


@pytest.mark.parametrize(
    ("container", "blob_name"),
    [
        ("datasets", "qa_bot/math_train.jsonl"),  # another use case's folder
        ("datasets", "math_coding/other.jsonl"),
        ("uploads", "math_coding/math_train.jsonl"),  # local-file replacement only through the datasets container
        ("reports", "shared/qa.jsonl"),  # blob sources match container and name exactly
        ("datasets", "shared/QA.jsonl"),
    ],
)
def test_unrelated_blobs_match_nothing(container: str, blob_name: str) -> None:
    assert use_cases_for_blob(FLOWS, container, blob_name, None) == []


def test_the_environment_overlay_decides_the_datasets() -> None:
    assert use_cases_for_blob(FLOWS, "datasets", "math_coding/math_pr.jsonl", "pr") == [("math_coding", "math_pr")]
    assert use_cases_for_blob(FLOWS, "datasets", "math_coding/math_pr.jsonl", None) == []
    assert use_cases_for_blob(FLOWS, "datasets", "math_coding/math_train.jsonl", "pr") == []
    assert use_cases_for_blob(FLOWS, "datasets", "shared/qa.jsonl", "pr") == [("qa_bot", "shared_qa")]


def test_a_broken_use_case_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "flows"
    shutil.copytree(FLOWS, root)
    (root / "math_coding" / "experiment.yaml").write_text("name: [broken\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="shared.experiments.catalog"):
        assert use_cases_for_blob(root, "datasets", "shared/qa.jsonl", None) == [("qa_bot", "shared_qa")]
    assert "use case math_coding skipped" in caplog.text
