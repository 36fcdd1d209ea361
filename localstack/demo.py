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
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from localstack.host.app_service_auth import local_session_token
from localstack.stack import ROOT, LocalStack, StackError
from shared.adapters.azure_blob import AzureBlobStore
from shared.audit import EventJournal
from shared.blob_layout import DATASETS, REPORTS
from shared.events import EXPERIMENT_WORK_EVENTS, Event
from shared.reports.grid import better_direction
from shared.services.intake import dataset_uploaded_event

TIMEOUT_SECONDS = 1200
DONE = {"deployment.verified"}
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
    """Upload a dataset like a user would; returns the correlation id its events carry."""
    use_case = path.parent.parent.name
    blob_name = f"{use_case}/{path.name}"
    content = path.read_bytes()
    etag = storage.get_blob_client(DATASETS, blob_name).upload_blob(content, overwrite=True)["etag"]
    event = dataset_uploaded_event(DATASETS, blob_name, len(content), etag)
    assert event is not None
    print(f"uploaded {path.relative_to(ROOT)} -> {DATASETS}/{blob_name}")
    return event.correlation_id


def approve(stack: LocalStack, event: Event) -> None:
    """Play the approver: what a person does on the approval page, done over the same HTTP API."""
    approval_id = event.payload.approval_id
    token = local_session_token(stack.storage_connection_string, DEMO_APPROVER)
    # The notification's link needs no function key: the local host's App Service authentication asks who you are.
    print(f"  approval page: {event.payload.approval_url} (or signed in at once: {stack.base_url}/.auth/login/"
          f"local?user={DEMO_APPROVER}&redirect=/api/approvals/{approval_id}%3Fformat%3Dhtml)")
    request = urllib.request.Request(
        f"{stack.base_url}/api/approvals/{approval_id}/approve", method="POST",
        data=json.dumps({"comment": "approved by the demo"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        print(f"  approved as {DEMO_APPROVER}: HTTP {response.status}")


def follow(stack: LocalStack, journal: EventJournal, correlation_ids: list[str]) -> dict[str, list[Event]]:
    """Print each run's events as they happen, approve what asks for approval, until every run is done."""
    seen: set[str] = set()
    timelines: dict[str, list[Event]] = {}
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for correlation_id in correlation_ids:
            timelines[correlation_id] = journal.events_for(correlation_id)
            for event in timelines[correlation_id]:
                if event.id not in seen:
                    seen.add(event.id)
                    if event.type in EXPERIMENT_WORK_EVENTS:
                        continue  # one per work item; experiment.progressed says how far they are
                    print(f"  {event.occurred_at:%H:%M:%S} {event.type:<22} {_summary(event)}")
                    if event.type == "approval.requested":
                        approve(stack, event)
        if all(any(e.type in DONE | FAILED for e in events) for events in timelines.values()):
            return timelines
        time.sleep(1)
    raise StackError(f"no outcome after {TIMEOUT_SECONDS} s; see .localstack/host.log")


def _best_run(payload: dict) -> str:
    scored = [run for run in payload["runs"] if run["metrics"]]
    if not scored:
        return f"{payload['use_case']}: {len(payload['runs'])} runs"
    metric = sorted(scored[0]["metrics"])[0]  # the first metric by name, in its better direction
    sign = 1 if better_direction(metric) == "higher" else -1
    best = max(scored, key=lambda run: sign * run["metrics"][metric])
    return f"{payload['use_case']}: {len(payload['runs'])} runs; best by {metric}: {best['variant']} {best['metrics']}"


# The first key a payload has picks how its line reads.
SUMMARIES: list[tuple[str, Callable[[dict], str]]] = [
    ("runs", _best_run),
    ("lines_done", lambda p: f"{p['use_case']} {p['stage']}: {p['lines_done']}/{p['lines_total']} lines "
                             f"({p['items_done']}/{p['items_total']} work items)"),
    ("traffic", lambda p: f"{p['use_case']}: {p['endpoint']} traffic {p['traffic']}"),
    ("checks_passed", lambda p: f"{p['deployment']}: {p['checks_passed']} checks passed, {p['checks_failed']} failed"),
    ("flow_version", lambda p: f"{p['use_case']}: {p['flow_name']} v{p['flow_version']}"),
    ("content_hash", lambda p: f"{p['name']} v{p['version']} ({'new' if p['created'] else 'unchanged'})"),
    ("primary_metric", lambda p: f"{p['use_case']}: best {p['best_variant']} {p['primary_metric']}={p['best_value']}"),
    ("reasons", lambda p: "; ".join(p["reasons"])[:300]),
]


def _summary(event: Event) -> str:
    payload = event.payload.model_dump()
    for key, summarize in SUMMARIES:
        if key in payload:
            return summarize(payload)
    return str(payload.get("use_case") or payload.get("blob_name") or "")


def download_reports(storage: BlobServiceClient, timelines: dict[str, list[Event]]) -> list[Path]:
    pages = []
    for events in timelines.values():
        for event in events:
            experiment_id = getattr(event.payload, "experiment_id", None)
            if event.type not in REPORTED or not experiment_id:
                continue
            prefix = f"{event.payload.use_case}/{experiment_id}/"
            for blob in storage.get_container_client(REPORTS).list_blobs(name_starts_with=prefix):
                target = OUT / blob.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(storage.get_blob_client(REPORTS, blob.name).download_blob().readall())
            pages.append(OUT / prefix / "summary.html")
    return pages


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
        timelines = follow(stack, EventJournal(AzureBlobStore(storage)), correlation_ids)
        pages = download_reports(storage, timelines)
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
