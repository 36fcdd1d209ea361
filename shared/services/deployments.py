"""Ship an approved flow version: rebuild it from source and check it is byte-for-byte what was registered, deploy
it beside the version serving now (at 0 % traffic), smoke-test it pinned, then give it its configured share while
the prior keeps its own — or, when the smoke test fails, roll back: the new deployment stays at 0 % and the prior
keeps serving."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.blob_layout import DEPLOYMENTS, REPORTS, deployed_state_name
from shared.deployment.port import (
    Deployer,
    DeploymentConfig,
    DeploymentFailed,
    DeploymentRequest,
    EndpointNotFound,
    deployment_name_for,
    plan_traffic,
    prior_deployment,
    rollback_traffic,
)
from shared.events import (
    DeploymentCompleted,
    DeploymentRequested,
    DeploymentRolledBack,
    DeploymentVerified,
    Event,
    SmokeFailed,
    SmokePassed,
)
from shared.experiments.config import ExperimentConfig, load_experiment
from shared.experiments.gate import Baseline
from shared.experiments.variants import Combination, materialize
from shared.ports import BlobStore
from shared.registry.hashing import directory_hash
from shared.registry.port import Registry
from shared.smoke.service import SmokeTester, smoke_report_name, smoke_test_deployment


class DeploymentRefused(ValueError):
    """The request cannot be honoured as asked (unknown version, source drifted since registration)."""


@dataclass(frozen=True)
class DeploymentWorkspace:
    flows_root: Path
    work_root: Path
    deployer_for: Callable[[DeploymentConfig], Deployer]
    tester: SmokeTester


def deployment_config(config: ExperimentConfig, environment: str) -> DeploymentConfig:
    """The `deployment:` block (per environment through the overlays); locally by default."""
    default_endpoint = re.sub(r"[^a-z0-9-]+", "-", f"{config.name}-{environment}".lower()).strip("-")[:32]
    return DeploymentConfig.model_validate({"endpoint_name": default_endpoint, **(config.deployment or {})})


def _rebuild(config: ExperimentConfig, registry: Registry, name: str, version: str, target: Path) -> tuple[Path, dict]:
    """The registered flow, rebuilt from source (materialize is deterministic) and verified by its content hash."""
    registered = registry.flow(name, version)
    if registered is None:
        raise DeploymentRefused(f"flow {name} version {version} is not registered")
    combination = Combination(variant=json.loads(registered.properties.get("variant", "{}")),
                              hyperparameters=json.loads(registered.properties.get("hyperparameters", "{}")))
    flow_dir = materialize(config.flow_dir, combination, target)
    if directory_hash(flow_dir) != registered.content_hash:
        raise DeploymentRefused(f"the flow's source changed since {name} version {version} was registered "
                                f"({registered.content_hash}); register and approve the current source instead")
    metrics = {key.removeprefix("metric."): float(value) for key, value in registered.properties.items()
               if key.startswith("metric.")}
    return flow_dir, metrics


def deploy_approved_flow(event: DeploymentRequested, blobs: BlobStore, registry: Registry,
                         workspace: DeploymentWorkspace) -> list[Event]:
    request = event.payload
    config = load_experiment(workspace.flows_root / request.use_case, request.environment)
    settings = deployment_config(config, request.environment)
    deployer = workspace.deployer_for(settings)
    endpoint, name = settings.endpoint_name, deployment_name_for(request.flow_version)
    scratch = workspace.work_root / "deploy" / event.id
    flow_dir, metrics = _rebuild(config, registry, request.flow_name, request.flow_version, scratch / "flow")
    try:
        before = deployer.get_traffic(endpoint)
    except EndpointNotFound:
        before = {}
    try:
        deployer.deploy(DeploymentRequest(use_case=request.use_case, flow_name=request.flow_name,
                                          flow_version=request.flow_version, flow_dir=flow_dir,
                                          deployment_name=name, config=settings))
    except DeploymentFailed as failure:
        # It never served: nothing to smoke-test, the prior keeps its traffic. Not retried — it would fail again.
        shutil.rmtree(scratch, ignore_errors=True)
        return [event.follow_up(DeploymentRolledBack, {
            "use_case": request.use_case, "endpoint": endpoint, "deployment": name,
            "reason": f"deployment failed: {failure}"[:2000], "traffic": before})]
    ref = {"use_case": request.use_case, "endpoint": endpoint, "deployment": name, "flow_version": request.flow_version}
    events: list[Event] = [event.follow_up(DeploymentCompleted, {**ref, "traffic": deployer.get_traffic(endpoint)})]
    report = smoke_test_deployment(deployer, workspace.tester, use_case=request.use_case,
                                   use_case_dir=workspace.flows_root / request.use_case, config=config,
                                   flow_dir=flow_dir, endpoint=endpoint, deployment=name, smoke=settings.smoke)
    shutil.rmtree(scratch, ignore_errors=True)
    smoke = {"use_case": request.use_case, "endpoint": endpoint, "deployment": name,
             "checks_passed": sum(check.passed for check in report.checks),
             "checks_failed": sum(not check.passed for check in report.checks),
             "failures": report.failures[:50],
             "report_uri": f"{REPORTS}/{smoke_report_name(request.use_case, endpoint, name)}"}
    if report.passed:
        traffic = deployer.set_traffic(endpoint, plan_traffic(before, name, settings.traffic))
        baseline = Baseline(flow_version=request.flow_version, metrics=metrics)
        blobs.write(DEPLOYMENTS, deployed_state_name(request.use_case), baseline.model_dump_json(indent=2).encode())
        return [*events, events[0].follow_up(SmokePassed, smoke),
                events[0].follow_up(DeploymentVerified, {**ref, "traffic": traffic})]
    current = deployer.get_traffic(endpoint)
    traffic = deployer.set_traffic(endpoint, rollback_traffic(current, name, prior=prior_deployment(before, name)))
    reason = "; ".join(report.failures[:5]) or "smoke test failed"
    return [*events, events[0].follow_up(SmokeFailed, smoke),
            events[0].follow_up(DeploymentRolledBack, {"use_case": request.use_case, "endpoint": endpoint,
                                                       "deployment": name, "reason": reason, "traffic": traffic})]
