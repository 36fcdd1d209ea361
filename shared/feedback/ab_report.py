"""The A/B report: the deployments behind one endpoint compared on what users got and what they said.

Inputs are the endpoint's per-request telemetry (`ServedRequest`, one per scoring request, from the RequestTelemetry
port in telemetry.py) and the stored feedback.
Per deployment: requests served and their share, error rate (any non-2xx answer), latency p50/p95/p99, mean rating
(1-5) with a 95 % t confidence interval, thumbs-up rate. Each deployment is compared with the baseline (the one
serving the most traffic unless named): Welch's t-test on the ratings, a two-proportion z-test on the error rates,
both two-sided, significant below `alpha`.

Counting rules: requests pinned with `azureml-model-deployment` (smoke tests, debugging) are not user traffic and
stay out of the comparison (they are counted apart); feedback is attributed to the deployment the router recorded
for its request id, and to the deployment the client named only when the router never saw that id.

The statistics (statistics.py) use `math`/`statistics` only (no scipy in the Function's image).
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from pydantic import BaseModel, Field

from shared.blob_layout import REPORTS, safe_segment
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

__all__ = [
    "ABReport", "MeanInterval", "RatedFeedback", "ServedRequest", "Significance", "build_ab_report",
    "mean_confidence_interval", "percentile", "regularized_beta", "render_csv", "render_html", "report_endpoint",
    "t_cdf", "t_quantile", "t_two_sided_p", "two_proportion_z_test", "verdict", "welch_t_test", "write_ab_report",
]

ALPHA = 0.05


class RatedFeedback(NamedTuple):
    """What the report needs of one feedback record (shared.feedback.service.FeedbackRecord has these fields)."""

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


class Comparison(BaseModel):
    deployment: str
    baseline: str
    rating_difference: float | None = None
    rating_t: float | None = None
    rating_df: float | None = None
    rating_p: float | None = None
    rating_significant: bool | None = None
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
    telemetry_warning: str | None = Field(default=None, description="why the requests may be incomplete")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _stats(name: str, routed: Sequence[ServedRequest], pinned: int, total_routed: int,
           feedback: Sequence[RatedFeedback], configured: int | None) -> DeploymentStats:
    latencies = [r.latency_ms for r in routed]
    errors = sum(not r.ok for r in routed)
    ratings = [f.rating for f in feedback if f.rating is not None]
    up = sum(f.thumbs == "up" for f in feedback)
    down = sum(f.thumbs == "down" for f in feedback)
    interval = mean_confidence_interval(ratings)
    return DeploymentStats(
        deployment=name, configured_traffic=configured, requests=len(routed),
        share=len(routed) / total_routed if total_routed else 0.0, pinned_requests=pinned,
        errors=errors, error_rate=errors / len(routed) if routed else None,
        latency_p50_ms=percentile(latencies, 50), latency_p95_ms=percentile(latencies, 95),
        latency_p99_ms=percentile(latencies, 99), ratings=interval.n, mean_rating=interval.mean,
        rating_ci_low=interval.low, rating_ci_high=interval.high, thumbs_up=up, thumbs_down=down,
        thumbs_up_rate=up / (up + down) if up + down else None,
    )


def _compare(stats: DeploymentStats, base: DeploymentStats, ratings: dict[str, list[int]], alpha: float) -> Comparison:
    comparison = Comparison(deployment=stats.deployment, baseline=base.deployment)
    welch = welch_t_test(ratings[stats.deployment], ratings[base.deployment])
    if welch is None:
        comparison.notes.append("ratings: fewer than 2 on a side, no test")
    else:
        comparison.rating_difference = (stats.mean_rating or 0.0) - (base.mean_rating or 0.0)
        comparison.rating_t, comparison.rating_df = _finite(welch.statistic), welch.df
        comparison.rating_p, comparison.rating_significant = welch.p_value, welch.p_value < alpha
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
                    baseline: str | None = None, alpha: float = ALPHA) -> ABReport:
    """Compare every deployment that served (or is configured, or is named) on this endpoint with the baseline."""
    traffic = traffic or {}
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
               traffic.get(name))
        for name in names
    ]
    if baseline is None and stats:
        # The incumbent: most configured traffic, then most requests served.
        baseline = max(stats, key=lambda s: (s.configured_traffic or 0, s.requests, s.deployment)).deployment
    ratings = {name: [f.rating for f in items if f.rating is not None] for name, items in attributed.items()}
    by_name = {s.deployment: s for s in stats}
    comparisons = [_compare(s, by_name[baseline], ratings, alpha) for s in stats
                   if baseline in by_name and s.deployment != baseline]
    return ABReport(use_case=use_case, endpoint=endpoint, generated_at=generated_at, alpha=alpha, baseline=baseline,
                    deployments=stats, comparisons=comparisons, unattributed_feedback=unattributed,
                    unrouted_requests=sum(1 for r in requests if not r.deployment))


# --- rendering ---------------------------------------------------------------------------------------------------


CSV_COLUMNS = (
    "deployment", "configured_traffic", "requests", "share", "pinned_requests", "errors", "error_rate",
    "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ratings", "mean_rating", "rating_ci_low",
    "rating_ci_high", "thumbs_up", "thumbs_down", "thumbs_up_rate", "baseline", "rating_difference", "rating_t",
    "rating_df", "rating_p", "rating_significant", "error_rate_difference", "error_rate_z", "error_rate_p",
    "error_rate_significant", "notes",
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


def _number(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def verdict(comparison: Comparison, alpha: float) -> str:
    """One line a person reads: the comparison of a deployment with the baseline, and whether it is significant."""
    parts = []
    if comparison.rating_p is not None:
        direction = "higher" if (comparison.rating_difference or 0) > 0 else "lower"
        parts.append(f"rating {direction} by {abs(comparison.rating_difference or 0):.2f} "
                     f"({'significant' if comparison.rating_significant else 'not significant'}, "
                     f"p = {comparison.rating_p:.3g})")
    if comparison.error_rate_p is not None:
        direction = "higher" if (comparison.error_rate_difference or 0) > 0 else "lower"
        parts.append(f"error rate {direction} by {abs(comparison.error_rate_difference or 0) * 100:.1f} points "
                     f"({'significant' if comparison.error_rate_significant else 'not significant'}, "
                     f"p = {comparison.error_rate_p:.3g})")
    what = "; ".join(parts) or "not enough data to compare"
    return f"{comparison.deployment} vs {comparison.baseline} at α = {alpha:g}: {what}"


def _flag(significant: bool | None) -> str:
    if significant is None:
        return "–"
    return '<span class="sig">yes</span>' if significant else '<span class="ns">no</span>'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2328;max-width:72rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:right}th{background:#f6f8fa}
td:first-child,th:first-child{text-align:left}.base{background:#f0f7ff}
.sig{color:#b42318;font-weight:600}.ns{color:#57606a}.note{color:#57606a;font-size:.85rem}
.bar{display:inline-block;height:.7rem;background:#0969da;vertical-align:middle}
"""


def render_html(report: ABReport) -> str:
    """Self-contained: inline CSS, no scripts, no external resources."""
    e = html.escape
    rows = []
    for s in report.deployments:
        css = ' class="base"' if s.deployment == report.baseline else ""
        bar = f'<span class="bar" style="width:{s.share * 8:.2f}rem"></span>'
        ci = "–" if s.rating_ci_low is None else f"{s.rating_ci_low:.2f} – {s.rating_ci_high:.2f}"
        rows.append(
            f"<tr{css}><td>{e(s.deployment)}</td><td>{'–' if s.configured_traffic is None else s.configured_traffic}"
            f" %</td><td>{s.requests}</td><td>{bar} {_percent(s.share)}</td><td>{s.pinned_requests}</td>"
            f"<td>{s.errors}</td><td>{_percent(s.error_rate)}</td><td>{_number(s.latency_p50_ms, 0)}</td>"
            f"<td>{_number(s.latency_p95_ms, 0)}</td><td>{_number(s.latency_p99_ms, 0)}</td><td>{s.ratings}</td>"
            f"<td>{_number(s.mean_rating)}</td><td>{ci}</td><td>{s.thumbs_up} / {s.thumbs_down}</td></tr>"
        )
    comparisons = []
    for c in report.comparisons:
        comparisons.append(
            f"<tr><td>{e(c.deployment)} vs {e(c.baseline)}</td><td>{_number(c.rating_difference, 3)}</td>"
            f"<td>{_number(c.rating_t, 3)}</td><td>{_number(c.rating_df, 1)}</td><td>{_number(c.rating_p, 4)}</td>"
            f"<td>{_flag(c.rating_significant)}</td>"
            f"<td>{_number(None if c.error_rate_difference is None else c.error_rate_difference * 100, 1)}</td>"
            f"<td>{_number(c.error_rate_z, 3)}</td><td>{_number(c.error_rate_p, 4)}</td>"
            f"<td>{_flag(c.error_rate_significant)}</td><td class=note>{e('; '.join(c.notes))}</td></tr>"
        )
    verdicts = "".join(f"<li>{e(verdict(c, report.alpha))}</li>" for c in report.comparisons)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A/B report: {e(report.use_case)} / {e(report.endpoint)}</title>
<style>{_CSS}</style></head><body>
<h1>A/B report: {e(report.use_case)} — endpoint {e(report.endpoint)}</h1>
<p class="note">Generated {e(report.generated_at.isoformat())}. Baseline: {e(report.baseline or '–')}.
Requests pinned to a deployment (smoke tests) are counted apart, not in the comparison.
Unattributed feedback: {report.unattributed_feedback}.
Requests no deployment could take: {report.unrouted_requests}.</p>
{f'<p class="note"><strong>Telemetry may be incomplete:</strong> {e(report.telemetry_warning)}</p>'
 if report.telemetry_warning else ''}
<h2>Verdict</h2><ul>{verdicts or '<li>Only one deployment: nothing to compare.</li>'}</ul>
<h2>Deployments</h2>
<table><thead><tr><th>deployment</th><th>traffic</th><th>requests</th><th>share served</th><th>pinned</th>
<th>errors</th><th>error rate</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>ratings</th><th>mean rating</th>
<th>95 % CI</th><th>👍 / 👎</th></tr></thead><tbody>{''.join(rows)}</tbody></table>
<h2>Tests against the baseline</h2>
<p class="note">Mean rating: Welch's t-test. Error rate: two-proportion z-test (pooled). Both two-sided,
significant when p &lt; {report.alpha:g}.</p>
<table><thead><tr><th>comparison</th><th>Δ rating</th><th>t</th><th>df</th><th>p</th><th>significant</th>
<th>Δ error rate (points)</th><th>z</th><th>p</th><th>significant</th><th>notes</th></tr></thead>
<tbody>{''.join(comparisons)}</tbody></table>
</body></html>
"""


def ab_report_prefix(use_case: str, endpoint: str) -> str:
    return f"{safe_segment(use_case)}/deployments/{safe_segment(endpoint)}/"


def write_ab_report(blobs: BlobStore, report: ABReport) -> dict[str, str]:
    """Write ab_report.html and ab_report.csv (and ab_report.json, for audit); returns what went where."""
    prefix = ab_report_prefix(report.use_case, report.endpoint)
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
    from shared.feedback.service import load_feedback

    feedback = [RatedFeedback(f.request_id, f.deployment, f.rating, f.thumbs)
                for f in load_feedback(blobs, use_case, endpoint)]
    report = build_ab_report(use_case, endpoint, requests, feedback, generated_at=clock.now(), traffic=traffic,
                             baseline=baseline, alpha=alpha)
    report.telemetry_warning = telemetry_warning
    return report, write_ab_report(blobs, report)
