"""`make demo`: start the local stack, upload the sample datasets of every use case in flows/, and follow
each upload through the app until its outcome is written, then print where everything is."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from localstack.stack import ROOT, LocalStack, StackError
from shared.blob_layout import AUDIT, DATASETS, REPORTS, intake_report_name
from shared.services.intake import dataset_uploaded_event

TIMEOUT_SECONDS = 120


def ensure_stack(stack: LocalStack) -> None:
    running = stack.status()
    if all(running.values()):
        print("local stack already running; reusing it")
        return
    if any(running.values()):
        raise StackError(f"local stack is half up ({running}); run `make down` first")
    stack.up()


def wait_for_report(storage: BlobServiceClient, use_case: str, dataset: str) -> dict:
    blob = storage.get_blob_client(REPORTS, intake_report_name(use_case, dataset))
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if blob.exists():
            return json.loads(blob.download_blob().readall())
        time.sleep(0.5)
    raise StackError(f"no report for {use_case}/{dataset} after {TIMEOUT_SECONDS} s; see .localstack/host.log")


def main() -> int:
    stack = LocalStack()
    try:
        ensure_stack(stack)
        storage = BlobServiceClient.from_connection_string(stack.storage_connection_string)
        datasets = sorted(ROOT.glob("flows/*/data/*.jsonl"))
        for path in datasets:
            use_case, name = path.parent.parent.name, path.stem
            blob_name = f"{use_case}/{path.name}"
            result = storage.get_blob_client(DATASETS, blob_name).upload_blob(path.read_bytes(), overwrite=True)
            print(f"uploaded {path.relative_to(ROOT)} -> {DATASETS}/{blob_name}")
            report = wait_for_report(storage, use_case, name)
            event = dataset_uploaded_event(DATASETS, blob_name, path.stat().st_size, result["etag"])
            print(f"  intake: {report['status']}, {report['rows']} rows, {report['content_hash'][:19]}...")
            print(f"  report: {storage.url}{REPORTS}/{intake_report_name(use_case, name)}")
            if event is not None:
                print(f"  journal: {storage.url}{AUDIT}/{event.correlation_id}/")
    except StackError as problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 1
    print(f"\nthe stack keeps running: functions at {stack.base_url}/api (logs in {Path(stack.state_dir)}/); "
          "`make down` stops it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
