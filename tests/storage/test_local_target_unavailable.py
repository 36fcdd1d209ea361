"""A Function package has no localstack/: when its settings still ask for the local target, the deployment ends at
once in deployment.rolled_back with the reason — not an ImportError retried ten times into the dead-letter queue."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from shared.blob_layout import DEPLOYMENTS, deployment_record_name
from shared.bootstrap import build_deployments
from shared.deployment.targets import LOCAL_ONLY
from shared.events import DeploymentRequested, DeploymentRolledBack
from shared.experiments.config import load_experiment
from shared.experiments.variants import Combination, materialize
from shared.ports import BlobStore
from shared.registry.blob_registry import BlobRegistry
from shared.services.deployments import deploy_approved_flow
from shared.services.registration import register_flow_if_changed
from shared.settings import Settings
from tests.fakes.memory import ManualClock

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.azurite


def test_a_package_without_the_local_stack_rolls_a_local_deployment_back(
        blob_store: BlobStore, clock: ManualClock, tmp_path: Path, unique: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "localstack" or m.startswith("localstack.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "localstack", None)  # the packaged layout: no localstack/
    use_case = f"uc_{unique}"
    shutil.copytree(ROOT / "flows" / "math_coding", tmp_path / "flows" / use_case)
    (tmp_path / "flows" / use_case / "experiment.dev.yaml").write_text(
        "deployment:\n  target: local\n  endpoint_name: math-coding-dev\n")
    registry = BlobRegistry(blob_store, clock)
    config = load_experiment(tmp_path / "flows" / use_case, "dev")
    version, _ = register_flow_if_changed(
        registry, name=f"flow-{unique}", flow_dir=materialize(config.flow_dir, Combination(), tmp_path / "registered"),
        properties={"variant": "{}", "hyperparameters": "{}", "metric.accuracy": "0.9"})
    settings = Settings.model_validate({
        "GENAIOPS_ENV": "dev", "GENAIOPS_FLOWS_DIR": str(tmp_path / "flows"), "GENAIOPS_WORK_DIR": str(tmp_path / "w"),
        "LOCAL_DEPLOYER_FACTORY": "localstack.deployment:build_local_target"})
    workspace = build_deployments(settings, blob_store, clock)
    event = DeploymentRequested.create({"use_case": use_case, "flow_name": f"flow-{unique}",
                                        "flow_version": version.version, "environment": "dev"},
                                       correlation_id=f"run-{use_case}")

    events = deploy_approved_flow(event, blob_store, registry, workspace, clock)

    assert [type(e) for e in events] == [DeploymentRolledBack]
    assert LOCAL_ONLY in events[0].payload.reason
    assert events[0].payload.traffic == {}
    # Final: a redelivery answers with the same outcome instead of trying again.
    assert deploy_approved_flow(event, blob_store, registry, workspace, clock) == events
    assert blob_store.read(DEPLOYMENTS, deployment_record_name(use_case, event.id))[0]
