"""One readable line per event, for people following a run (`genaiops wait`, `genaiops upload`, `make demo`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.events import Event
from shared.experiments.scoring import better_direction


def _best_run(payload: dict[str, Any]) -> str:
    scored = [run for run in payload["runs"] if run["metrics"]]
    if not scored:
        return f"{payload['use_case']}: {len(payload['runs'])} runs"
    metric = sorted(scored[0]["metrics"])[0]  # the first metric by name, in its better direction
    sign = 1 if better_direction(metric) == "higher" else -1
    best = max(scored, key=lambda run: sign * run["metrics"][metric])
    return f"{payload['use_case']}: {len(payload['runs'])} runs; best by {metric}: {best['variant']} {best['metrics']}"


# The first key a payload has picks how its line reads.
SUMMARIES: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("runs", _best_run),
    ("breaches", lambda p: f"{p['use_case']}: {p['deployment']}: {'; '.join(p['breaches'])}"[:300]),
    ("deployments", lambda p: f"{p['use_case']}: {p['endpoint']}: " + "; ".join(
        f"{d['deployment']} {d['lines']} judged {d['metrics']}" for d in p["deployments"])),
    ("lines_done", lambda p: f"{p['use_case']} {p['stage']}: {p['lines_done']}/{p['lines_total']} lines "
                             f"({p['items_done']}/{p['items_total']} work items)"),
    ("approval_url", lambda p: f"{p['use_case']}: {p['flow_name']} v{p['flow_version']} — {p['approval_url']}"),
    ("traffic", lambda p: f"{p['use_case']}: {p['endpoint']} traffic {p['traffic']}"),
    ("checks_passed", lambda p: f"{p['deployment']}: {p['checks_passed']} checks passed, {p['checks_failed']} failed"),
    ("flow_version", lambda p: f"{p['use_case']}: {p['flow_name']} v{p['flow_version']}"),
    ("content_hash", lambda p: f"{p['name']} v{p['version']} ({'new' if p['created'] else 'unchanged'})"),
    ("primary_metric", lambda p: f"{p['use_case']}: best {p['best_variant']} {p['primary_metric']}={p['best_value']}"),
    ("reasons", lambda p: "; ".join(p["reasons"])[:300]),
]


def summary(event: Event) -> str:
    payload = event.payload.model_dump(mode="json")
    for key, summarize in SUMMARIES:
        if key in payload:
            return summarize(payload)
    return str(payload.get("use_case") or payload.get("blob_name") or "")


def line(event: Event) -> str:
    return f"{event.occurred_at:%H:%M:%S} {event.type:<22} {summary(event)}"
