"""A use case in the reference template's format loads unchanged; settings override any connection field; the
local overlay stacks on top of the environment's overlay."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from localstack.serving.flow_server import served_connections
from shared.experiments.config import (
    ConnectionConfig,
    ExperimentConfigError,
    MissingSecretError,
    load_experiment,
    resolve_connection,
)
from shared.experiments.connections import connection_specs
from shared.services.deployment_settings import workspace_connections
from shared.settings import Settings

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "flows" / "reference_math"
LOCAL_ENDPOINT = "http://127.0.0.1:8089"
KEY = "sk-reference-3c9e"


@pytest.fixture
def use_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable copy of the reference-format use case; cwd is its parent so messages read 'reference_math/...'."""
    target = tmp_path / "reference_math"
    shutil.copytree(REFERENCE, target)
    monkeypatch.chdir(tmp_path)
    return target


def write(use_case: Path, name: str, text: str) -> None:
    (use_case / name).write_text(textwrap.dedent(text), encoding="utf-8")


def files(use_case: Path, environment: str | None, **kwargs: bool) -> list[str]:
    return [path.name for path in load_experiment(use_case, environment, **kwargs).config_files]


LOCAL_OVERLAY = """
    execution:
      lines_per_item: 1
    gate:
      primary_metric: accuracy
"""


# --- the reference format -----------------------------------------------------------------------------------------


def test_the_reference_format_loads_with_its_pr_overlay(use_case: Path) -> None:
    config = load_experiment(use_case, "pr", local=False)
    assert config.name == "math_standard_flow"  # the template's pr overlay renames; the flow stays the base's
    assert config.flow_dir == (use_case / "flows" / "math_standard_flow").resolve()
    assert [d.name for d in config.datasets] == ["math_coding_pr"]
    assert config.evaluators == []  # `evaluators:` with nothing under it: no evaluation in pull requests
    aoai = config.connection("aoai")
    assert aoai.connection_type == "AzureOpenAIConnection"
    assert aoai.fields["api_version"] == "2023-07-01-preview"  # unquoted in YAML, still text
    assert aoai.fields["api_base"] == "https://contoso-genaiops.openai.azure.com/"


def test_without_environment_the_base_evaluates_every_line(use_case: Path) -> None:
    config = load_experiment(use_case, local=False)
    [(evaluator, dataset)] = config.evaluator_datasets_for("math_coding_training")
    assert (evaluator.name, dataset.mappings["prediction"]) == ("math_evaluation_flow", "${run.outputs.answer}")


# --- connection fields from settings ------------------------------------------------------------------------------


def test_a_setting_named_after_a_field_overrides_its_literal_value(use_case: Path) -> None:
    aoai = load_experiment(use_case, "pr", local=False).connection("aoai")
    resolved = resolve_connection(aoai, {"AOAI_API_BASE": LOCAL_ENDPOINT, "AOAI_API_VERSION": "2024-02-01",
                                         "AOAI_API_KEY": KEY})
    assert resolved == {"api_base": LOCAL_ENDPOINT, "api_version": "2024-02-01", "api_key": KEY, "api_type": "azure"}
    # Without the setting the literal stays: the same file serves Azure and the local stack.
    assert resolve_connection(aoai, {"AOAI_API_KEY": KEY})["api_base"] == "https://contoso-genaiops.openai.azure.com/"


def test_the_field_setting_wins_over_a_differently_named_placeholder() -> None:
    connection = ConnectionConfig(name="aoai", connection_type="AzureOpenAIConnection", api_key="${team_secret}")
    assert resolve_connection(connection, {"AOAI_TEAM_SECRET": "placeholder"}) == {"api_key": "placeholder"}
    both = {"AOAI_TEAM_SECRET": "placeholder", "AOAI_API_KEY": "field"}
    assert resolve_connection(connection, both) == {"api_key": "field"}
    with pytest.raises(MissingSecretError, match=r"api_key \(\$\{team_secret\}\) -> AOAI_TEAM_SECRET"):
        resolve_connection(connection, {})


def test_executor_specs_carry_overrides_and_keep_the_key_secret(use_case: Path) -> None:
    config = load_experiment(use_case, "pr", local=False)
    [spec] = connection_specs(config, {"AOAI_API_BASE": LOCAL_ENDPOINT, "AOAI_API_KEY": KEY})
    assert spec.values["api_base"] == LOCAL_ENDPOINT
    assert spec.secrets["api_key"].get_secret_value() == KEY
    assert KEY not in repr(spec)


def test_a_served_flow_reads_the_overridden_field_from_its_environment(use_case: Path) -> None:
    connections = load_experiment(use_case, local=False).connections
    [declaration] = served_connections(connections, {"AOAI_API_BASE": LOCAL_ENDPOINT, "AOAI_API_KEY": KEY})
    assert declaration["value"] == {"api_base": "${env:AOAI_API_BASE}", "api_version": "2023-07-01-preview",
                                    "api_key": "${env:AOAI_API_KEY}", "api_type": "azure"}
    [literal] = served_connections(connections, {"AOAI_API_KEY": KEY})
    assert literal["value"]["api_base"] == "https://contoso-genaiops.openai.azure.com/"


def test_an_azure_ml_deployment_reads_the_overridden_field_from_the_app_settings(use_case: Path) -> None:
    config = load_experiment(use_case, "dev", local=False)
    [overridden] = workspace_connections(config, {"AOAI_API_BASE": LOCAL_ENDPOINT})
    assert overridden.settings == {"api_base": "AOAI_API_BASE", "api_key": "AOAI_API_KEY"}  # names, never values
    assert overridden.values == {"api_version": "2023-07-01-preview", "api_type": "azure"}
    [as_written] = workspace_connections(config, {})
    assert as_written.values["api_base"] == "https://contoso-genaiops.openai.azure.com/"


# --- overlays stack: experiment.yaml <- experiment.<env>.yaml <- experiment.local.yaml ----------------------------


def test_the_local_overlay_stacks_on_the_environment_overlay(use_case: Path) -> None:
    write(use_case, "experiment.local.yaml", LOCAL_OVERLAY)
    config = load_experiment(use_case, "pr", local=True)
    assert [path.name for path in config.config_files] == ["experiment.yaml", "experiment.pr.yaml",
                                                           "experiment.local.yaml"]
    assert [d.name for d in config.datasets] == ["math_coding_pr"]  # from the pr overlay
    assert config.evaluators == []
    assert config.execution.lines_per_item == 1  # from the local overlay
    assert config.gate is not None
    assert config.gate.primary_metric == "accuracy"
    assert config.environment == "pr"


def test_the_later_overlay_decides_a_block_both_name(use_case: Path) -> None:
    write(use_case, "experiment.local.yaml", """
        datasets:
        - name: math_coding_local
          source: data/math_pr.jsonl
    """)
    assert [d.name for d in load_experiment(use_case, "pr", local=True).datasets] == ["math_coding_local"]


def test_the_local_overlay_applies_once_in_the_local_environment(use_case: Path) -> None:
    write(use_case, "experiment.local.yaml", LOCAL_OVERLAY)
    assert files(use_case, "local", local=True) == ["experiment.yaml", "experiment.local.yaml"]
    assert files(use_case, "local", local=False) == ["experiment.yaml", "experiment.local.yaml"]
    assert files(use_case, None, local=True) == ["experiment.yaml", "experiment.local.yaml"]
    assert files(use_case, "pr", local=False) == ["experiment.yaml", "experiment.pr.yaml"]
    assert files(use_case, "dev", local=True) == ["experiment.yaml", "experiment.local.yaml"]  # no dev overlay


def test_the_app_settings_decide_not_the_process_environment(use_case: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    write(use_case, "experiment.local.yaml", LOCAL_OVERLAY)
    local_stack = Settings.model_validate({"GENAIOPS_ENV": "local"}).local_stack
    assert files(use_case, "pr", local=local_stack)[-1] == "experiment.local.yaml"
    pr_app = Settings.model_validate({"GENAIOPS_ENV": "pr"}).local_stack  # the pull-request app in Azure
    assert files(use_case, "pr", local=pr_app) == ["experiment.yaml", "experiment.pr.yaml"]
    monkeypatch.setenv("GENAIOPS_ENV", "local")  # the loader never looks: the caller says whether it is local
    assert files(use_case, "pr") == ["experiment.yaml", "experiment.pr.yaml"]


def test_a_problem_in_the_local_overlay_names_that_file(use_case: Path) -> None:
    write(use_case, "experiment.local.yaml", """
        execution:
          lines_per_itme: 1
    """)
    with pytest.raises(ExperimentConfigError) as error:
        load_experiment(use_case, "pr", local=True)
    expected = "reference_math/experiment.local.yaml: execution: unknown key(s) 'lines_per_itme'"
    assert str(error.value).startswith(expected)
