"""The records of the local deployer (target `local`), in `deployments/{use_case}/{endpoint}.json`: the router's
and every deployment's port and pid, flow version and traffic; and where a use case's connections come from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from shared.blob_layout import safe_segment


class LocalDeploymentState(BaseModel):
    name: str
    flow_name: str
    flow_version: str
    flow_dir: str  # the deployer's own copy
    environment_variables: dict[str, str] = {}  # non-secret by DeploymentConfig's rule; kept to restart it
    port: int
    pid: int | None
    log_file: str
    started_at: datetime


class LocalEndpointState(BaseModel):
    kind: Literal["local-endpoint"] = "local-endpoint"  # other records share the container
    use_case: str
    endpoint: str
    router_port: int
    router_pid: int | None
    telemetry_file: str
    seed: int | None = None
    request_timeout_ms: int = 60_000
    traffic: dict[str, int] = {}
    deployments: dict[str, LocalDeploymentState] = {}
    updated_at: datetime


def endpoint_state_name(use_case: str, endpoint: str) -> str:
    return f"{safe_segment(use_case)}/{safe_segment(endpoint)}.json"


ConnectionsFor = Callable[[str], Sequence[Any]]  # use case -> its ConnectionConfigs
MaskFieldsFor = Callable[[str], Sequence[str]]  # use case -> the fields its production log masks


def experiment_connections(flows_root: Path, environment: str | None) -> ConnectionsFor:
    """The connections a use case declares in its experiment.yaml (with the environment's overlay)."""

    def connections(use_case: str) -> Sequence[Any]:
        from shared.experiments.config import load_experiment

        return load_experiment(Path(flows_root) / use_case, environment).connections

    return connections


def experiment_mask_fields(flows_root: Path, environment: str | None) -> MaskFieldsFor:
    """The fields a use case's `monitoring:` block masks in production logs (none when it has no block or its
    experiment.yaml does not load: the router still masks secrets)."""

    def mask_fields(use_case: str) -> Sequence[str]:
        from shared.experiments.config import ExperimentConfigError, load_experiment

        try:
            monitoring = load_experiment(Path(flows_root) / use_case, environment).monitoring
        except ExperimentConfigError:
            return ()
        return monitoring.mask_fields if monitoring else ()

    return mask_fields
