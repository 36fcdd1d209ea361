"""Where everything lives in blob storage — one place, so the README's layout table and the code agree."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import NamedTuple

DATASETS = "datasets"      # uploads: datasets/{use_case}/{dataset}.jsonl (blob trigger)
RUNS = "runs"              # runs/{use_case}/{experiment_id}/...
REPORTS = "reports"        # reports/{use_case}/...
REGISTRY = "registry"      # local data + flow registry
APPROVALS = "approvals"    # approvals/{approval_id}.json
DEPLOYMENTS = "deployments"
FEEDBACK = "feedback"
AUDIT = "audit"            # audit/{correlation_id}/{time}-{type}-{id}.json: every event published
SYSTEM = "system"          # idempotency records, dead letters, heartbeats
PRODUCTION = "production"  # production/{use_case}/{endpoint}/{yyyy}/{mm}/{dd}/{HH}-{writer}-{part}.jsonl
CANDIDATES = "datasets-candidates"  # {use_case}/{endpoint}-{time}.jsonl: production lines for a person to label

ALL_CONTAINERS = (DATASETS, RUNS, REPORTS, REGISTRY, APPROVALS, DEPLOYMENTS, FEEDBACK, AUDIT, SYSTEM, PRODUCTION,
                  CANDIDATES)

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def safe_segment(value: str) -> str:
    """One path segment from an arbitrary id: no slashes or traversal, stable for the same input."""
    cleaned = _UNSAFE.sub("_", value).strip("._") or "_"
    return cleaned[:200]


AUDIT_STAMP = "%Y%m%dT%H%M%S%fZ"  # sorts by time, no '-' inside
AUDIT_DEAD_LETTER = "deadletter"  # the kind of a dead-letter note in the journal; never an event type (`stage.outcome`)


def audit_prefix(correlation_id: str) -> str:
    """One run's journal in AUDIT: its events and dead-letter notes, named so that they sort by time."""
    return f"{safe_segment(correlation_id)}/"


def audit_name(correlation_id: str, occurred_at: datetime, event_type: str, event_id: str) -> str:
    stamp = occurred_at.strftime(AUDIT_STAMP)
    return f"{audit_prefix(correlation_id)}{stamp}-{event_type}-{safe_segment(event_id)}.json"


def audit_dead_letter_name(correlation_id: str, dead_lettered_at: datetime, message_key: str,
                           sequence_number: int | None) -> str:
    sequence = "unsequenced" if sequence_number is None else str(sequence_number)
    stamp = dead_lettered_at.strftime(AUDIT_STAMP)
    return f"{audit_prefix(correlation_id)}{stamp}-{AUDIT_DEAD_LETTER}-{message_key}-{sequence}.json"


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


DATASET_SUFFIX = ".jsonl"
TOP_LEVEL = "_toplevel"  # reports of uploads in no folder; '_' never starts a plain segment, so no folder maps here
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}(?<!\.)")
# A registry name is `{owner}-{dataset}`: '-' may appear in the owner (a use case folder) but not in the dataset,
# so the last '-' splits the two and no two pairs share a name. Azure ML: 1-255 of these, no leading '-_.', no
# trailing '.'.
_PLAIN_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PLAIN_DATASET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._]*(?<!\.)")
_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_DIGEST_CHARS = 16  # 64 bits of sha256: what tells apart names that read alike
REGISTRY_NAME_LIMIT = 255


class UploadLocation(NamedTuple):
    """What an upload's blob name says: `datasets/{folder}/{dataset}.jsonl`; sub-folders stay in the dataset."""

    folder: str | None  # the first folder, None for a file at the top of the container
    dataset: str        # the path below that folder without `.jsonl`, '/' between sub-folders
    canonical: bool     # the name is exactly `{folder}/{dataset}.jsonl` (no leading, doubled or trailing '/')


def upload_location(blob_name: str) -> UploadLocation:
    """Empty path segments (a leading '/', '//') are skipped to find the folder a person meant; `canonical` says
    they were there, so names derived from the upload can tell it apart from the clean spelling."""
    parts = [part for part in blob_name.split("/") if part]
    leaf = parts[-1].removesuffix(DATASET_SUFFIX) if parts else ""
    folder, below = (parts[0], parts[1:-1]) if len(parts) > 1 else (None, [])
    dataset = "/".join([*below, leaf])
    expected = f"{folder}/{dataset}{DATASET_SUFFIX}" if folder else f"{dataset}{DATASET_SUFFIX}"
    return UploadLocation(folder, dataset, blob_name == expected)


def _name_key(readable: str, plain: bool, identity: str, limit: int) -> str:
    """`readable` itself when it is plain and short enough; otherwise its usable characters ('/' as '.') plus a
    hash of `identity`, so names that read alike (`my data`, `my_data`, `my/data`) stay apart."""
    if plain and len(readable) <= limit:
        return readable
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    cleaned = _NOT_NAME.sub("_", readable.replace("/", ".")).strip("._-")[: limit - _DIGEST_CHARS - 1].rstrip(".")
    return f"{cleaned}-{digest}" if cleaned else digest


def data_asset_name(owner: str, dataset: str, blob_name: str | None = None) -> str:
    """The registry name of a dataset: `{owner}-{dataset}` when that is a plain Azure ML asset name and the data
    came from `{owner}/{dataset}.jsonl` (or from an experiment.yaml, `blob_name` None); otherwise the readable
    part plus a hash of all three — deterministic, and never the name of another (owner, dataset, blob)."""
    readable = f"{owner}-{dataset}"
    plain = (bool(_PLAIN_OWNER.fullmatch(owner)) and bool(_PLAIN_DATASET.fullmatch(dataset))
             and (blob_name is None or blob_name == f"{owner}/{dataset}{DATASET_SUFFIX}"))
    return _name_key(readable, plain, "\0".join([owner, dataset, blob_name or ""]), REGISTRY_NAME_LIMIT)


def intake_report_name(blob_name: str) -> str:
    """`{folder}/datasets/{dataset}/intake.json` in REPORTS for an upload; unusual names get a hashed key (see
    `_name_key`), so two uploads never share a report and the name stays far below Azure's 1,024 characters."""
    location = upload_location(blob_name)
    folder = TOP_LEVEL if location.folder is None else _name_key(
        location.folder, bool(_PLAIN_SEGMENT.fullmatch(location.folder)), location.folder, 100)
    dataset = _name_key(location.dataset, location.canonical and bool(_PLAIN_SEGMENT.fullmatch(location.dataset)),
                        blob_name, 200)
    return f"{folder}/datasets/{dataset}/intake.json"


def decision_name(use_case: str, experiment_id: str) -> str:
    return f"{experiment_prefix(use_case, experiment_id)}decision.json"


def deployed_state_name(use_case: str) -> str:
    """What serves production now (flow version + the metrics it was approved on); written by deployments."""
    return f"{safe_segment(use_case)}/production.json"


def experiment_prefix(use_case: str, experiment_id: str) -> str:
    """An experiment's folder: in RUNS the store (plan.json, data/, lines/, items/, progress.json, result.json), in
    REPORTS its reports (summary.html, results.csv, metrics.csv, experiment.json) and the gate's decision.json."""
    return f"{safe_segment(use_case)}/{safe_segment(experiment_id)}/"


def deployment_reports_prefix(use_case: str, endpoint: str) -> str:
    """An endpoint's reports in REPORTS: the A/B report, and a folder per deployment with its smoke report."""
    return f"{safe_segment(use_case)}/deployments/{safe_segment(endpoint)}/"


def smoke_report_name(use_case: str, endpoint: str, deployment: str) -> str:
    return f"{deployment_reports_prefix(use_case, endpoint)}{safe_segment(deployment)}/smoke.json"


def feedback_prefix(use_case: str, endpoint: str) -> str:
    """An endpoint's feedback in FEEDBACK, a folder per day."""
    return f"{safe_segment(use_case)}/{safe_segment(endpoint)}/"


def feedback_name(use_case: str, endpoint: str, received_at: datetime, feedback_id: str) -> str:
    return f"{feedback_prefix(use_case, endpoint)}{received_at.strftime('%Y-%m-%d')}/{safe_segment(feedback_id)}.json"


def registry_pointer_name(kind: str, name: str) -> str:
    """The local registry's latest-version pointer of a data or flow name (names are registry-checked)."""
    return f"{kind}/{name}/latest.json"


def registry_version_name(kind: str, name: str, version: str) -> str:
    return f"{kind}/{name}/versions/{version}.json"


def registry_flow_files_prefix(name: str, version: str) -> str:
    """A registered flow version's files, stored as they were hashed."""
    return f"flows/{name}/{version}/files/"


HEARTBEAT_NAME = "heartbeat/timer.json"


def deployment_record_name(use_case: str, request_id: str) -> str:
    """A deployment in progress (the state machine polling its long operations), per deployment.requested id."""
    return f"{safe_segment(use_case)}/operations/{safe_segment(request_id)}.json"


def production_day_prefix(use_case: str, endpoint: str, day: datetime) -> str:
    """One day of an endpoint's production log in PRODUCTION (UTC dates)."""
    return f"{safe_segment(use_case)}/{safe_segment(endpoint)}/{day:%Y/%m/%d}/"


def production_log_name(use_case: str, endpoint: str, moment: datetime, writer: str, part: int) -> str:
    """One writer's lines of one hour: a writer (a router process) never shares a blob with another, and rolls to
    the next `part` before the blob gets large, so no file grows without bound."""
    return f"{production_day_prefix(use_case, endpoint, moment)}{moment:%H}-{safe_segment(writer)}-{part:04d}.jsonl"


def monitoring_state_name(use_case: str) -> str:
    """What the production monitor remembers of a use case: its last run, the windows it already reported."""
    return f"monitoring/{safe_segment(use_case)}.json"


def candidate_dataset_name(use_case: str, endpoint: str, moment: datetime) -> str:
    return f"{safe_segment(use_case)}/{safe_segment(endpoint)}-{moment:%Y%m%dT%H%M%SZ}.jsonl"


def judging_state_name(use_case: str) -> str:
    """What the post-production evaluation remembers of a use case: its last run, the lines it judged."""
    return f"production-evaluation/{safe_segment(use_case)}.json"


def judging_requested_name(use_case: str) -> str:
    """The last schedule firing the timer asked to judge (apart from the state: the handler writes that one)."""
    return f"production-evaluation/{safe_segment(use_case)}.requested.json"
