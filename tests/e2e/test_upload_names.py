"""Odd blob names and misplaced uploads through the real blob trigger of the local host (issue 12): every upload
gets its intake report — none is retried into poison — names Azure accepts are registered under a valid,
collision-free registry name, and uploads outside a known use case register nothing and request nothing."""

from __future__ import annotations

import json

import pytest
from azure.storage.blob import BlobServiceClient

from localstack.stack import LocalStack
from shared.blob_layout import REGISTRY, REPORTS, SYSTEM, idempotency_name, intake_report_name
from shared.registry.port import validate_name
from shared.services.intake import dataset_uploaded_event
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
CONTENT = b'{"question": "1+1", "answer": "2"}\n{"question": "2+2", "answer": "4"}\n'
ACCEPTED = ["math_coding/my data {u}.jsonl", "math_coding/données 日本 {u}.jsonl", "/math_coding/lead{u}.jsonl",
            "math_coding/{u}" + "x" * 990 + ".jsonl", "math_coding/new\nline{u}.jsonl",
            "math_coding/archive/2026/deep{u}.jsonl"]
REFUSED = ["toplevel{u}.jsonl", "no_such_use_case/x{u}.jsonl", "nested{u}/dir/deep.jsonl"]
UNUSABLE = "math_coding/{u}/.jsonl"


def read_json(storage: BlobServiceClient, container: str, name: str) -> dict:
    return json.loads(storage.get_blob_client(container, name).download_blob().readall())


def handled(storage: BlobServiceClient, event_id: str) -> list[str] | None:
    """The follow-up event types on_dataset_uploaded stored for this event, once it has completed."""
    record = read_json(storage, SYSTEM, idempotency_name("on_dataset_uploaded", event_id))
    return [json.loads(body)["type"] for body in record["result"]] if record["status"] == "completed" else None


def test_every_upload_name_gets_its_report_and_only_use_case_uploads_are_registered(
        stack: LocalStack, storage: BlobServiceClient, unique: str) -> None:
    names = {template: template.format(u=unique) for template in [*ACCEPTED, *REFUSED, UNUSABLE]}
    etags = {name: storage.get_blob_client("datasets", name).upload_blob(CONTENT, overwrite=True)["etag"]
             for name in names.values()}

    for template in ACCEPTED:
        name = names[template]
        event = dataset_uploaded_event("datasets", name, len(CONTENT), etags[name])
        assert event is not None
        follow_ups = wait_for(lambda e=event: handled(storage, e.id), timeout=60, what=f"handling of {name!r}")
        assert follow_ups == ["data.registered"]  # no experiment: no use case reads a file of this name
        report = read_json(storage, REPORTS, intake_report_name(name))
        assert (report["status"], report["use_case"], report["rows"]) == ("valid", "math_coding", 2)
        validate_name(report["data_name"])
        latest = read_json(storage, REGISTRY, f"data/{report['data_name']}/latest.json")
        assert latest["source_uri"] == f"blob://datasets/{name}"

    data_names = [read_json(storage, REPORTS, intake_report_name(names[t]))["data_name"] for t in ACCEPTED]
    assert len(set(data_names)) == len(ACCEPTED)
    # Sub-folders of a use case stay part of the dataset (they never replace a file of the same name above them).
    nested = read_json(storage, REPORTS, intake_report_name(names[ACCEPTED[-1]]))
    assert nested["dataset"] == f"archive/2026/deep{unique}"

    registered_sources = {read_json(storage, REGISTRY, blob.name)["source_uri"]
                          for blob in storage.get_container_client(REGISTRY).list_blobs(name_starts_with="data/")
                          if blob.name.endswith("/latest.json")}
    for template in REFUSED:
        name = names[template]
        event = dataset_uploaded_event("datasets", name, len(CONTENT), etags[name])
        assert event is not None
        assert wait_for(lambda e=event: handled(storage, e.id) == [], timeout=60, what=f"handling of {name!r}")
        report = read_json(storage, REPORTS, intake_report_name(name))
        assert (report["status"], report["use_case"], report["data_name"]) == ("refused", None, None)
        assert "nothing is registered or run" in report["refusal"]
        assert "math_coding" in report["refusal"]
        assert report["rows"] == 2  # the content was still checked, so the person learns everything at once
        assert f"blob://datasets/{name}" not in registered_sources

    # A name no dataset can come from: refused by the trigger itself, reported, and the blob is not poisoned.
    unusable = names[UNUSABLE]
    report = wait_for(lambda: read_json(storage, REPORTS, intake_report_name(unusable)), what="the refusal")
    assert report["status"] == "refused"
    assert "no file name" in report["refusal"]
    receipts = storage.get_container_client("azure-webjobs-hosts").list_blobs(name_starts_with="blobreceipts/")
    statuses = [read_json(storage, "azure-webjobs-hosts", receipt.name)["status"] for receipt in receipts
                if unique in receipt.name or "#sha256/" in receipt.name]
    assert len(statuses) == len(names)
    assert set(statuses) == {"succeeded"}
