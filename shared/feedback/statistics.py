"""The statistics of the A/B report, with `math`/`statistics` only (no scipy in the Function's image): percentiles,
Student's t distribution through the regularized incomplete beta function (its continued fraction), the t interval
of a mean, Welch's t-test and the pooled two-proportion z-test."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

_NORMAL = statistics.NormalDist()


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
