"""The production monitor's arithmetic and its experiment.yaml block: window statistics per deployment, the
thresholds they are held to, and what a `monitoring:` block accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.experiments.monitoring_config import MonitoringConfig
from shared.monitoring.production_log import MAX_FIELD_CHARS, ProductionLine, loggable
from shared.monitoring.window import DeploymentWindow, breaches, percentile, window_statistics

T0 = datetime(2026, 3, 4, 12, tzinfo=UTC)


def served(deployment: str | None, status: int, latency_ms: float | None, *, pinned: bool = False) -> ProductionLine:
    return ProductionLine(time=T0, use_case="math_coding", endpoint="math-ep", request_id="r", deployment=deployment,
                          pinned=pinned, status=status, latency_ms=latency_ms)


def test_statistics_per_deployment_count_only_routed_requests() -> None:
    lines = [served("blue", 200, float(ms)) for ms in range(1, 101)]  # 1..100 ms
    lines += [served("green", 500 if i % 4 == 0 else 200, 40.0) for i in range(8)]  # 2 of 8 fail
    lines += [served("green", 500, 9999.0, pinned=True), served(None, 503, 1.0)]  # a smoke test; no deployment

    stats = window_statistics(lines)

    assert set(stats) == {"blue", "green"}
    assert (stats["blue"].requests, stats["blue"].errors, stats["blue"].error_rate) == (100, 0, 0.0)
    assert stats["blue"].latency_p50_ms == pytest.approx(50.5)
    assert stats["blue"].latency_p95_ms == pytest.approx(95.05)
    assert stats["blue"].latency_p99_ms == pytest.approx(99.01)
    assert (stats["green"].requests, stats["green"].errors, stats["green"].error_rate) == (8, 2, 0.25)
    assert stats["green"].latency_p95_ms == 40.0  # the pinned 9999 ms smoke request is not what users got


def test_percentiles_of_few_values() -> None:
    assert percentile([], 95) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([10.0, 20.0], 50) == pytest.approx(15.0)


def test_the_azure_log_without_latency_has_no_percentiles() -> None:
    [stats] = window_statistics([served("blue", 200, None), served("blue", 200, None)]).values()
    assert (stats.requests, stats.latency_p95_ms) == (2, None)


def window(requests: int, errors: int, p95: float | None) -> DeploymentWindow:
    return DeploymentWindow(deployment="green", requests=requests, errors=errors, error_rate=errors / requests,
                            latency_p95_ms=p95)


def test_breaches_name_each_threshold_broken_and_need_enough_requests() -> None:
    config = MonitoringConfig(min_requests=10, max_error_rate=0.1, latency_p95_ms=500)

    assert breaches(window(20, 2, 500.0), config) == []  # exactly at the thresholds is fine
    assert breaches(window(20, 3, 501.0), config) == ["error rate 15.0% (3/20) > 10.0%", "latency p95 501 ms > 500 ms"]
    assert breaches(window(9, 9, 10_000.0), config) == []  # too few requests to judge
    assert breaches(window(20, 20, None), MonitoringConfig(min_requests=1, max_error_rate=None)) == []


def test_the_monitoring_block_defaults_and_its_window() -> None:
    config = MonitoringConfig.model_validate({"schedule": "*/10 * * * * *", "window_minutes": 2.5,
                                              "auto_rollback": True})
    assert config.window == timedelta(minutes=2, seconds=30)
    assert (config.min_requests, config.max_error_rate, config.latency_p95_ms) == (20, 0.05, None)


@pytest.mark.parametrize(("block", "problem"), [
    ({"schedule": "*/5 * * * *"}, "not an NCRONTAB schedule"),  # five fields: a Unix cron, not NCRONTAB
    ({"schedule": "0 61 * * * *"}, "not an NCRONTAB schedule"),
    ({"max_error_rate": 1.5}, "less than or equal to 1"),
    ({"window_minutes": 0}, "greater than 0"),
    ({"auto_rollbak": True}, "unknown key(s) 'auto_rollbak'"),
])
def test_a_wrong_monitoring_block_says_what_is_wrong(block: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        MonitoringConfig.model_validate(block)


def test_logged_bodies_are_masked_and_bounded() -> None:
    assert loggable({"question": "2+2", "password": "hunter22"}) == {"question": "2+2", "password": "***"}
    personal = {"Customer": {"EMAIL": "ann@example.com", "orders": [{"phone": "555-0100", "item": "tea"}]}}
    assert loggable(personal, ["email", "Phone"]) == {
        "Customer": {"EMAIL": "***", "orders": [{"phone": "***", "item": "tea"}]}}
    huge = loggable({"text": "x" * (MAX_FIELD_CHARS * 2)})
    assert huge["truncated"] is True
    assert len(huge["head"]) == MAX_FIELD_CHARS
