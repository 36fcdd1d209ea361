"""From a registered flow to a deployment: ask the approvers — unless that very version serves already — and turn
their yes into deployment.requested."""

from __future__ import annotations

from shared.approvals import ApprovalSubject
from shared.blob_layout import REPORTS
from shared.events import (
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequested,
    DeploymentRequested,
    DeploymentUnchanged,
    FlowRegistered,
)
from shared.experiments.store import ExperimentStore
from shared.notifications import Notifier
from shared.ports import BlobStore, Clock
from shared.reports.writer import report_locations
from shared.services.approvals import ApprovalSettings, request_approval
from shared.services.gate import deployed_baseline
from shared.settings import Settings


def _gate_summary(store: ExperimentStore, use_case: str, experiment_id: str) -> list[str]:
    """One line per gate check, from the verdict kept in the experiment store — the evidence the approver sees."""
    decision = store.verdict(use_case, experiment_id)
    if decision is None:
        return []
    lines = [f"{'passed' if c['passed'] else 'failed'}: {c['metric']} {c['comparison']} {c['threshold']:g} "
             f"(actual {c['actual'] if c['actual'] is not None else 'none'})" for c in decision["checks"]]
    return lines or [f"no thresholds; best by {decision['primary_metric']}"]


def ask_for_approval(event: FlowRegistered, *, blobs: BlobStore, store: ExperimentStore, clock: Clock,
                     settings: Settings, config: ApprovalSettings,
                     notifier: Notifier) -> ApprovalRequested | ApprovalRejected | DeploymentUnchanged:
    flow = event.payload
    deployed = deployed_baseline(blobs, flow.use_case)
    if not flow.created and deployed is not None and deployed.flow_version == flow.version:
        # Re-running an unchanged flow registers nothing new: approving and deploying the version that already
        # serves would only cost an approver's time and a redeploy.
        return event.follow_up(DeploymentUnchanged, {
            "use_case": flow.use_case, "flow_name": flow.name, "flow_version": flow.version,
            "reason": f"{flow.name} version {flow.version} (content {flow.content_hash}) is the version deployed "
                      "now: nothing to approve or deploy"})
    subject = ApprovalSubject(
        use_case=flow.use_case, flow_name=flow.name, flow_version=flow.version, metrics=flow.metrics,
        gate_summary=_gate_summary(store, flow.use_case, flow.experiment_id),
        report_uri=f"{REPORTS}/{report_locations(flow.use_case, flow.experiment_id).summary_html}",
    )
    return request_approval(event, subject, blobs=blobs, clock=clock, settings=settings, config=config,
                            notifier=notifier)


def deployment_for(event: ApprovalGranted, settings: Settings) -> DeploymentRequested:
    granted = event.payload
    return event.follow_up(DeploymentRequested, {
        "use_case": granted.use_case, "flow_name": granted.flow_name, "flow_version": granted.flow_version,
        "environment": settings.environment, "approval_id": granted.approval_id,
    })
