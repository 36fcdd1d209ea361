"""Telling people that production went wrong: deployment.degraded (the monitor's window) and production.degraded
(the judged answers) become a notification on the approvals' channel — the log line, or the webhook when
APPROVAL_WEBHOOK_URL is set.

Once per event: the bus's idempotency record for (handler, event id) keeps a redelivered event from notifying
again, and the monitor and the evaluation give a re-run's events the same ids. Best effort: a notifier that fails
is logged and the handler still completes — so the broker never redelivers the event to try the notification
again, and a webhook that is down costs its bounded retries once, not once per delivery.
"""

from __future__ import annotations

from urllib.parse import quote

from shared.events.monitoring import DeploymentDegraded, ProductionDegraded
from shared.monitoring.alerts import degraded_notification, judged_degraded_notification
from shared.notifications import Notifier, send
from shared.settings import Settings


def ab_report_url(settings: Settings, use_case: str, endpoint: str) -> str:
    """The A/B report route of the endpoint (a function key opens it)."""
    return f"{settings.public_base_url}/api/ab-report/{quote(use_case, safe='')}/{quote(endpoint, safe='')}"


def report_link(settings: Settings, report_uri: str) -> str:
    """A `reports/...` blob as a URL of the storage account when it is known (Azure: GenAIOpsStorage__blobServiceUri,
    opened by someone with read access); else the blob's name, as the event gives it."""
    if not settings.storage_blob_uri:
        return report_uri
    return f"{settings.storage_blob_uri.rstrip('/')}/{quote(report_uri, safe='/')}"


def alert_degraded(event: DeploymentDegraded, notifier: Notifier, settings: Settings) -> None:
    degraded = event.payload
    send(notifier, degraded_notification(event, ab_report_url(settings, degraded.use_case, degraded.endpoint)))


def alert_judged_degraded(event: ProductionDegraded, notifier: Notifier, settings: Settings) -> None:
    degraded = event.payload
    send(notifier, judged_degraded_notification(event, report_link(settings, degraded.report_uri),
                                                ab_report_url(settings, degraded.use_case, degraded.endpoint)))
