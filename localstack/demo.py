"""`make demo`: start the local stack (Azurite, broker, the real small model, the local host), upload each use
case's test dataset, follow every upload through the app — experiment, evaluation, gate, registration, approval
(the demo approves as the local approver, over the same HTTP API a person uses), deployment — then the A/B round
(localstack/demo_ab.py: a changed prompt shipped as a second version beside the first, traffic and feedback
through the router, the A/B report's verdict), one post-production evaluation of that traffic with the local model
as judge (localstack/demo_production.py), and copy the reports to out/reports/.

    python -m localstack.demo [--datasets test|all]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import requests
from azure.storage.blob import BlobServiceClient

from genaiops.approvals import decide, signed_in_session
from genaiops.datasets import upload as upload_dataset
from genaiops.describe import line
from genaiops.follow import EXIT_TIMEOUT, follow
from genaiops.runs import download_report
from localstack import demo_ab, demo_production
from localstack.stack import ROOT, LocalStack, StackError
from shared.adapters.azure_blob import AzureBlobStore
from shared.audit import EventJournal
from shared.blob_layout import DATASETS
from shared.events import ApprovalRequested, EvaluationCompleted, Event, ExperimentFailed

TIMEOUT_SECONDS = 1200
DONE = {"deployment.verified", "deployment.unchanged"}  # unchanged: a re-run whose flow already serves
FAILED = {"experiment.failed", "gate.failed", "approval.rejected", "approval.expired", "deployment.rolled_back"}
DEMO_APPROVER = "alice@contoso.com"  # local.settings.example.json's APPROVERS
OUT = ROOT / "out" / "reports"


def ensure_stack(stack: LocalStack, flows: Path) -> bool:
    """Start the stack on a fresh copy of flows/ (`flows`, which the A/B round edits), or reuse a running one;
    True when its host reads `flows`."""
    running = stack.status()
    if all(running.values()):
        print("local stack already running; reusing it")
        return demo_ab.host_reads(stack.state_dir / "local.settings.json", flows)
    if any(running.values()):
        raise StackError(f"local stack is half up ({running}); run `make down` first")
    demo_ab.copy_flows(ROOT / "flows", flows)
    print(f"starting Azurite, the Service Bus broker, the local model and the Functions host (use cases: a copy of "
          f"flows/ in {flows.relative_to(ROOT) if flows.is_relative_to(ROOT) else flows}) ...")
    stack.up()
    return True


def upload(storage: BlobServiceClient, path: Path) -> str:
    """Upload a dataset like a user would (`genaiops upload`); returns the correlation id its events carry."""
    blob_name, correlation_id = upload_dataset(storage, path, use_case=path.parent.parent.name)
    print(f"uploaded {path.relative_to(ROOT)} -> {DATASETS}/{blob_name}")
    return correlation_id


def approve(stack: LocalStack, event: ApprovalRequested) -> None:
    """Play the approver: what a person does on the approval page, over the same HTTP API (`genaiops approvals
    approve`)."""
    approval_id = event.payload.approval_id
    # The notification's link needs no function key: the local host's App Service authentication asks who you are.
    print(f"  approval page: {event.payload.approval_url} (or signed in at once: {stack.base_url}/.auth/login/"
          f"local?user={DEMO_APPROVER}&redirect=/api/approvals/{approval_id}%3Fformat%3Dhtml)")
    session = signed_in_session(stack.base_url, user=DEMO_APPROVER, token=None)
    decided = decide(session, stack.base_url, approval_id, "approve", "approved by the demo")["approval"]
    print(f"  {decided['status']} by {decided['decided_by']}")


def follow_uploads(stack: LocalStack, journal: EventJournal, correlation_ids: list[str],
                   second_round: demo_ab.SecondRound | None) -> dict[str, list[Event]]:
    """Print each run's events as they happen, approve what asks for approval, start the A/B round when its use case
    serves, until every run is done."""

    def on_event(event: Event) -> str | None:
        if isinstance(event, ApprovalRequested):
            approve(stack, event)
        return second_round.on_event(event) if second_round is not None else None

    result = follow(journal, correlation_ids, until=DONE, fail_on=FAILED, timeout=TIMEOUT_SECONDS, describe=line,
                    poll=1, on_event=on_event)
    if result.exit_code == EXIT_TIMEOUT:
        raise StackError(f"no outcome after {TIMEOUT_SECONDS} s; see .localstack/host.log")
    return result.timelines


def ab_round_served(second_round: demo_ab.SecondRound, timelines: dict[str, list[Event]]) -> bool:
    """Whether the A/B round's changed flow got to serve (or already served); says why not otherwise."""
    if second_round.correlation_id is None:
        print(f"\nA/B round: not started ({demo_ab.USE_CASE}'s first version did not get to serve)")
        return False
    events = timelines.get(second_round.correlation_id, [])
    outcome = next((event for event in reversed(events) if event.type in DONE | FAILED), None)
    if outcome is None or outcome.type in FAILED:
        print(f"\nA/B round: no second version to compare: {line(outcome) if outcome else 'no outcome'}")
        return False
    print()
    return True


def download_reports(blobs: AzureBlobStore, timelines: dict[str, list[Event]]) -> list[Path]:
    return [download_report(blobs, event.payload.use_case, event.payload.experiment_id, OUT)
            for events in timelines.values() for event in events
            if isinstance(event, EvaluationCompleted | ExperimentFailed) and event.payload.experiment_id]


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
    flows = stack.state_dir / "flows"
    stack.extra_settings["GENAIOPS_FLOWS_DIR"] = str(flows)
    try:
        with_ab = ensure_stack(stack, flows)
        storage = BlobServiceClient.from_connection_string(stack.storage_connection_string)
        pattern = "*/data/*_test.jsonl" if args.datasets == "test" else "*/data/*.jsonl"
        correlation_ids = [upload(storage, path) for path in sorted((ROOT / "flows").glob(pattern))]
        second_round = demo_ab.SecondRound(storage, flows, correlation_ids, DONE) if with_ab else None
        if not with_ab:
            print("A/B round skipped: the running stack reads flows/ itself (started by `make up`); it edits a copy, "
                  "so `make down` first")
        print("following the events (the local model answers every line of every variant combination) ...")
        blobs = AzureBlobStore(storage)
        timelines = follow_uploads(stack, EventJournal(blobs), correlation_ids, second_round)
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
    if second_round is not None and ab_round_served(second_round, timelines):
        try:
            compared = demo_ab.compare(stack, storage, flows, OUT)
        except requests.RequestException as problem:
            print(f"demo: the A/B round's traffic or report failed: {problem}", file=sys.stderr)
            return 1
        if compared is not None:
            demo_production.evaluate(stack, storage, EventJournal(AzureBlobStore(storage)), OUT)
    print(f"\nthe stack keeps running: functions at {stack.base_url}/api, logs in {stack.state_dir}/; "
          "`make down` stops it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
