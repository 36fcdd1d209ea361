"""What people are told when production goes wrong (sent through shared/notifications.py, the approvals' channel):
which use case, endpoint and deployment, the thresholds broken with the measured values, the window, what happened
to the traffic, and where the report is."""

from __future__ import annotations

from shared.events.monitoring import DeploymentDegraded, ProductionDegraded
from shared.notifications import Notification

_ROLLBACK = {
    "requested": "Traffic rolled back: its share goes back to {others} (a retire was requested).",
    "disabled": "Traffic not rolled back: auto_rollback is off; it still serves its share.",
    "impossible": "Traffic not rolled back: no other deployment of the endpoint could take its share.",
}


def degraded_notification(event: DeploymentDegraded, ab_report_url: str) -> Notification:
    """The monitor's verdict on a window of routed requests; the link is the endpoint's A/B report."""
    degraded, window = event.payload, event.payload.window
    others = ", ".join(name for name in sorted(degraded.traffic) if name != degraded.deployment) or "none"
    measured = [f"{window.requests} requests", f"{window.errors} errors ({window.error_rate:.1%})"]
    measured += [f"latency {name} {value:.0f} ms" for name, value in
                 (("p50", window.latency_p50_ms), ("p95", window.latency_p95_ms)) if value is not None]
    lines = [
        f"{degraded.use_case}: deployment {degraded.deployment} of endpoint {degraded.endpoint} "
        f"({degraded.environment}) broke its monitoring thresholds.",
        *(f"Broke: {breach}" for breach in degraded.breaches),
        f"Window: {window.start.isoformat(timespec='seconds')} to {window.end.isoformat(timespec='seconds')}: "
        + ", ".join(measured),
        "Traffic when seen: " + ", ".join(f"{name} {share}%" for name, share in sorted(degraded.traffic.items())),
        _ROLLBACK[degraded.rollback].format(others=others),
        f"A/B report: {ab_report_url}",
    ]
    return Notification(
        kind=event.type, subject=event.id,
        title=f"Degraded: {degraded.use_case} {degraded.deployment} on {degraded.endpoint} ({degraded.environment})",
        text="\n".join(lines), link=ab_report_url,
        facts={"event_id": event.id, "correlation_id": event.correlation_id, "use_case": degraded.use_case,
               "endpoint": degraded.endpoint, "deployment": degraded.deployment,
               "environment": degraded.environment, "breaches": degraded.breaches,
               "window_start": window.start.isoformat(), "window_end": window.end.isoformat(),
               "rollback": degraded.rollback})


def judged_degraded_notification(event: ProductionDegraded, report_link: str, ab_report_url: str) -> Notification:
    """The post-production evaluation's verdict on a deployment's judged answers; the link is its report."""
    degraded = event.payload
    lines = [
        f"{degraded.use_case}: deployment {degraded.deployment} of endpoint {degraded.endpoint} "
        f"({degraded.environment}) broke a threshold on its answers judged in production.",
        *(f"Broke: {breach}" for breach in degraded.breaches),
        f"Judged: {degraded.lines} line(s) up to {degraded.window_end.isoformat(timespec='seconds')}; "
        + ", ".join(f"{name} {value:.4g}" for name, value in sorted(degraded.metrics.items())),
        "Traffic not rolled back: the evaluation reports, a person decides (retire or promote through "
        "deployment.traffic_requested).",
        f"Report: {report_link}",
        f"A/B report: {ab_report_url}",
    ]
    return Notification(
        kind=event.type, subject=event.id,
        title=f"Judged degraded: {degraded.use_case} {degraded.deployment} on {degraded.endpoint} "
              f"({degraded.environment})",
        text="\n".join(lines), link=report_link,
        facts={"event_id": event.id, "correlation_id": event.correlation_id, "use_case": degraded.use_case,
               "endpoint": degraded.endpoint, "deployment": degraded.deployment,
               "environment": degraded.environment, "breaches": degraded.breaches, "metrics": degraded.metrics,
               "window_end": degraded.window_end.isoformat(), "report": degraded.report_uri})
