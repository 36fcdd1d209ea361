"""A deployment to target `container` ends at once with the reason (the pipeline builds and rolls out that image),
instead of raising in the handler: a raise was retried up to the queue's max delivery count and dead-lettered,
and the pipeline's `wait` timed out after two hours."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from shared import bootstrap
from shared.deployment.port import DeploymentConfig, DeploymentTarget, OperationStatus
from shared.deployment.targets import CONTAINER_BY_PIPELINE
from shared.settings import Settings


class _Clock:
    def now(self) -> datetime:
        return datetime(2026, 3, 1, tzinfo=UTC)


def test_the_container_target_fails_its_first_step_with_the_reason(tmp_path: Path) -> None:
    settings = Settings.model_validate({"GENAIOPS_WORK_DIR": str(tmp_path)})
    workspace = bootstrap.build_deployments(settings, object(), _Clock())  # type: ignore[arg-type]
    config = DeploymentConfig(target=DeploymentTarget.CONTAINER, endpoint_name="math-coding-dev",
                              image_repository="acrgenaiops.azurecr.io/flows")

    state = workspace.deployer_for(config).begin_endpoint(config)

    assert state.status is OperationStatus.FAILED  # the deployment service rolls back at once, no retries
    assert state.message == CONTAINER_BY_PIPELINE
    assert workspace.deployer_for(config).get_traffic("math-coding-dev") == {}  # nothing of it exists here
