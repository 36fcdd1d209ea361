"""The A/B report's statistics against values known independently of this code:

- Student's t table (any statistics textbook's critical values) and the closed forms of the t CDF for 1 and 2
  degrees of freedom (Cauchy; t/(2*sqrt(2+t^2))) and of I_x(a, b) for integer a, b (a binomial tail);
- R's `t.test` on Student's own `sleep` data (R's datasets::sleep, the canonical Welch example):
  `t.test(extra ~ group, data = sleep)` -> t = -1.8608, df = 17.776, p-value = 0.07939, and
  `t.test(sleep$extra[1:10])` -> 95 percent confidence interval -0.5297804 2.0297804;
- the two-proportion z-test against the Pearson chi-square of the same 2x2 table (z^2 = chi^2 when pooled, as
  R's `prop.test(correct = FALSE)` reports it), and the normal quantile 1.959964 -> p = 0.05;
- percentiles against NumPy's default (linear) method.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from shared.feedback.ab_report import (
    RatedFeedback,
    ServedRequest,
    build_ab_report,
    mean_confidence_interval,
    percentile,
    regularized_beta,
    render_csv,
    render_html,
    t_cdf,
    t_quantile,
    t_two_sided_p,
    two_proportion_z_test,
    welch_t_test,
)

# Student (1908) via R's datasets::sleep: extra hours of sleep under two drugs, ten patients each.
SLEEP_GROUP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_GROUP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


@pytest.mark.parametrize(("df", "critical"), [
    (1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (20, 2.086), (30, 2.042), (120, 1.980),
])
def test_t_quantile_matches_the_table(df: int, critical: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(critical, abs=5e-4)
    assert t_quantile(0.025, df) == pytest.approx(-critical, abs=5e-4)


@pytest.mark.parametrize("t", [-7.0, -1.5, -0.3, 0.0, 0.4, 1.0, 2.5, 30.0])
def test_t_cdf_closed_forms(t: float) -> None:
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_t_tends_to_the_normal() -> None:
    assert t_two_sided_p(1.959964, 1e7) == pytest.approx(0.05, abs=1e-6)
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)


@pytest.mark.parametrize(("a", "b", "x"), [(2, 3, 0.4), (1, 5, 0.2), (4, 1, 0.7), (6, 9, 0.35), (30, 12, 0.8)])
def test_regularized_beta_is_a_binomial_tail_for_integers(a: int, b: int, x: float) -> None:
    n = a + b - 1
    expected = sum(math.comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(a, n + 1))
    assert regularized_beta(a, b, x) == pytest.approx(expected, abs=1e-12)


def test_regularized_beta_edges() -> None:
    assert regularized_beta(0.5, 0.5, 0.3) == pytest.approx(2 / math.pi * math.asin(math.sqrt(0.3)), abs=1e-12)
    assert (regularized_beta(2, 2, 0.0), regularized_beta(2, 2, 1.0)) == (0.0, 1.0)
    with pytest.raises(ValueError, match="within"):
        regularized_beta(1, 1, 1.5)


def test_welch_on_students_sleep_data_matches_r() -> None:
    result = welch_t_test(SLEEP_GROUP_1, SLEEP_GROUP_2)
    assert result is not None
    assert result.statistic == pytest.approx(-1.8608, abs=1e-4)
    assert result.df == pytest.approx(17.776, abs=1e-3)
    assert result.p_value == pytest.approx(0.07939, abs=1e-5)
    assert result.p_value > 0.05  # R: not significant at 0.05


def test_mean_interval_on_sleep_group_1_matches_r() -> None:
    interval = mean_confidence_interval(SLEEP_GROUP_1)
    assert interval.mean == pytest.approx(0.75)
    assert interval.low == pytest.approx(-0.5297804, abs=1e-7)
    assert interval.high == pytest.approx(2.0297804, abs=1e-7)


def test_small_samples_give_no_interval_and_no_test() -> None:
    assert mean_confidence_interval([]) == (0, None, None, None)
    assert mean_confidence_interval([4]) == (1, 4.0, None, None)
    assert welch_t_test([4], [1, 2]) is None
    assert welch_t_test([3, 3, 3], [3, 3]) == (0.0, 1.0, None)  # identical constants: no difference
    assert welch_t_test([5, 5], [1, 1]).p_value == 0.0  # type: ignore[union-attr]  # distinct constants


def _pearson_chi_square(x1: int, n1: int, x2: int, n2: int) -> float:
    a, b, c, d = x1, n1 - x1, x2, n2 - x2
    n = a + b + c + d
    return n * (a * d - b * c) ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(45, 100, 30, 100), (12, 400, 25, 380), (3, 50, 9, 60)])
def test_two_proportion_z_is_the_root_of_pearsons_chi_square(x1: int, n1: int, x2: int, n2: int) -> None:
    result = two_proportion_z_test(x1, n1, x2, n2)
    assert result is not None
    assert result.statistic**2 == pytest.approx(_pearson_chi_square(x1, n1, x2, n2), rel=1e-12)
    # The chi-square with 1 df has P(X > z^2) = erfc(|z| / sqrt 2).
    assert result.p_value == pytest.approx(math.erfc(abs(result.statistic) / math.sqrt(2)), abs=1e-12)


def test_two_proportion_z_by_hand() -> None:
    # 45/100 vs 30/100: pooled 0.375, se = sqrt(0.375 * 0.625 * 0.02) = 0.0684653, z = 0.15 / se.
    result = two_proportion_z_test(45, 100, 30, 100)
    assert result is not None
    assert result.statistic == pytest.approx(2.190890, abs=1e-6)
    assert result.p_value == pytest.approx(0.028460, abs=1e-6)
    assert two_proportion_z_test(0, 10, 0, 20) == (0.0, 1.0, None)
    assert two_proportion_z_test(1, 0, 1, 5) is None


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 100])
def test_percentiles_match_numpy(q: float) -> None:
    values = [float(v) for v in [120, 35, 88, 41, 990, 63, 70, 52, 47, 300, 55]]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([], q) is None


# --- the report built from them -------------------------------------------------------------------------------------


def served(request_id: str, deployment: str, status: int = 200, latency: float = 100.0,
           pinned: bool = False) -> ServedRequest:
    return ServedRequest(time=datetime(2026, 1, 1, tzinfo=UTC), endpoint="ep", request_id=request_id,
                         deployment=deployment, pinned=pinned, status=status, latency_ms=latency)


def test_report_counts_attributes_and_compares() -> None:
    requests = [served(f"b{i}", "blue", status=500 if i < 2 else 200, latency=100 + i) for i in range(70)]
    requests += [served(f"g{i}", "green", status=500 if i < 9 else 200, latency=200 + i) for i in range(30)]
    requests += [served(f"p{i}", "green", pinned=True) for i in range(5)]  # smoke tests: not traffic
    requests.append(ServedRequest(time=datetime(2026, 1, 1, tzinfo=UTC), endpoint="ep", request_id="x",
                                  deployment=None, status=503, latency_ms=1))
    feedback = [RatedFeedback(f"b{i}", "blue", 4 + i % 2, None) for i in range(10)]
    # The client claims blue, but the router served g1 from green: the router's record wins.
    feedback += [RatedFeedback(f"g{i}", "blue", 2 + i % 2, None) for i in range(10)]
    feedback += [RatedFeedback("g3", "green", None, "up"), RatedFeedback("g4", "green", None, "down"),
                 RatedFeedback("unknown-id", "purple", 5, None)]

    report = build_ab_report("uc", "ep", requests, feedback, generated_at=datetime(2026, 1, 2, tzinfo=UTC),
                             traffic={"blue": 70, "green": 30})
    stats = {s.deployment: s for s in report.deployments}
    assert report.baseline == "blue"
    assert (stats["blue"].requests, stats["green"].requests, stats["green"].pinned_requests) == (70, 30, 5)
    assert stats["blue"].share == pytest.approx(0.7)
    assert (stats["blue"].error_rate, stats["green"].error_rate) == (pytest.approx(2 / 70), pytest.approx(0.3))
    assert stats["blue"].latency_p50_ms == pytest.approx(float(np.percentile([100 + i for i in range(70)], 50)))
    assert (stats["blue"].ratings, stats["green"].ratings) == (10, 10)
    assert (stats["blue"].mean_rating, stats["green"].mean_rating) == (4.5, 2.5)
    assert (stats["green"].thumbs_up, stats["green"].thumbs_down, stats["green"].thumbs_up_rate) == (1, 1, 0.5)
    assert (report.unattributed_feedback, report.unrouted_requests) == (1, 1)

    (comparison,) = report.comparisons
    assert (comparison.deployment, comparison.baseline) == ("green", "blue")
    assert comparison.rating_difference == pytest.approx(-2.0)
    assert comparison.rating_significant is True
    expected = two_proportion_z_test(9, 30, 2, 70)
    assert expected is not None
    assert comparison.error_rate_p == pytest.approx(expected.p_value)
    assert comparison.error_rate_significant is True


def test_report_renders_self_contained_html_and_a_csv_row_per_deployment() -> None:
    requests = [served(f"b{i}", "blue") for i in range(8)] + [served(f"g{i}", "gr<een>") for i in range(2)]
    report = build_ab_report("uc", "ep", requests, [RatedFeedback("b1", "blue", 5, None)],
                             generated_at=datetime(2026, 1, 2, tzinfo=UTC))
    html = render_html(report)
    assert "<script" not in html
    assert "http://" not in html
    assert "https://" not in html
    assert "<style>" in html
    assert "gr&lt;een&gt;" in html  # names are escaped
    assert "fewer than 2 on a side" in html
    rows = render_csv(report).splitlines()
    assert len(rows) == 3
    assert rows[1].startswith("blue,,8,0.8,0,0,0.0,")


def test_verdict_says_which_way_each_measure_moved_and_the_same_when_it_did_not() -> None:
    from shared.feedback.ab_report import Comparison, verdict

    comparison = Comparison(deployment="v-2", baseline="v-1", rating_difference=-0.5, rating_p=0.164,
                            rating_significant=False, judge_difference=1.25, judge_p=0.001, judge_significant=True,
                            error_rate_difference=0.0, error_rate_p=1.0, error_rate_significant=False)

    line = verdict(comparison, 0.05)

    assert line == ("v-2 vs v-1 at α = 0.05: rating lower by 0.50 (not significant, p = 0.164); judge score higher by "
                    "1.25 (significant, p = 0.001); error rate the same (not significant, p = 1)")
    assert verdict(Comparison(deployment="v-2", baseline="v-1"), 0.05).endswith("not enough data to compare")
