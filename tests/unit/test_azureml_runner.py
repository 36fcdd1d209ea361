"""The Azure ML runner at the SDK boundary: PFClient and its RunOperations are autospecs of the real classes (a call
with a wrong signature fails); what is submitted is the SDK's own Run entity, checked with the SDK's own validation
and turned into the REST request the service would receive; runs read back are built by the SDK from run-history
payloads; get_details DataFrames come from the SDK's real get_details code over service-shaped child runs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec, patch

import pytest
from pydantic import SecretStr

from shared.adapters.azureml_runner import (
    AzureMLCompute,
    AzureMLFlowRunner,
    azureml_run_name,
    azureml_runner_from_settings,
    promptflow_azure,
)
from shared.experiments.remote_runner import RemoteFlowRunner, RemoteRunStatus
from shared.experiments.runner import ConnectionSpec, ExecutionLimits, RunSpec
from shared.settings import Settings

promptflow_azure()  # the compatibility alias, before the SDK's modules below are imported

from promptflow._sdk._constants import RunStatus  # noqa: E402
from promptflow._sdk._errors import RunNotFoundError  # noqa: E402
from promptflow.azure import PFClient  # noqa: E402
from promptflow.azure.operations import RunOperations  # noqa: E402
from promptflow.entities import Run  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-very-secret-0123456789"
PORTAL = "https://ml.azure.com/prompts/flow/bulkrun/run/x/details"
RUN_ID = "exp-20260203.solve=v1,extract=v0.math_test"
NAME = azureml_run_name(RUN_ID)


@pytest.fixture
def pf() -> Any:
    client = create_autospec(PFClient, instance=True)
    client.runs = create_autospec(RunOperations, instance=True)
    return client


def flow_dir(tmp_path: Path) -> Path:
    root = tmp_path / "math_flow"
    root.mkdir(parents=True)
    (root / "flow.dag.yaml").write_text("inputs:\n  question: {type: string}\noutputs: {}\nnodes: []\n")
    return root


def spec(tmp_path: Path, **overrides: Any) -> RunSpec:
    values: dict[str, Any] = {
        "run_id": RUN_ID, "kind": "standard", "flow_dir": flow_dir(tmp_path), "flow": "math_flow",
        "dataset": "math_test", "variant": {"solve": "v1"},
        "rows": [{"question": "2+2", "n": 1}, {"question": "3+4", "n": 2}, {"question": "1+1", "n": 3}]}
    return RunSpec(**{**values, **overrides})


def aoai() -> ConnectionSpec:
    return ConnectionSpec(name="aoai", type="AzureOpenAIConnection", values={"api_base": "https://x.openai.azure.com"},
                          secrets={"api_key": SecretStr(SECRET)})


def cloud_run(status: str, name: str = NAME, error: dict[str, Any] | None = None) -> Run:
    """A Run as RunOperations.get returns it: built by the SDK from a run-history payload."""
    return Run._from_run_history_entity({
        "runId": name, "runType": "azureml.promptflow.FlowRun", "status": status, "displayName": RUN_ID,
        "description": "", "tags": {}, "properties": {"azureml.promptflow.flow_name": "math_flow"},
        "createdUtc": "2026-02-03T04:05:00.000Z", "startTimeUtc": "2026-02-03T04:05:06.000Z",
        "endTimeUtc": "2026-02-03T04:07:06.000Z" if status in ("Completed", "Failed", "Canceled") else None,
        "error": error, "createdBy": {}, "portal_url": PORTAL, "data": None, "run": None, "output": None})


def details(children: list[dict[str, Any]]) -> Any:
    """The DataFrame RunOperations.get_details builds, from the child runs the service returns."""
    ops = create_autospec(RunOperations, instance=True)
    ops._get_flow_runs_pagination.return_value = [dict(child) for child in children]  # the SDK sorts in place
    ops._get_inputs_outputs_from_child_runs.side_effect = (
        lambda runs: RunOperations._get_inputs_outputs_from_child_runs(ops, runs))
    return RunOperations.get_details.__wrapped__(ops, run=NAME, all_results=True)


def runner(pf: Any, compute: AzureMLCompute | None = None) -> AzureMLFlowRunner:
    return AzureMLFlowRunner(lambda: pf, compute)


# --- submit -------------------------------------------------------------------------------------------------------

def capture_submission(pf: Any) -> dict[str, Any]:
    """What the SDK sees during create_or_update (it uploads the data file during the call: read it now)."""
    seen: dict[str, Any] = {}

    def create(run: Run, **kwargs: Any) -> Run:
        run._validate_for_run_create_operation()  # the SDK's own check: flow folder and data file exist
        seen.update(run=run, kwargs=kwargs, data=Path(run.data).read_text(encoding="utf-8"),
                    request=run._to_rest_object().serialize())
        return cloud_run("NotStarted")

    pf.runs.get.side_effect = RunNotFoundError("not found")
    pf.runs.create_or_update.side_effect = create
    return seen


def test_submit_sends_the_flow_the_rows_and_an_identity_mapping_to_serverless_compute(pf: Any,
                                                                                      tmp_path: Path) -> None:
    seen = capture_submission(pf)
    run_spec = spec(tmp_path)

    name = runner(pf).submit(run_spec, [aoai()], ExecutionLimits(concurrency=4, line_timeout_seconds=90))

    assert name == NAME
    pf.runs.get.assert_called_once_with(run=NAME)
    pf.runs.create_or_update.assert_called_once()
    assert set(pf.runs.create_or_update.call_args.kwargs) == {"run", "stream"}
    assert seen["kwargs"] == {"stream": False}  # no runtime: a compute session on serverless compute
    run: Run = seen["run"]
    assert isinstance(run, Run)
    assert Path(run.flow) == run_spec.flow_dir.resolve()
    assert [json.loads(line) for line in seen["data"].splitlines()] == run_spec.rows
    assert run.column_mapping == {"question": "${data.question}", "n": "${data.n}"}
    assert (run.name, run.display_name, run.variant) == (NAME, RUN_ID, None)  # variant is baked into the flow
    assert run.environment_variables == {"PF_LINE_TIMEOUT_SEC": "90", "PF_WORKER_COUNT": "4"}
    assert run.connections == {}  # workspace connections by name, no overrides
    assert run._resources is None  # serverless, VM size chosen by Azure ML
    assert run.tags == {"genaiops.run_id": RUN_ID, "genaiops.kind": "standard", "genaiops.flow": "math_flow",
                        "genaiops.dataset": "math_test"}
    request = seen["request"]  # the body the SDK submits
    assert request["runId"] == NAME
    assert request["inputsMapping"] == {"question": "${data.question}", "n": "${data.n}"}
    assert "vmSize" not in request
    assert "computeName" not in request
    assert not Path(run.data).exists()  # the scratch file is gone once submitted


def test_a_serverless_vm_size_a_compute_instance_or_a_runtime_come_from_settings(pf: Any, tmp_path: Path) -> None:
    seen = capture_submission(pf)
    runner(pf, AzureMLCompute(instance_type="Standard_D4as_v4")).submit(spec(tmp_path / "a"), [], ExecutionLimits())
    assert seen["run"]._resources == {"instance_type": "Standard_D4as_v4"}
    assert seen["request"]["vmSize"] == "Standard_D4as_v4"

    runner(pf, AzureMLCompute(compute="ci-genaiops")).submit(spec(tmp_path / "b"), [], ExecutionLimits())
    assert seen["request"]["computeName"] == "ci-genaiops"

    runner(pf, AzureMLCompute(runtime="rt-genaiops")).submit(spec(tmp_path / "c"), [], ExecutionLimits())
    assert seen["kwargs"] == {"stream": False, "runtime": "rt-genaiops"}


def test_resubmitting_an_existing_run_returns_its_name_without_a_second_run(pf: Any, tmp_path: Path) -> None:
    pf.runs.get.return_value = cloud_run("Running")
    assert runner(pf).submit(spec(tmp_path), [aoai()], ExecutionLimits()) == NAME
    pf.runs.get.assert_called_once_with(run=NAME)
    pf.runs.create_or_update.assert_not_called()


def test_losing_a_race_to_submit_the_same_run_is_success(pf: Any, tmp_path: Path) -> None:
    pf.runs.get.side_effect = [RunNotFoundError("not yet"), cloud_run("NotStarted")]
    pf.runs.create_or_update.side_effect = RuntimeError("run already exists")
    assert runner(pf).submit(spec(tmp_path), [], ExecutionLimits()) == NAME


def test_a_failed_submission_of_a_run_that_does_not_exist_raises(pf: Any, tmp_path: Path) -> None:
    pf.runs.get.side_effect = RunNotFoundError("not found")
    pf.runs.create_or_update.side_effect = RuntimeError("quota exceeded")
    with pytest.raises(RuntimeError, match="quota"):
        runner(pf).submit(spec(tmp_path), [], ExecutionLimits())


def test_specs_that_cannot_run_are_refused_before_anything_is_sent(pf: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 line numbers for 3 rows"):
        runner(pf).submit(spec(tmp_path / "a", line_numbers=[0, 1]), [], ExecutionLimits())
    with pytest.raises(ValueError, match="no rows"):
        runner(pf).submit(spec(tmp_path / "b", rows=[]), [], ExecutionLimits())
    pf.runs.create_or_update.assert_not_called()


def test_secrets_never_reach_the_submitted_arguments_or_the_logs(pf: Any, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    seen = capture_submission(pf)
    caplog.set_level(logging.DEBUG)
    runner(pf).submit(spec(tmp_path), [aoai()], ExecutionLimits())
    run: Run = seen["run"]
    submitted = json.dumps({"request": seen["request"], "data": seen["data"], "kwargs": seen["kwargs"],
                            "mapping": run.column_mapping, "env": run.environment_variables,
                            "connections": run.connections, "tags": run.tags, "resources": run._resources},
                           default=str)
    assert SECRET not in submitted
    assert SECRET not in caplog.text
    assert "aoai" in caplog.text  # the connection the workspace must hold is named


def test_run_names_follow_azure_ml_rules_and_stay_distinct() -> None:
    import re

    for run_id in (RUN_ID, "a.b", "a_b", "../x y/z", "é" * 300, "x" * 400):
        name = azureml_run_name(run_id)
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}", name), name
        assert azureml_run_name(run_id) == name  # stable: resubmits find the run
    assert azureml_run_name("a.b") != azureml_run_name("a_b")


# --- status -------------------------------------------------------------------------------------------------------

EXPECTED = {"Completed": "completed", "Failed": "failed", "Canceled": "failed", "CancelRequested": "failed",
            **dict.fromkeys(("Queued", "NotStarted", "Preparing", "Provisioning", "Starting", "Running",
                             "Finalizing", "Unapproved", "NotResponding", "Pausing", "Paused"), "running")}


def test_every_run_status_of_the_sdk_is_mapped() -> None:
    assert set(RunStatus.list()) == set(EXPECTED)


@pytest.mark.parametrize(("status", "state"), sorted(EXPECTED.items()))
def test_status_maps_azure_ml_run_status(pf: Any, status: str, state: str) -> None:
    pf.runs.get.return_value = cloud_run(status)
    result = runner(pf).status(NAME)
    assert result.state == state
    pf.runs.get.assert_called_once_with(run=NAME)
    if state == "running":
        assert result.message == ""
    if state == "failed":
        assert NAME in result.message


def test_a_failed_run_reports_azure_mls_error_redacted(pf: Any) -> None:
    pf.runs.get.return_value = cloud_run("Failed", error={"error": {
        "code": "UserError", "message": "Connection aoai failed: api_key=abc123 rejected"}})
    result = runner(pf).status(NAME)
    expected = f"Azure ML run {NAME} failed: Connection aoai failed: api_key=*** rejected"
    assert result == RemoteRunStatus(state="failed", message=expected)


def test_status_of_a_missing_run_is_failed_and_of_an_unknown_status_running(pf: Any) -> None:
    pf.runs.get.side_effect = RunNotFoundError("nope")
    assert runner(pf).status(NAME).state == "failed"
    pf.runs.get.side_effect = None
    pf.runs.get.return_value = cloud_run("Hibernating")
    assert runner(pf).status(NAME) == RemoteRunStatus(state="running",
                                                      message="Azure ML status 'Hibernating' not recognised")


# --- collect ------------------------------------------------------------------------------------------------------

CHILDREN = [  # as the service returns them, in any order; line 1 failed
    {"index": 2, "inputs": {"question": "1+1", "n": 3}, "output": {"answer": 2, "explanation": "sum"},
     "status": "Completed"},
    {"index": 1, "inputs": {"question": "3+4", "n": 2}, "output": None, "status": "Failed",
     "error": {"message": "timeout"}},
    {"index": 0, "inputs": {"question": "2+2", "n": 1}, "output": {"answer": 4, "explanation": "add"},
     "status": "Completed"},
]


def test_collect_turns_get_details_into_lines_with_our_line_numbers(pf: Any, tmp_path: Path) -> None:
    pf.runs.get.return_value = cloud_run("Completed")
    pf.runs.get_details.return_value = details(CHILDREN)
    run_spec = spec(tmp_path, line_numbers=[10, 11, 12])

    result = runner(pf).collect(run_spec, NAME)

    pf.runs.get_details.assert_called_once_with(run=NAME, all_results=True)
    pf.runs.get_metrics.assert_not_called()  # a standard run has no metrics
    assert (result.run_id, result.kind, result.status, result.variant) == (RUN_ID, "standard", "completed",
                                                                           {"solve": "v1"})
    assert [line.line_number for line in result.lines] == [10, 11, 12]
    first, failed, last = result.lines
    assert first.inputs == {"question": "2+2", "n": 1}
    assert first.outputs == {"answer": 4, "explanation": "add"}  # an int again, not pandas' 4.0
    assert isinstance(first.outputs["answer"], int)
    assert (first.error, last.outputs) == (None, {"answer": 2, "explanation": "sum"})
    assert failed.outputs is None
    assert PORTAL in (failed.error or "")
    assert (result.failed_lines, result.duration_seconds) == (1, 120.0)


def test_collect_of_an_evaluation_run_brings_its_metrics(pf: Any, tmp_path: Path) -> None:
    pf.runs.get.return_value = cloud_run("Completed")
    pf.runs.get_details.return_value = details([
        {"index": 0, "inputs": {"prediction": "4", "answer": "4"}, "output": {"score": 1.0}},
        {"index": 1, "inputs": {"prediction": "6", "answer": "7"}, "output": {"score": 0.0}}])
    pf.runs.get_metrics.return_value = {"accuracy": 0.5, "error_rate": 0, "note": "text", "flag": True}
    run_spec = spec(tmp_path, run_id=f"{RUN_ID}.accuracy", kind="evaluation", evaluator="accuracy",
                    parent_run_id=RUN_ID, rows=[{"prediction": "4", "answer": "4"}, {"prediction": "6", "answer": "7"}])

    result = runner(pf).collect(run_spec, NAME)

    pf.runs.get_metrics.assert_called_once_with(run=NAME)
    assert result.metrics == {"accuracy": 0.5, "error_rate": 0.0}
    assert [line.outputs for line in result.lines] == [{"score": 1.0}, {"score": 0.0}]
    assert (result.evaluator, result.parent_run_id) == ("accuracy", RUN_ID)


def test_collect_when_every_line_failed_or_a_line_is_missing(pf: Any, tmp_path: Path) -> None:
    pf.runs.get.return_value = cloud_run("Completed")
    pf.runs.get_details.return_value = details([dict(child, output=None) for child in CHILDREN])
    result = runner(pf).collect(spec(tmp_path / "a"), NAME)
    assert [line.failed for line in result.lines] == [True, True, True]
    assert result.lines[0].inputs == {"question": "2+2", "n": 1}

    pf.runs.get_details.return_value = details([child for child in CHILDREN if child["index"] == 0])
    result = runner(pf).collect(spec(tmp_path / "b"), NAME)
    assert [line.error for line in result.lines[1:]] == ["no result from Azure ML for this line"] * 2
    assert result.lines[2].inputs == {"question": "1+1", "n": 3}


def test_collect_of_a_failed_run_is_a_failed_result_without_asking_for_details(pf: Any, tmp_path: Path) -> None:
    pf.runs.get.return_value = cloud_run("Canceled")
    result = runner(pf).collect(spec(tmp_path), NAME)
    assert (result.status, result.error, result.lines) == ("failed", f"Azure ML run {NAME} was canceled", [])
    pf.runs.get_details.assert_not_called()


# --- wiring -------------------------------------------------------------------------------------------------------

def test_the_adapter_satisfies_the_port(pf: Any) -> None:
    port: RemoteFlowRunner = runner(pf)
    assert port is not None


def test_factory_reads_the_workspace_and_compute_from_settings_and_builds_the_client_lazily() -> None:
    settings = Settings(AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000001", AZURE_RESOURCE_GROUP="rg1",
                        AZUREML_WORKSPACE_NAME="ws1", AZUREML_PF_INSTANCE_TYPE="Standard_D4as_v4")
    credential = object()
    with patch("promptflow.azure.PFClient", autospec=True) as client_class:
        built = azureml_runner_from_settings(settings, credential)  # type: ignore[arg-type]
        client_class.assert_not_called()  # PFClient reads the workspace when built: not before a run needs it
        assert built._compute == AzureMLCompute(instance_type="Standard_D4as_v4")
        assert built._pf is client_class.return_value
    client_class.assert_called_once_with(credential=credential, subscription_id="00000000-0000-0000-0000-000000000001",
                                         resource_group_name="rg1", workspace_name="ws1")


def test_factory_names_missing_settings() -> None:
    with pytest.raises(RuntimeError, match="AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME"):
        azureml_runner_from_settings(Settings(AZURE_SUBSCRIPTION_ID="s"), object())  # type: ignore[arg-type]


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    probe = ("import sys, shared.adapters.azureml_runner, shared.experiments.remote_runner; "
             "print(any(m.startswith(('promptflow', 'azure.ai.ml', 'pandas')) for m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
    assert output.stdout.strip() == "False"


def test_promptflow_azure_imports_against_the_pinned_azure_ai_ml() -> None:
    probe = ("from shared.adapters.azureml_runner import promptflow_azure; pa = promptflow_azure(); "
             "from promptflow.azure.operations._artifact_utilities import DatastoreType; "
             "print(pa.PFClient.__name__, DatastoreType.AZURE_BLOB == 'AzureBlob')")
    output = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
    assert output.stdout.split() == ["PFClient", "True"]
