"""Where everything lives in blob storage — one place, so the README's layout table and the code agree."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

DATASETS = "datasets"      # uploads: datasets/{use_case}/{dataset}.jsonl (blob trigger)
RUNS = "runs"              # runs/{use_case}/{experiment_id}/...
REPORTS = "reports"        # reports/{use_case}/...
REGISTRY = "registry"      # local data + flow registry
APPROVALS = "approvals"    # approvals/{approval_id}.json
DEPLOYMENTS = "deployments"
FEEDBACK = "feedback"
AUDIT = "audit"            # audit/{correlation_id}/{time}-{type}-{id}.json: every event published
SYSTEM = "system"          # idempotency records, dead letters, heartbeats

ALL_CONTAINERS = (DATASETS, RUNS, REPORTS, REGISTRY, APPROVALS, DEPLOYMENTS, FEEDBACK, AUDIT, SYSTEM)

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def safe_segment(value: str) -> str:
    """One path segment from an arbitrary id: no slashes or traversal, stable for the same input."""
    cleaned = _UNSAFE.sub("_", value).strip("._") or "_"
    return cleaned[:200]


def audit_name(correlation_id: str, occurred_at: datetime, event_type: str, event_id: str) -> str:
    stamp = occurred_at.strftime("%Y%m%dT%H%M%S%fZ")
    return f"{safe_segment(correlation_id)}/{stamp}-{event_type}-{safe_segment(event_id)}.json"


def idempotency_name(scope: str, key: str) -> str:
    return f"idempotency/{safe_segment(scope)}/{safe_segment(key)}.json"


def message_key(message_id: str) -> str:
    """A name segment for any message id that two ids never share (safe_segment collapses `a/1`, `a_1`, `a?1`):
    the sha256 of its UTF-8 bytes (lone surrogates included), 64 characters however long the id is."""
    return hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()


def dead_letter_prefix(queue: str, message_id: str) -> str:
    """Every dead-letter record of one message id (one per broker sequence number)."""
    return f"deadletter/{safe_segment(queue)}/{message_key(message_id)}/"


def dead_letter_name(queue: str, message_id: str, sequence_number: int | None = None) -> str:
    """One record per message: the id's hash, then the broker's sequence number (two messages that share an id
    still get two records; a redelivery of the same message writes the same record again)."""
    leaf = "unsequenced" if sequence_number is None else f"{sequence_number:020d}"
    return f"{dead_letter_prefix(queue, message_id)}{leaf}.json"


def intake_report_name(use_case: str, dataset: str) -> str:
    return f"{safe_segment(use_case)}/datasets/{safe_segment(dataset)}/intake.json"


def decision_name(use_case: str, experiment_id: str) -> str:
    return f"{safe_segment(use_case)}/{safe_segment(experiment_id)}/decision.json"


def deployed_state_name(use_case: str) -> str:
    """What serves production now (flow version + the metrics it was approved on); written by deployments."""
    return f"{safe_segment(use_case)}/production.json"


def experiment_prefix(use_case: str, experiment_id: str) -> str:
    """The experiment store's folder in RUNS: plan.json, data/, lines/, items/, progress.json, result.json."""
    return f"{safe_segment(use_case)}/{safe_segment(experiment_id)}/"


HEARTBEAT_NAME = "heartbeat/timer.json"


def deployment_record_name(use_case: str, request_id: str) -> str:
    """A deployment in progress (the state machine polling its long operations), per deployment.requested id."""
    return f"{safe_segment(use_case)}/operations/{safe_segment(request_id)}.json"
