"""Where a post-production evaluation run is kept and how it reads: `reports/{use_case}/production/{window}/`
holds `evaluation.json` (the metrics per deployment and every judged line) and `summary.html` (the metrics per
deployment beside the users' ratings, the trend over the recent windows, the worst lines).

The A/B report reads the judged lines of every window back (`judge_scores`) to compare deployments on them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from shared.blob_layout import REPORTS, safe_segment
from shared.feedback.submissions import FeedbackRecord
from shared.monitoring.judging import DeploymentResult, JudgedLine, worst_lines
from shared.ports import BlobNotFound, BlobStore
from shared.templating import render_template

TEMPLATES = Path(__file__).parent / "templates"
TREND_WINDOWS = 12  # recent windows shown in a report's trend table
COMPARED_DAYS = 30  # the A/B report compares the judged lines of this many days (as long as production logs live)
_STAMP = "%Y%m%dT%H%M%SZ"


class JudgedWindow(BaseModel):
    """One run of the post-production evaluation over one endpoint."""

    use_case: str
    endpoint: str
    environment: str
    window_start: datetime
    window_end: datetime
    ranking_metric: str | None = None
    deployments: list[DeploymentResult]
    lines: list[JudgedLine]
    left_over: int = Field(default=0, ge=0)


class Ratings(BaseModel):
    deployment: str
    ratings: int
    mean_rating: float | None
    judged_lines_rated: int


def window_prefix(use_case: str, window_end: datetime) -> str:
    return f"{safe_segment(use_case)}/production/{window_end.strftime(_STAMP)}/"


def load_windows(blobs: BlobStore, use_case: str, endpoint: str, *, since: datetime | None = None,
                 before: datetime | None = None, last: int | None = None) -> list[JudgedWindow]:
    """The endpoint's stored windows ending in [since, before), oldest first (only the `last` ones of the use case
    are read); unreadable ones are skipped. The window end is in the blob name, so old windows are never read."""
    prefix = f"{safe_segment(use_case)}/production/"
    names = []
    for info in blobs.list(REPORTS, prefix):
        stamp, _, file = info.name[len(prefix):].partition("/")
        try:
            end = datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
        except ValueError:
            continue
        if file == "evaluation.json" and (since is None or end >= since) and (before is None or end < before):
            names.append((end, info.name))
    windows = []
    for _, name in sorted(names)[-last if last else None:]:
        try:
            window = JudgedWindow.model_validate_json(blobs.read(REPORTS, name)[0])
        except (BlobNotFound, ValidationError):
            continue
        if window.endpoint == endpoint:
            windows.append(window)
    return sorted(windows, key=lambda window: window.window_end)


def judge_scores(blobs: BlobStore, use_case: str, endpoint: str,
                 since: datetime | None = None) -> tuple[str | None, dict[str, list[float]]]:
    """(the metric, deployment -> its value on every judged line) over the windows since `since`: the latest
    window's ranking metric, one value per request."""
    windows = load_windows(blobs, use_case, endpoint, since=since)
    metric = next((w.ranking_metric for w in reversed(windows) if w.ranking_metric), None)
    if metric is None:
        return None, {}
    seen: dict[str, tuple[str, float]] = {}
    for window in windows:
        for line in window.lines:
            if metric in line.scores and not line.errors:
                seen[line.request_id] = (line.deployment, line.scores[metric])
    scores: dict[str, list[float]] = {}
    for deployment, value in seen.values():
        scores.setdefault(deployment, []).append(value)
    return metric, scores


def ratings_beside(window: JudgedWindow, feedback: Sequence[FeedbackRecord]) -> list[Ratings]:
    """Per deployment: the users' ratings of the endpoint (latest per request) and how many judged lines have one."""
    latest = {record.request_id: record for record in feedback}
    judged = {line.request_id for line in window.lines}
    result = []
    for deployment in sorted({d.deployment for d in window.deployments}):
        rated = [r for r in latest.values() if r.deployment == deployment and r.rating is not None]
        values = [float(r.rating) for r in rated if r.rating is not None]
        result.append(Ratings(deployment=deployment, ratings=len(values),
                              mean_rating=statistics.fmean(values) if values else None,
                              judged_lines_rated=sum(1 for r in rated if r.request_id in judged)))
    return result


def write_window(blobs: BlobStore, window: JudgedWindow, feedback: Sequence[FeedbackRecord]) -> str:
    """Write evaluation.json and summary.html; returns the report's `reports/...` name."""
    prefix = window_prefix(window.use_case, window.window_end)
    blobs.write(REPORTS, prefix + "evaluation.json", window.model_dump_json(indent=1).encode(),
                content_type="application/json")
    history = load_windows(blobs, window.use_case, window.endpoint, before=window.window_end, last=TREND_WINDOWS - 1)
    trend = [*history, window]
    metrics = sorted({metric for w in trend for d in w.deployments for metric in d.metrics})
    ratings = {r.deployment: r for r in ratings_beside(window, feedback)}
    rating_of = {record.request_id: record.rating for record in feedback}
    html = render_template(TEMPLATES, "production_summary.html.j2", window=window, trend=trend, metrics=metrics,
                           ratings=ratings, rating_of=rating_of,
                           worst=worst_lines(window.lines, window.ranking_metric))
    blobs.write(REPORTS, prefix + "summary.html", html.encode(), content_type="text/html; charset=utf-8")
    return f"{REPORTS}/{prefix}summary.html"
