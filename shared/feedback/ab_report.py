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

The statistics are written here with `math`/`statistics` (no scipy in the Function's image): the regularized
incomplete beta function by its continued fraction gives Student's t distribution; the normal one is stdlib.
"""

from __future__ import annotations

import csv
import html
import io
import math
import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from pydantic import BaseModel, Field

from shared.blob_layout import REPORTS, safe_segment
from shared.feedback.telemetry import ServedRequest
from shared.ports import BlobStore, Clock

__all__ = ["ABReport", "RatedFeedback", "ServedRequest", "build_ab_report", "render_csv", "render_html",
           "report_endpoint", "write_ab_report"]

ALPHA = 0.05
_NORMAL = statistics.NormalDist()


class RatedFeedback(NamedTuple):
    """What the report needs of one feedback record (shared.feedback.service.FeedbackRecord has these fields)."""

    request_id: str
    deployment: str
    rating: int | None
    thumbs: str | None


# --- statistics ----------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (NumPy's default, Hyndman-Fan 7)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """1 + d1/(1 + d2/(1 + ...)), the continued fraction of I_x(a, b) (DLMF 8.17.22), by the modified Lentz
    method."""
    tiny, epsilon = 1e-300, 1e-15
    f, c, d = 1.0, 1.0, 0.0
    for i in range(1, 1000):
        m = i // 2
        if i % 2:  # odd terms
            term = -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            term = (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + term * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + term / (c if abs(c) > tiny else tiny)
        f *= c * d
        if abs(c * d - 1.0) < epsilon:
            break
    return f


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be within [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # The fraction converges fast below the mean of the distribution; above it, use I_x(a,b) = 1 - I_{1-x}(b,a).
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) / (a * _beta_continued_fraction(a, b, x))
    return 1.0 - math.exp(log_front) / (b * _beta_continued_fraction(b, a, 1.0 - x))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom (df may be fractional, as Welch's is)."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * regularized_beta(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_two_sided_p(t: float, df: float) -> float:
    if math.isinf(t):
        return 0.0
    return regularized_beta(df / 2, 0.5, df / (df + t * t))


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on the CDF (monotone; 200 halvings is far below double precision)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be within (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


class MeanInterval(NamedTuple):
    n: int
    mean: float | None
    low: float | None
    high: float | None


def mean_confidence_interval(values: Sequence[float], confidence: float = 0.95) -> MeanInterval:
    """The mean with its t interval (sample standard deviation, n-1 degrees of freedom); no interval below n=2."""
    n = len(values)
    if n == 0:
        return MeanInterval(0, None, None, None)
    mean = statistics.fmean(values)
    if n < 2:
        return MeanInterval(n, mean, None, None)
    half = t_quantile(0.5 + confidence / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return MeanInterval(n, mean, mean - half, mean + half)


class Significance(NamedTuple):
    statistic: float
    p_value: float
    df: float | None = None


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> Significance | None:
    """Welch's unequal-variances t-test of mean(a) = mean(b), two-sided; None with fewer than 2 values a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    difference = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:  # both constant: the means either are the same or differ beyond any doubt
        if difference == 0:
            return Significance(0.0, 1.0)
        return Significance(math.copysign(math.inf, difference), 0.0)
    t = difference / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    return Significance(t, t_two_sided_p(t, df), df)


def two_proportion_z_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> Significance | None:
    """The pooled two-proportion z-test of p_a = p_b, two-sided; None when a side has no trials."""
    if n_a <= 0 or n_b <= 0:
        return None
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:  # both 0 % or both 100 %: nothing to tell apart
        return Significance(0.0, 1.0)
    z = (successes_a / n_a - successes_b / n_b) / se
    return Significance(z, 2 * (1 - _NORMAL.cdf(abs(z))))


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


def _verdict(comparison: Comparison, alpha: float) -> str:
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
    verdicts = "".join(f"<li>{e(_verdict(c, report.alpha))}</li>" for c in report.comparisons)
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
