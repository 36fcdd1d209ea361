"""Statistics of one sliding window of an endpoint's traffic, per deployment, and the thresholds they are held to.

The TrafficStatistics port answers them for a window. Adapters: `LogTrafficStatistics` here computes them from
production log lines (the local routers' log, which records status and latency); `LogAnalyticsTrafficStatistics`
(shared/monitoring/azure_traffic.py) has Log Analytics summarize an Azure ML endpoint's traffic log.

From log lines, only requests the traffic split routed count: pinned ones (smoke tests reaching a 0 % deployment)
are not what users got. Latency percentiles interpolate between the observed values
(shared.feedback.statistics.percentile).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from shared.events.monitoring import WindowStatistics
from shared.experiments.monitoring_config import MonitoringConfig
from shared.feedback.statistics import percentile
from shared.monitoring.production_log import ProductionLine, ProductionLog


class DeploymentWindow(WindowStatistics):
    """One deployment's requests in the window."""

    deployment: str


class TrafficStatistics(Protocol):
    def statistics(self, use_case: str, endpoint: str, start: datetime, end: datetime) -> dict[str, DeploymentWindow]:
        """Per deployment that served requests of `endpoint` from `start` to `end`: requests, errors, latency.
        TelemetryError when the source cannot be read."""
        ...


class LogTrafficStatistics:
    """The statistics of the production log's lines of the window."""

    def __init__(self, production_log: ProductionLog) -> None:
        self.production_log = production_log

    def statistics(self, use_case: str, endpoint: str, start: datetime, end: datetime) -> dict[str, DeploymentWindow]:
        return window_statistics(self.production_log.lines(use_case, endpoint, start, end))


def window_statistics(lines: Iterable[ProductionLine]) -> dict[str, DeploymentWindow]:
    """Per deployment: requests, errors (non-2xx), error rate and latency percentiles of the routed requests."""
    by_deployment: dict[str, list[ProductionLine]] = {}
    for line in lines:
        if line.deployment is not None and not line.pinned:
            by_deployment.setdefault(line.deployment, []).append(line)
    result = {}
    for name, served in sorted(by_deployment.items()):
        errors = sum(line.failed for line in served)
        latencies = sorted(line.latency_ms for line in served if line.latency_ms is not None)
        result[name] = DeploymentWindow(deployment=name, requests=len(served), errors=errors,
                                        error_rate=errors / len(served), latency_p50_ms=percentile(latencies, 50),
                                        latency_p95_ms=percentile(latencies, 95),
                                        latency_p99_ms=percentile(latencies, 99))
    return result


def breaches(window: DeploymentWindow, config: MonitoringConfig) -> list[str]:
    """What the window breaks of the thresholds, one sentence each; none below `min_requests` (too few to judge)."""
    if window.requests < config.min_requests:
        return []
    found = []
    if config.max_error_rate is not None and window.error_rate > config.max_error_rate:
        found.append(f"error rate {window.error_rate:.1%} ({window.errors}/{window.requests}) > "
                     f"{config.max_error_rate:.1%}")
    if (config.latency_p95_ms is not None and window.latency_p95_ms is not None
            and window.latency_p95_ms > config.latency_p95_ms):
        found.append(f"latency p95 {window.latency_p95_ms:.0f} ms > {config.latency_p95_ms:.0f} ms")
    return found
