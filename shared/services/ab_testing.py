"""The deployment phase's monitoring loop: user feedback, the A/B report comparing an endpoint's deployments, and
promoting or retiring a deployment when the comparison says so."""

from __future__ import annotations

from pathlib import Path

from shared.deployment.port import Deployer, DeploymentError, rollback_traffic
from shared.events import DeploymentTrafficChanged, DeploymentTrafficRequested
from shared.experiments.config import load_experiment
from shared.feedback.ab_report import ABReport, report_endpoint
from shared.ports import BlobStore, Clock
from shared.services.deployments import DeploymentWorkspace, deployment_config


def deployer_of(workspace: DeploymentWorkspace, flows_root: Path, use_case: str, environment: str) -> Deployer:
    config = load_experiment(flows_root / use_case, environment)
    return workspace.deployer_for(deployment_config(config, environment))


def write_ab_report(use_case: str, endpoint: str, blobs: BlobStore, clock: Clock,
                    deployer: Deployer) -> tuple[ABReport, dict[str, str]]:
    telemetry_file = getattr(deployer, "telemetry_file", None)
    if telemetry_file is None:
        raise DeploymentError("per-request telemetry of Azure ML endpoints lives in Application Insights; the A/B "
                              "report reads the local router's telemetry only")
    from localstack.serving.ab_router import read_telemetry

    return report_endpoint(blobs, clock, use_case, endpoint, read_telemetry(telemetry_file(endpoint)),
                           traffic=deployer.get_traffic(endpoint))


def change_traffic(event: DeploymentTrafficRequested, deployer: Deployer) -> DeploymentTrafficChanged:
    request = event.payload
    current = deployer.get_traffic(request.endpoint)
    if request.deployment not in current:
        raise DeploymentError(f"{request.endpoint} has no deployment {request.deployment}")
    if request.action == "promote":
        wanted = {name: 100 if name == request.deployment else 0 for name in current}
    else:
        wanted = rollback_traffic(current, request.deployment)
    traffic = deployer.set_traffic(request.endpoint, wanted)
    return event.follow_up(DeploymentTrafficChanged, {**request.model_dump(), "traffic": traffic})
