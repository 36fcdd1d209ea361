"""`make demo`: start the local stack (Azurite, broker, the real small model, the local host), upload each use
case's test dataset, follow every upload through the app — experiment, evaluation, gate, registration, approval
(the demo approves as the local approver, over the same HTTP API a person uses) — and copy the reports to
out/reports/.

    python -m localstack.demo [--datasets test|all]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from genaiops.approvals import decide, signed_in_session
from genaiops.datasets import upload as upload_dataset
from genaiops.describe import line
from genaiops.follow import EXIT_TIMEOUT, follow
from genaiops.runs import download_report
from localstack.stack import ROOT, LocalStack, StackError
from shared.adapters.azure_blob import AzureBlobStore
from shared.audit import EventJournal
from shared.blob_layout import DATASETS
from shared.events import Event

TIMEOUT_SECONDS = 1200
DONE = {"deployment.verified", "deployment.unchanged"}  # unchanged: a re-run whose flow already serves
FAILED = {"experiment.failed", "gate.failed", "approval.rejected", "approval.expired", "deployment.rolled_back"}
REPORTED = {"evaluation.completed", "experiment.failed"}
DEMO_APPROVER = "alice@contoso.com"  # local.settings.example.json's APPROVERS
OUT = ROOT / "out" / "reports"


def ensure_stack(stack: LocalStack) -> None:
    running = stack.status()
    if all(running.values()):
        print("local stack already running; reusing it")
        return
    if any(running.values()):
        raise StackError(f"local stack is half up ({running}); run `make down` first")
    print("starting Azurite, the Service Bus broker, the local model and the Functions host ...")
    stack.up()


def upload(storage: BlobServiceClient, path: Path) -> str:
    """Upload a dataset like a user would (`genaiops upload`); returns the correlation id its events carry."""
    blob_name, correlation_id = upload_dataset(storage, path, use_case=path.parent.parent.name)
    print(f"uploaded {path.relative_to(ROOT)} -> {DATASETS}/{blob_name}")
    return correlation_id


def approve(stack: LocalStack, event: Event) -> None:
    """Play the approver: what a person does on the approval page, over the same HTTP API (`genaiops approvals
    approve`)."""
    approval_id = event.payload.approval_id
    # The notification's link needs no function key: the local host's App Service authentication asks who you are.
    print(f"  approval page: {event.payload.approval_url} (or signed in at once: {stack.base_url}/.auth/login/"
          f"local?user={DEMO_APPROVER}&redirect=/api/approvals/{approval_id}%3Fformat%3Dhtml)")
    session = signed_in_session(stack.base_url, user=DEMO_APPROVER, token=None)
    decided = decide(session, stack.base_url, approval_id, "approve", "approved by the demo")["approval"]
    print(f"  {decided['status']} by {decided['decided_by']}")


def follow_uploads(stack: LocalStack, journal: EventJournal, correlation_ids: list[str]) -> dict[str, list[Event]]:
    """Print each run's events as they happen, approve what asks for approval, until every run is done."""
    result = follow(journal, correlation_ids, until=DONE, fail_on=FAILED, timeout=TIMEOUT_SECONDS, describe=line,
                    poll=1, on_event=lambda event: approve(stack, event) if event.type == "approval.requested"
                    else None)
    if result.exit_code == EXIT_TIMEOUT:
        raise StackError(f"no outcome after {TIMEOUT_SECONDS} s; see .localstack/host.log")
    return result.timelines


def download_reports(blobs: AzureBlobStore, timelines: dict[str, list[Event]]) -> list[Path]:
    return [download_report(blobs, event.payload.use_case, event.payload.experiment_id, OUT)
            for events in timelines.values() for event in events
            if event.type in REPORTED and getattr(event.payload, "experiment_id", None)]


def endpoints(storage: BlobServiceClient) -> list[dict]:
    """The local endpoints the app deployed (their state is in the deployments container)."""
    found = []
    for blob in storage.get_container_client("deployments").list_blobs():
        state = json.loads(storage.get_blob_client("deployments", blob.name).download_blob().readall())
        if state.get("kind") == "local-endpoint":
            found.append(state)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localstack.demo")
    parser.add_argument("--datasets", choices=["test", "all"], default="test",
                        help="upload each use case's *_test.jsonl (default, a few minutes on 2 cores) or every file")
    args = parser.parse_args(argv)
    stack = LocalStack()
    try:
        ensure_stack(stack)
        storage = BlobServiceClient.from_connection_string(stack.storage_connection_string)
        pattern = "flows/*/data/*_test.jsonl" if args.datasets == "test" else "flows/*/data/*.jsonl"
        correlation_ids = [upload(storage, path) for path in sorted(ROOT.glob(pattern))]
        print("following the events (the local model answers every line of every variant combination) ...")
        blobs = AzureBlobStore(storage)
        timelines = follow_uploads(stack, EventJournal(blobs), correlation_ids)
        pages = download_reports(blobs, timelines)
    except StackError as problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 1
    print("\nreports (also in Azurite, container `reports`):")
    for page in pages:
        print(f"  file://{page}")
    for endpoint in endpoints(storage):
        print(f"deployed: {endpoint['use_case']} at http://127.0.0.1:{endpoint['router_port']}/score "
              f"(traffic {endpoint['traffic']}); A/B report: {stack.base_url}/api/ab-report/{endpoint['use_case']}/"
              f"{endpoint['endpoint']} (function key: `python -m localstack keys`)")
    print(f"\nthe stack keeps running: functions at {stack.base_url}/api, logs in {stack.state_dir}/; "
          "`make down` stops it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
