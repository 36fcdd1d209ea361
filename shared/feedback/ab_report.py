"""The A/B report: the deployments behind one endpoint compared on what users got and what they said.

Inputs are the endpoint's per-request telemetry (`ServedRequest`, one per scoring request, from the RequestTelemetry
port in telemetry.py) and the stored feedback.
Per deployment: requests served and their share, error rate (any non-2xx answer), latency p50/p95/p99, mean rating
(1-5) with a 95 % t confidence interval, thumbs-up rate, and the post-production judge's mean score (its ranking
metric over every judged line, shared/monitoring/production_report.py) with its interval. Each deployment is
compared with the baseline (the one serving the most traffic unless named): Welch's t-test on the ratings and on the
judge's scores, a two-proportion z-test on the error rates, all two-sided, significant below `alpha`.

Counting rules: requests pinned with `azureml-model-deployment` (smoke tests, debugging) are not user traffic and
stay out of the comparison (they are counted apart); feedback is attributed to the deployment the router recorded
for its request id, and to the deployment the client named only when the router never saw that id.

The statistics (statistics.py) use `math`/`statistics` only (no scipy in the Function's image).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, Field

from shared.blob_layout import REPORTS, deployment_reports_prefix
from shared.feedback.statistics import (
    MeanInterval,
    Significance,
    mean_confidence_interval,
    percentile,
    regularized_beta,
    t_cdf,
    t_quantile,
    t_two_sided_p,
    two_proportion_z_test,
    welch_t_test,
)
from shared.feedback.telemetry import ServedRequest
from shared.ports import BlobStore, Clock
from shared.templating import render_template

TEMPLATES = Path(__file__).parent / "templates"

__all__ = [
    "ABReport", "MeanInterval", "RatedFeedback", "ServedRequest", "Significance", "build_ab_report",
    "mean_confidence_interval", "percentile", "regularized_beta", "render_csv", "render_html", "report_endpoint",
    "t_cdf", "t_quantile", "t_two_sided_p", "two_proportion_z_test", "verdict", "welch_t_test", "write_ab_report",
]

ALPHA = 0.05


class RatedFeedback(NamedTuple):
    """What the report needs of one feedback record (shared.feedback.submissions.FeedbackRecord has these fields)."""

    request_id: str
    deployment: str
    rating: int | None
    thumbs: str | None


# --- the report --------------------------------------------------------------------------------------------------


class DeploymentStats(BaseModel):
    deployment: str
    configured_traffic: int | None = None
    requests: int = 0
    share: float = 0.0  # of routed (not pinned) requests
    pinned_requests: int = 0
    errors: int = 0
    error_rate: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    ratings: int = 0
    mean_rating: float | None = None
    rating_ci_low: float | None = None
    rating_ci_high: float | None = None
    thumbs_up: int = 0
    thumbs_down: int = 0
    thumbs_up_rate: float | None = None
    judged: int = 0
    mean_judge: float | None = None
    judge_ci_low: float | None = None
    judge_ci_high: float | None = None


class Comparison(BaseModel):
    deployment: str
    baseline: str
    rating_difference: float | None = None
    rating_t: float | None = None
    rating_df: float | None = None
    rating_p: float | None = None
    rating_significant: bool | None = None
    judge_difference: float | None = None
    judge_t: float | None = None
    judge_df: float | None = None
    judge_p: float | None = None
    judge_significant: bool | None = None
    error_rate_difference: float | None = None
    error_rate_z: float | None = None
    error_rate_p: float | None = None
    error_rate_significant: bool | None = None
    notes: list[str] = []


class ABReport(BaseModel):
    use_case: str
    endpoint: str
    generated_at: datetime
    alpha: float = ALPHA
    baseline: str | None
    deployments: list[DeploymentStats]
    comparisons: list[Comparison]
    unattributed_feedback: int = 0
    unrouted_requests: int = 0
    judge_metric: str | None = Field(default=None, description="the judge's score compared (post-production)")
    telemetry_warning: str | None = Field(default=None, description="why the requests may be incomplete")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _stats(name: str, routed: Sequence[ServedRequest], pinned: int, total_routed: int,
           feedback: Sequence[RatedFeedback], configured: int | None, judged: Sequence[float]) -> DeploymentStats:
    latencies = [r.latency_ms for r in routed]
    errors = sum(not r.ok for r in routed)
    ratings = [f.rating for f in feedback if f.rating is not None]
    up = sum(f.thumbs == "up" for f in feedback)
    down = sum(f.thumbs == "down" for f in feedback)
    interval, judge = mean_confidence_interval(ratings), mean_confidence_interval(judged)
    return DeploymentStats(
        deployment=name, configured_traffic=configured, requests=len(routed),
        share=len(routed) / total_routed if total_routed else 0.0, pinned_requests=pinned,
        errors=errors, error_rate=errors / len(routed) if routed else None,
        latency_p50_ms=percentile(latencies, 50), latency_p95_ms=percentile(latencies, 95),
        latency_p99_ms=percentile(latencies, 99), ratings=interval.n, mean_rating=interval.mean,
        rating_ci_low=interval.low, rating_ci_high=interval.high, thumbs_up=up, thumbs_down=down,
        thumbs_up_rate=up / (up + down) if up + down else None, judged=judge.n, mean_judge=judge.mean,
        judge_ci_low=judge.low, judge_ci_high=judge.high,
    )


def _welch(comparison: Comparison, field: str, label: str, values: Sequence[float], base: Sequence[float],
           alpha: float) -> None:
    """Welch's t-test of `values` against the baseline's, into the comparison's `<field>_*` columns."""
    welch = welch_t_test(values, base)
    if welch is None:
        comparison.notes.append(f"{label}: fewer than 2 on a side, no test")
        return
    setattr(comparison, f"{field}_difference", sum(values) / len(values) - sum(base) / len(base))
    setattr(comparison, f"{field}_t", _finite(welch.statistic))
    setattr(comparison, f"{field}_df", welch.df)
    setattr(comparison, f"{field}_p", welch.p_value)
    setattr(comparison, f"{field}_significant", welch.p_value < alpha)


def _compare(stats: DeploymentStats, base: DeploymentStats, ratings: dict[str, list[int]],
             judged: dict[str, list[float]], alpha: float) -> Comparison:
    comparison = Comparison(deployment=stats.deployment, baseline=base.deployment)
    _welch(comparison, "rating", "ratings", ratings[stats.deployment], ratings[base.deployment], alpha)
    if judged:  # a use case without post-production evaluation has no judge to compare
        _welch(comparison, "judge", "judge scores", judged.get(stats.deployment, []),
               judged.get(base.deployment, []), alpha)
    z = two_proportion_z_test(stats.errors, stats.requests, base.errors, base.requests)
    if z is None:
        comparison.notes.append("errors: no routed requests on a side, no test")
    else:
        comparison.error_rate_difference = (stats.error_rate or 0.0) - (base.error_rate or 0.0)
        comparison.error_rate_z, comparison.error_rate_p = z.statistic, z.p_value
        comparison.error_rate_significant = z.p_value < alpha
        pooled = (stats.errors + base.errors) / (stats.requests + base.requests)
        smallest = min(stats.requests, base.requests) * min(pooled, 1 - pooled)
        if smallest < 5:  # the normal approximation wants about 5 expected successes and failures a side
            comparison.notes.append("errors: fewer than 5 expected errors or successes on a side; z is approximate")
    return comparison


def build_ab_report(use_case: str, endpoint: str, requests: Sequence[ServedRequest],
                    feedback: Sequence[RatedFeedback], *, generated_at: datetime,
                    traffic: dict[str, int] | None = None, deployments: Sequence[str] = (),
                    baseline: str | None = None, alpha: float = ALPHA,
                    judge: tuple[str | None, dict[str, list[float]]] = (None, {})) -> ABReport:
    """Compare every deployment that served (or is configured, or is named) on this endpoint with the baseline;
    `judge` is (metric, deployment -> the judge's score of each judged line)."""
    traffic = traffic or {}
    judge_metric, judged = judge
    by_request = {r.request_id: r.deployment for r in requests if r.deployment}
    names = sorted({*deployments, *traffic, *(r.deployment for r in requests if r.deployment)})
    attributed: dict[str, list[RatedFeedback]] = {name: [] for name in names}
    unattributed = 0
    for item in feedback:
        owner = by_request.get(item.request_id, item.deployment)
        if owner in attributed:
            attributed[owner].append(item)
        else:
            unattributed += 1
    routed = [r for r in requests if r.deployment and not r.pinned]
    stats = [
        _stats(name, [r for r in routed if r.deployment == name],
               sum(1 for r in requests if r.pinned and r.deployment == name), len(routed), attributed[name],
               traffic.get(name), judged.get(name, []))
        for name in names
    ]
    if baseline is None and stats:
        # The incumbent: most configured traffic, then most requests served.
        baseline = max(stats, key=lambda s: (s.configured_traffic or 0, s.requests, s.deployment)).deployment
    ratings = {name: [f.rating for f in items if f.rating is not None] for name, items in attributed.items()}
    by_name = {s.deployment: s for s in stats}
    comparisons = [_compare(s, by_name[baseline], ratings, judged, alpha) for s in stats
                   if baseline in by_name and s.deployment != baseline]
    return ABReport(use_case=use_case, endpoint=endpoint, generated_at=generated_at, alpha=alpha, baseline=baseline,
                    deployments=stats, comparisons=comparisons, unattributed_feedback=unattributed,
                    unrouted_requests=sum(1 for r in requests if not r.deployment), judge_metric=judge_metric)


# --- rendering ---------------------------------------------------------------------------------------------------


CSV_COLUMNS = (
    "deployment", "configured_traffic", "requests", "share", "pinned_requests", "errors", "error_rate",
    "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ratings", "mean_rating", "rating_ci_low",
    "rating_ci_high", "thumbs_up", "thumbs_down", "thumbs_up_rate", "judged", "mean_judge", "judge_ci_low",
    "judge_ci_high", "baseline", "rating_difference", "rating_t", "rating_df", "rating_p", "rating_significant",
    "judge_difference", "judge_t", "judge_df", "judge_p", "judge_significant", "error_rate_difference",
    "error_rate_z", "error_rate_p", "error_rate_significant", "notes",
)


def render_csv(report: ABReport) -> str:
    """One row per deployment; the comparison columns are empty on the baseline's row."""
    comparisons = {c.deployment: c for c in report.comparisons}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for stats in report.deployments:
        row: dict[str, object] = stats.model_dump()
        comparison = comparisons.get(stats.deployment)
        if comparison is not None:
            row.update(comparison.model_dump(exclude={"deployment"}))
            row["notes"] = "; ".join(comparison.notes)
        writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in CSV_COLUMNS})
    return out.getvalue()


def _difference(what: str, difference: float | None, p: float, significant: bool | None, *, scale: float = 1,
                unit: str = "") -> str:
    shown = abs(difference or 0) * scale
    precision = 1 if unit else 2
    direction = ("the same" if round(shown, precision) == 0 else
                 f"{'higher' if (difference or 0) > 0 else 'lower'} by {shown:.{precision}f}{unit}")
    return f"{what} {direction} ({'significant' if significant else 'not significant'}, p = {p:.3g})"


def verdict(comparison: Comparison, alpha: float) -> str:
    """One line a person reads: the comparison of a deployment with the baseline, and whether it is significant."""
    parts = []
    if comparison.rating_p is not None:
        parts.append(_difference("rating", comparison.rating_difference, comparison.rating_p,
                                 comparison.rating_significant))
    if comparison.judge_p is not None:
        parts.append(_difference("judge score", comparison.judge_difference, comparison.judge_p,
                                 comparison.judge_significant))
    if comparison.error_rate_p is not None:
        parts.append(_difference("error rate", comparison.error_rate_difference, comparison.error_rate_p,
                                 comparison.error_rate_significant, scale=100, unit=" points"))
    what = "; ".join(parts) or "not enough data to compare"
    return f"{comparison.deployment} vs {comparison.baseline} at α = {alpha:g}: {what}"


def render_html(report: ABReport) -> str:
    """Self-contained: inline CSS, no scripts, no external resources."""
    verdicts = [verdict(comparison, report.alpha) for comparison in report.comparisons]
    return render_template(TEMPLATES, "ab_report.html.j2", report=report, verdicts=verdicts)


def write_ab_report(blobs: BlobStore, report: ABReport) -> dict[str, str]:
    """Write ab_report.html and ab_report.csv (and ab_report.json, for audit); returns what went where."""
    prefix = deployment_reports_prefix(report.use_case, report.endpoint)
    written = {
        "html": (prefix + "ab_report.html", render_html(report).encode(), "text/html; charset=utf-8"),
        "csv": (prefix + "ab_report.csv", render_csv(report).encode(), "text/csv; charset=utf-8"),
        "json": (prefix + "ab_report.json", report.model_dump_json(indent=2).encode(), "application/json"),
    }
    for name, data, content_type in written.values():
        blobs.write(REPORTS, name, data, content_type=content_type)
    return {kind: f"{REPORTS}/{name}" for kind, (name, _, _) in written.items()}


def report_endpoint(blobs: BlobStore, clock: Clock, use_case: str, endpoint: str,
                    requests: Sequence[ServedRequest], *, traffic: dict[str, int] | None = None,
                    baseline: str | None = None, alpha: float = ALPHA,
                    telemetry_warning: str | None = None) -> tuple[ABReport, dict[str, str]]:
    """Load the endpoint's stored feedback, compare its deployments, write the report; (report, blob names)."""
    from shared.feedback.submissions import load_feedback
    from shared.monitoring.production_report import COMPARED_DAYS, judge_scores

    feedback = [RatedFeedback(f.request_id, f.deployment, f.rating, f.thumbs)
                for f in load_feedback(blobs, use_case, endpoint)]
    report = build_ab_report(use_case, endpoint, requests, feedback, generated_at=clock.now(), traffic=traffic,
                             baseline=baseline, alpha=alpha,
                             judge=judge_scores(blobs, use_case, endpoint, clock.now() - timedelta(days=COMPARED_DAYS)))
    report.telemetry_warning = telemetry_warning
    return report, write_ab_report(blobs, report)
