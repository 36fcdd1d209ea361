"""`genaiops runs` and `genaiops report`: what the journal and the reports container hold, read-only."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from shared.blob_layout import AUDIT, REPORTS, safe_segment
from shared.ports import BlobStore

# audit/{correlation_id}/{stamp}-{event type}-{event id}.json (shared.blob_layout.audit_name)
_AUDIT_NAME = re.compile(r"^(?P<run>[^/]+)/(?P<stamp>\d{8}T\d{12}Z)-(?P<type>[a-z_.]+)-[^/]+\.json$")


@dataclass(frozen=True)
class RunLine:
    correlation_id: str
    last_event: str
    last_at: datetime
    events: int


def recent_runs(blobs: BlobStore, limit: int) -> list[RunLine]:
    """The runs in the journal, newest activity first."""
    latest: dict[str, tuple[str, str]] = {}
    counts: Counter[str] = Counter()
    for info in blobs.list(AUDIT):
        match = _AUDIT_NAME.match(info.name)
        if not match:
            continue
        counts[match["run"]] += 1
        if match["stamp"] >= latest.get(match["run"], ("", ""))[0]:
            latest[match["run"]] = (match["stamp"], match["type"])
    lines = [RunLine(run, event_type, datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ"), counts[run])
             for run, (stamp, event_type) in latest.items()]
    return sorted(lines, key=lambda line: line.last_at, reverse=True)[:limit]


def download_report(blobs: BlobStore, use_case: str, experiment_id: str | None, target: Path) -> Path:
    """Copy one experiment's reports (the newest when no id is given) under `target`; returns its summary.html."""
    prefix = f"{safe_segment(use_case)}/"
    summaries = [info for info in blobs.list(REPORTS, prefix=prefix) if info.name.endswith("/summary.html")
                 and (experiment_id is None or info.name == f"{prefix}{safe_segment(experiment_id)}/summary.html")]
    if not summaries:
        raise LookupError(f"no report for use case {use_case}" + (f", experiment {experiment_id}" if experiment_id
                                                                   else ""))
    folder = max(summaries, key=lambda info: info.last_modified).name.removesuffix("summary.html")
    for info in blobs.list(REPORTS, prefix=folder):
        path = target / info.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blobs.read(REPORTS, info.name)[0])
    return target / folder / "summary.html"
