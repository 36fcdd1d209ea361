"""Names derived from upload blob names: every blob name Azure accepts yields a registry name Azure ML accepts and a
report name storage accepts, the same every time, and no two uploads share either (issue 12)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.blob_layout import data_asset_name, intake_report_name, upload_location
from shared.registry.port import validate_name
from shared.services.intake import UnusableBlobName, dataset_uploaded_event

# Segments Azure accepts: any characters but '/', not '.' or '..' (the service refuses those).
segment = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), min_size=1,
                  max_size=60).filter(lambda part: part not in {".", ".."})
blob_names = st.lists(segment, min_size=1, max_size=4).map(lambda parts: "/".join(parts) + ".jsonl")


def names_of(blob_name: str) -> tuple[str, str]:
    location = upload_location(blob_name)
    return data_asset_name(location.folder or "datasets", location.dataset, blob_name), intake_report_name(blob_name)


@pytest.mark.parametrize(("blob_name", "folder", "dataset", "data_name", "report"), [
    ("math_coding/math_test.jsonl", "math_coding", "math_test", "math_coding-math_test",
     "math_coding/datasets/math_test/intake.json"),
    ("nested/dir/deep.jsonl", "nested", "dir/deep", "nested-dir.deep-", "nested/datasets/dir.deep-"),
    ("toplevel.jsonl", None, "toplevel", "datasets-toplevel-", "_toplevel/datasets/toplevel/intake.json"),
    ("/math_coding/lead.jsonl", "math_coding", "lead", "math_coding-lead-", "math_coding/datasets/lead-"),
    ("math_coding/my data.jsonl", "math_coding", "my data", "math_coding-my_data-", "math_coding/datasets/my_data-"),
])
def test_plain_names_read_as_before_and_unusual_ones_keep_a_readable_part(
        blob_name: str, folder: str | None, dataset: str, data_name: str, report: str) -> None:
    location = upload_location(blob_name)
    assert (location.folder, location.dataset) == (folder, dataset)
    derived_data, derived_report = names_of(blob_name)
    assert derived_data.startswith(data_name)
    assert derived_report.startswith(report)


def test_names_that_read_alike_stay_apart() -> None:
    alike = ["math_coding/my data.jsonl", "math_coding/my_data.jsonl", "math_coding/my/data.jsonl",
             "math_coding/my-data.jsonl", "/math_coding/my_data.jsonl", "math_coding//my_data.jsonl",
             "math_coding/my_data.jsonl/", "math_coding/my.data.jsonl"]
    data_names, reports = zip(*(names_of(name) for name in alike), strict=True)
    assert len(set(data_names)) == len(alike)
    assert len(set(reports)) == len(alike)


def test_the_dash_that_joins_use_case_and_dataset_cannot_be_ambiguous() -> None:
    assert data_asset_name("qa", "v2-test") != data_asset_name("qa-v2", "test") == "qa-v2-test"


@settings(max_examples=400, deadline=None)
@given(st.lists(blob_names, min_size=2, max_size=6, unique=True))
def test_any_azure_blob_name_yields_valid_and_distinct_names(names: list[str]) -> None:
    derived = [names_of(name) for name in names]
    for data_name, report in derived:
        validate_name(data_name)  # Azure ML's asset name rule, as the registry port enforces it
        assert len(report) <= 400
        assert "//" not in report
    assert len({data for data, _ in derived}) == len(names)
    assert len({report for _, report in derived}) == len(names)
    assert [names_of(name) for name in names] == derived  # deterministic


@settings(max_examples=200, deadline=None)
@given(blob_names)
def test_any_azure_blob_name_becomes_an_event(blob_name: str) -> None:
    if blob_name.rpartition("/")[2] == ".jsonl":  # the one kind of name no dataset can come from
        with pytest.raises(UnusableBlobName, match="no file name"):
            dataset_uploaded_event("datasets", blob_name, 10, '"0x1"')
        return
    event = dataset_uploaded_event("datasets", blob_name, 10, '"0x1"')
    assert event is not None
    assert event.payload.blob_name == blob_name


def test_a_900_character_name_becomes_an_event_with_a_bounded_source() -> None:
    event = dataset_uploaded_event("datasets", "math_coding/" + "x" * 900 + ".jsonl", 10, "0x1")
    assert event is not None
    assert len(event.source) <= 256
    assert len(event.payload.blob_name) == 918
