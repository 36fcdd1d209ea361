"""DeployedEndpoints: the use cases under flows/ and the endpoint each deploys to are all the feedback and A/B report
routes know; anything else in the URL is EndpointNotFound (404) before a path is built from it."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from shared.deployment.port import DeploymentConfig, DeploymentError, EndpointNotFound
from shared.deployment.targets import UnavailableTarget
from shared.feedback.telemetry import ServedRequests
from shared.services.ab_testing import DeployedEndpoints, write_ab_report
from shared.services.deployments import DeploymentWorkspace
from shared.smoke.tester import SmokeTester
from tests.fakes.memory import ManualClock

FLOWS = Path(__file__).resolve().parents[2] / "flows"
NOTHING_DEPLOYED = UnavailableTarget("nothing is deployed in this test")


def directory(flows_root: Path = FLOWS, environment: str = "local") -> DeployedEndpoints:
    asked: list[DeploymentConfig] = []

    def deployer_for(config: DeploymentConfig) -> UnavailableTarget:
        asked.append(config)
        return NOTHING_DEPLOYED

    workspace = DeploymentWorkspace(flows_root=flows_root, work_root=flows_root, deployer_for=deployer_for,
                                    tester=SmokeTester(None, ManualClock()),  # type: ignore[arg-type]
                                    app_settings={}, local_stack=False, telemetry_for=deployer_for)
    return DeployedEndpoints(workspace, environment)


def test_a_use_case_folder_and_its_configured_endpoint_are_known() -> None:
    known = directory().find("math_coding", "math-coding-local")
    assert (known.use_case, known.endpoint) == ("math_coding", "math-coding-local")
    assert known.deployer is NOTHING_DEPLOYED
    assert known.telemetry is NOTHING_DEPLOYED


@pytest.mark.parametrize("use_case", [
    "no_such_use_case", "..", "../flows/math_coding", "math_coding/..", "x" * 5000, "", ".hidden", "math_coding\x00",
    "🙂", "flows",
])
def test_anything_but_a_use_case_folder_is_not_found(use_case: str) -> None:
    with pytest.raises(EndpointNotFound, match="no use case") as unknown:
        directory().find(use_case, "math-coding-local")
    assert len(str(unknown.value)) < 200  # a 5,000-character segment is not echoed whole


def test_another_endpoint_name_is_not_found_and_the_right_one_is_named() -> None:
    with pytest.raises(EndpointNotFound, match=r"has no endpoint 'math-coding-dev' in environment local "
                                               r"\(its endpoint is math-coding-local\)"):
        directory().find("math_coding", "math-coding-dev")


def test_a_broken_experiment_yaml_is_the_apps_fault_not_a_404(tmp_path: Path) -> None:
    shutil.copytree(FLOWS / "math_coding", tmp_path / "broken")
    (tmp_path / "broken" / "experiment.yaml").write_text("name: [unclosed\n")
    with pytest.raises(DeploymentError, match=r"experiment\.yaml does not load") as broken:
        directory(tmp_path).find("broken", "broken-local")
    assert not isinstance(broken.value, EndpointNotFound)


def test_the_ab_report_of_an_endpoint_without_deployments_is_not_found() -> None:
    class EmptyLog:
        live = True

        def served_requests(self, *args: object, **kwargs: object) -> ServedRequests:
            return ServedRequests()

    known = replace(directory().find("math_coding", "math-coding-local"), telemetry=EmptyLog())
    with pytest.raises(EndpointNotFound, match="has no deployment yet"):
        write_ab_report(known, None, ManualClock())  # type: ignore[arg-type]
