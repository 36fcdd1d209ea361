import shutil
import textwrap
from pathlib import Path

import pytest

from shared.experiments.config import (
    YAML_KEYS,
    ConnectionConfig,
    EnvSecretSource,
    ExperimentConfigError,
    MissingSecretError,
    is_secret_field,
    load_experiment,
    resolve_connection,
)

FLOWS = Path(__file__).parent / "fixtures" / "experiments" / "flows"

MINIMAL = """
name: math_coding
flow: flows/standard
datasets:
- name: math_training
  source: data/math_train.jsonl
  mappings:
    question: "${data.question}"
"""


@pytest.fixture
def use_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable copy of the fixture use case; cwd is its flows/ parent so messages read 'flows/math_coding/...'."""
    target = tmp_path / "flows" / "math_coding"
    shutil.copytree(FLOWS / "math_coding", target)
    monkeypatch.chdir(tmp_path)
    return target


def write(use_case: Path, text: str, name: str = "experiment.yaml") -> None:
    (use_case / name).write_text(textwrap.dedent(text), encoding="utf-8")


def error_of(use_case: Path, environment: str | None = None) -> str:
    with pytest.raises(ExperimentConfigError) as error:
        load_experiment(use_case, environment)
    return str(error.value)


# --- loading ------------------------------------------------------------------------------------------------------


def test_the_fixture_use_case_loads_with_every_block() -> None:
    config = load_experiment(FLOWS / "math_coding")

    assert config.name == "math_coding"
    assert config.base_dir == (FLOWS / "math_coding").resolve()
    assert config.flow_dir == (FLOWS / "math_coding" / "flows" / "standard").resolve()
    assert config.flow_dir.is_absolute()
    assert [d.name for d in config.datasets] == ["math_training", "shared_qa"]
    training, shared = config.datasets
    assert training.local_path == (FLOWS / "math_coding" / "data" / "math_train.jsonl").resolve()
    assert training.source_kind == "local"
    assert training.blob is None
    assert shared.source_kind == "blob"
    assert shared.blob == ("datasets", "shared/qa.jsonl")
    assert shared.local_path is None
    assert config.runtime == "automatic"
    assert config.resources == {"instance_type": "Standard_E4ds_v4"}
    assert config.variants.mode == "all"
    assert config.variants.max_combinations == 64
    assert config.hyperparameters == {"temperature": [0.0, 0.7]}
    assert (config.execution.concurrency, config.execution.max_failure_rate) == (4, 0.1)
    assert config.execution.line_timeout_seconds == 60
    assert config.gate is not None
    assert config.gate.primary_metric == "accuracy"
    assert [(t.metric, t.min) for t in config.gate.thresholds] == [("accuracy", 0.8)]
    assert config.deployment == {"target": "local", "traffic": {"blue": 90, "green": 10}}
    assert config.environment is None
    assert config.config_files == ((FLOWS / "math_coding" / "experiment.yaml").resolve(),)


def test_connection_fields_stay_as_written_and_dates_stay_text() -> None:
    connection = load_experiment(FLOWS / "math_coding").connection("aoai")
    assert connection.connection_type == "AzureOpenAIConnection"
    assert connection.fields == {
        "api_base": "https://example.openai.azure.com/",
        "api_version": "2024-02-01",  # YAML would make this a date; the API needs the text
        "api_key": "${api_key}",
        "api_type": "azure",
    }


def test_evaluators_their_datasets_and_lookups() -> None:
    config = load_experiment(FLOWS / "math_coding")
    evaluator = config.evaluator("math_accuracy")
    assert evaluator.flow_dir == (FLOWS / "math_coding" / "flows" / "evaluation").resolve()

    [(scorer, eval_data)] = config.evaluator_datasets_for("math_training")
    assert scorer is evaluator
    assert eval_data.name == "math_training_eval"
    assert eval_data.local_path == (FLOWS / "math_coding" / "data" / "math_eval.jsonl").resolve()
    assert eval_data.mappings["question"] == "${run.inputs.question}"

    # Template style: naming a standard dataset reuses it (reference and source filled in).
    [(_, reused)] = config.evaluator_datasets_for("shared_qa")
    assert (reused.reference, reused.source) == ("shared_qa", "blob://datasets/shared/qa.jsonl")

    assert config.dataset("math_training") is config.datasets[0]
    assert config.dataset("math_training_eval") is eval_data
    assert [d.name for d in config.all_datasets()] == ["math_training", "shared_qa", "math_training_eval", "shared_qa"]
    with pytest.raises(KeyError, match="known: math_training, math_training_eval, shared_qa"):
        config.dataset("nope")


def test_extensions_are_optional_with_defaults(use_case: Path) -> None:
    write(use_case, MINIMAL)
    config = load_experiment(use_case)
    assert config.variants.mode == "all"
    assert config.variants.max_combinations == 64
    assert config.hyperparameters == {}
    assert (config.execution.concurrency, config.execution.max_failure_rate) == (8, 0.0)
    assert config.execution.line_timeout_seconds == 120
    assert (config.gate, config.deployment, config.runtime, config.resources) == (None, None, None, None)
    assert config.evaluators == []
    assert config.connections == []


def test_a_reference_template_experiment_moves_over_unchanged(use_case: Path) -> None:
    # Shaped like the template's math_coding/experiment.yaml: a name-only connection, api_endpoint, a lower-cased
    # connection type, a flow given by folder name (found under flows/) and a source found under data/.
    write(use_case, """
        name: math_coding
        flow: standard

        connections:
        - name: aoai
          connection_type: azureopenaiconnection
          api_endpoint: ${api_endpoint}
          api_version: 2023-07-01-preview
          api_key: ${api_key}
          api_type: azure

        - name: math_coding_training
        datasets:
        - name: math_coding_training
          source: math_train.jsonl
          description: "This dataset is for prompt experiments."
          mappings:
            question: "${data.question}"

        evaluators:
        - name: math_evaluation_flow
          flow: flows/evaluation
          datasets:
          - name: math_coding_test
            reference: math_coding_training
            source: data/math_eval.jsonl
            description: "This dataset is for evaluating flows."
            mappings:
              groundtruth: "${data.answer}"
              prediction: "${run.outputs.answer}"
    """)
    config = load_experiment(use_case)
    assert config.flow_dir == (use_case / "flows" / "standard").resolve()
    assert config.datasets[0].local_path == (use_case / "data" / "math_train.jsonl").resolve()
    assert config.connections[0].connection_type == "AzureOpenAIConnection"
    assert config.connections[1].connection_type is None
    assert config.evaluator_datasets_for("math_coding_training")[0][1].name == "math_coding_test"


def test_evaluator_flow_defaults_to_its_name_under_flows() -> None:
    config = load_experiment(FLOWS / "qa_bot")
    assert config.evaluators[0].flow is None
    assert config.evaluators[0].flow_dir == (FLOWS / "qa_bot" / "flows" / "relevance").resolve()
    # reference without source: the evaluator reads the referenced dataset's data
    assert config.evaluators[0].datasets[0].source == "data/qa_local.jsonl"


# --- overlays -----------------------------------------------------------------------------------------------------


def test_pr_overlay_replaces_whole_blocks_and_an_empty_block_means_none() -> None:
    config = load_experiment(FLOWS / "math_coding", "pr")
    assert [d.name for d in config.datasets] == ["math_pr"]
    assert config.datasets[0].local_path == (FLOWS / "math_coding" / "data" / "math_pr.jsonl").resolve()
    assert config.evaluators == []  # `evaluators:` with nothing under it
    assert config.hyperparameters == {"temperature": [0.0, 0.7]}  # not named by the overlay: kept
    assert config.environment == "pr"
    assert [path.name for path in config.config_files] == ["experiment.yaml", "experiment.pr.yaml"]


def test_dev_overlay_replaces_only_the_blocks_it_names() -> None:
    config = load_experiment(FLOWS / "math_coding", "dev")
    assert config.variants.mode == "one-at-a-time"
    assert config.variants.max_combinations == 64  # the block is replaced, so its defaults apply
    assert config.hyperparameters == {"answer.max_tokens": [64, 128]}
    assert [d.name for d in config.datasets] == ["math_training", "shared_qa"]
    assert config.gate is not None


def test_an_environment_without_overlay_file_uses_the_base() -> None:
    config = load_experiment(FLOWS / "math_coding", "prod")
    assert [d.name for d in config.datasets] == ["math_training", "shared_qa"]
    assert len(config.config_files) == 1


def test_an_unknown_environment_is_an_error_not_a_silent_base_config() -> None:
    message = error_of(FLOWS / "math_coding", "prd")
    assert "unknown environment 'prd'; use one of: pr, dev, prod, local" in message


def test_an_overlay_emptying_datasets_is_reported_against_the_overlay(use_case: Path) -> None:
    write(use_case, "datasets:\n", "experiment.pr.yaml")
    message = error_of(use_case, "pr")
    assert message.startswith("flows/math_coding/experiment.pr.yaml: datasets: needs at least one dataset")


def test_evaluators_kept_from_base_must_still_reference_the_overlay_datasets(use_case: Path) -> None:
    write(use_case, """
        datasets:
        - name: other
          source: data/math_pr.jsonl
    """, "experiment.pr.yaml")
    message = error_of(use_case, "pr")
    assert (
        "flows/math_coding/experiment.yaml: evaluators[0].datasets[0].reference: 'math_training' names no standard "
        "dataset; use one of: other (from flows/math_coding/experiment.pr.yaml)"
    ) in message


# --- validation errors --------------------------------------------------------------------------------------------


def test_mappings_given_as_a_list_name_file_field_and_fix(use_case: Path) -> None:
    write(use_case, MINIMAL + """
- name: second
  source: data/math_pr.jsonl
  mappings:
  - question
""")
    assert error_of(use_case) == (
        "flows/math_coding/experiment.yaml: datasets[1].mappings: must be a mapping of flow input -> "
        "'${data.<column>}' (got a list)"
    )


def test_unknown_top_level_keys_list_the_allowed_ones(use_case: Path) -> None:
    write(use_case, MINIMAL + "evaluator: []\nvariant: {}\n")
    message = error_of(use_case)
    assert message == (
        "flows/math_coding/experiment.yaml: unknown top-level key(s) 'evaluator', 'variant'; "
        f"allowed: {', '.join(YAML_KEYS)}"
    )


def test_unknown_keys_in_an_overlay_name_the_overlay(use_case: Path) -> None:
    write(use_case, "hyperparameter:\n  temperature: [0.1]\n", "experiment.dev.yaml")
    assert error_of(use_case, "dev").startswith("flows/math_coding/experiment.dev.yaml: unknown top-level key(s)")


def test_unknown_nested_keys_list_the_allowed_ones(use_case: Path) -> None:
    write(use_case, MINIMAL.replace("  mappings:", "  mapping:"))
    message = error_of(use_case)
    assert "datasets[0]: unknown key(s) 'mapping'; allowed: name, description, mappings, source" in message


def test_reference_on_a_standard_dataset_explains_where_it_belongs(use_case: Path) -> None:
    write(use_case, MINIMAL + "  reference: math_training\n")
    assert "'reference' (reference is only for evaluator datasets)" in error_of(use_case)


def test_standard_datasets_may_only_map_data_columns(use_case: Path) -> None:
    write(use_case, MINIMAL + '    prediction: "${run.outputs.answer}"\n')
    message = error_of(use_case)
    assert "datasets[0].mappings: prediction: ${run.outputs.answer} refers to a run" in message
    assert "use '${data.<column>}' here" in message


def test_malformed_references_are_rejected_at_load(use_case: Path) -> None:
    write(use_case, MINIMAL.replace('"${data.question}"', '"Q: ${data.question}"'))
    assert "datasets[0].mappings: question: 'Q: ${data.question}' is not a reference" in error_of(use_case)


def test_evaluator_references_must_name_a_standard_dataset(use_case: Path) -> None:
    write(use_case, MINIMAL + """
evaluators:
- name: accuracy
  flow: flows/evaluation
  datasets:
  - name: eval
    reference: math_trainig
    source: data/math_eval.jsonl
    mappings:
      prediction: "${run.outputs.answer}"
  - name: unrelated
    source: data/math_eval.jsonl
""")
    message = error_of(use_case)
    assert (
        "evaluators[0].datasets[0].reference: 'math_trainig' names no standard dataset; use one of: math_training"
    ) in message
    assert "evaluators[0].datasets[1].reference: 'unrelated' names no standard dataset, so it needs" in message


def test_flow_and_local_sources_must_exist(use_case: Path) -> None:
    write(use_case, """
        name: math_coding
        flow: flows/standrad
        datasets:
        - name: math_training
          source: data/missing.jsonl
        evaluators:
        - name: accuracy
          flow: flows/nowhere
          datasets:
          - name: math_training
    """)
    with pytest.raises(ExperimentConfigError) as error:
        load_experiment(use_case)
    problems = error.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("flows/math_coding/experiment.yaml: flow: 'flows/standrad' is not a flow folder")
    assert "datasets[0].source: 'data/missing.jsonl' does not exist" in problems[1]
    assert "fix the path, relative to flows/math_coding" in problems[1]
    assert "evaluators[0].flow: 'flows/nowhere' is not a flow folder" in problems[2]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("blob://Datasets/x.jsonl", "is not blob://<container>/<path>"),
        ("blob://datasets", "is not blob://<container>/<path>"),
        ("azureml:qa", "is not azureml:<name>:<version>"),
        ("https://example.com/qa.jsonl", "unsupported scheme"),
        ("/data/qa.jsonl", "is absolute"),
    ],
)
def test_malformed_sources(use_case: Path, source: str, expected: str) -> None:
    write(use_case, MINIMAL.replace("data/math_train.jsonl", source))
    assert expected in error_of(use_case)


def test_remote_sources_are_not_looked_up_on_disk(use_case: Path) -> None:
    write(use_case, MINIMAL.replace("data/math_train.jsonl", "azureml:math_training:3"))
    assert load_experiment(use_case).datasets[0].source_kind == "azureml"


def test_duplicate_names_are_errors(use_case: Path) -> None:
    write(use_case, MINIMAL + MINIMAL.split("datasets:\n")[1])
    assert "datasets: dataset 'math_training' is defined more than once" in error_of(use_case)


def test_every_problem_is_reported_at_once(use_case: Path) -> None:
    write(use_case, """
        name: math coding
        datasets:
        - name: a
        execution:
          concurrency: 0
          max_failure_rate: 1.5
    """)
    with pytest.raises(ExperimentConfigError) as error:
        load_experiment(use_case)
    text = "\n".join(error.value.problems)
    assert len(error.value.problems) == 4
    assert "name: 'math coding' is not a valid name" in text
    assert "datasets[0].source: is required here; add source:" in text
    assert "execution.concurrency: Input should be greater than or equal to 1" in text
    assert "execution.max_failure_rate: Input should be less than or equal to 1" in text


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("variants:\n  mode: explicit\n", "variants: mode explicit needs a non-empty 'explicit' list"),
        ("variants:\n  mode: every\n", "variants.mode: Input should be 'all', 'one-at-a-time', 'defaults' or"),
        ("variants:\n  explicit: [{answer: variant_0}]\n", "'explicit' is only read with mode: explicit"),
        ("variants:\n  max_combinations: 0\n", "variants.max_combinations: Input should be greater than or equal"),
        ("hyperparameters:\n  answer.max-tokens: [1]\n", "must be an input name (temperature) or node.input"),
        ("hyperparameters:\n  temperature: []\n", "temperature: needs at least one value"),
        ("hyperparameters:\n  temperature: [0.1, 0.1]\n", "temperature: has duplicate values"),
        ("hyperparameters: [temperature]\n", "hyperparameters: must be a mapping of input or node.input"),
        ("datasets: {name: x}\n", "datasets: must be a list of entries, each starting with '- ' (got a mapping)"),
    ],
)
def test_extension_blocks_are_validated(use_case: Path, block: str, expected: str) -> None:
    base = MINIMAL.split("datasets:", maxsplit=1)[0] if block.startswith("datasets") else MINIMAL
    write(use_case, base + block)
    assert expected in error_of(use_case)


def test_a_single_hyperparameter_value_pins_it(use_case: Path) -> None:
    write(use_case, MINIMAL + "hyperparameters:\n  temperature: 0.2\n  answer.max_tokens: [64, 128]\n")
    assert load_experiment(use_case).hyperparameters == {"temperature": [0.2], "answer.max_tokens": [64, 128]}


def test_explicit_variants_load(use_case: Path) -> None:
    write(use_case, MINIMAL + "variants:\n  mode: explicit\n  explicit: [{summarize: variant_1, answer: variant_0}]\n")
    assert load_experiment(use_case).variants.explicit == [{"summarize": "variant_1", "answer": "variant_0"}]


def test_invalid_yaml_names_the_file(use_case: Path) -> None:
    write(use_case, "name: [unclosed\n")
    assert error_of(use_case).startswith("flows/math_coding/experiment.yaml: not valid YAML:")


def test_a_folder_without_experiment_yaml(tmp_path: Path) -> None:
    assert "experiment.yaml: not found" in error_of(tmp_path)


# --- secrets ------------------------------------------------------------------------------------------------------

LEAKED = "sk-live-0123456789abcdef"


@pytest.mark.parametrize("field", ["api_key", "key", "password", "token", "client_secret", "access_token"])
def test_literal_secrets_are_rejected_without_echoing_them(use_case: Path, field: str) -> None:
    write(use_case, MINIMAL + f"""
connections:
- name: aoai
  connection_type: AzureOpenAIConnection
  api_base: https://example.openai.azure.com/
  {field}: {LEAKED}
""")
    with pytest.raises(ExperimentConfigError) as error:
        load_experiment(use_case)
    message = str(error.value)
    assert f"connections[0]: {field} holds a literal value, but experiment.yaml must not contain secrets" in message
    assert f"write '{field}: ${{{field}}}' and set AOAI_{field.upper()} in the environment" in message
    assert LEAKED not in message
    assert error.value.__cause__ is None  # the pydantic error (which holds the input) is not chained
    assert error.value.__suppress_context__


def test_secret_field_names() -> None:
    assert all(map(is_secret_field, ["api_key", "key", "password", "token", "secret", "connection_string"]))
    assert not any(map(is_secret_field, ["api_base", "api_version", "api_type", "deployment_name", "organization"]))


def test_placeholders_resolve_from_upper_cased_connection_and_field() -> None:
    connection = load_experiment(FLOWS / "math_coding").connection("aoai")
    resolved = resolve_connection(connection, {"AOAI_API_KEY": LEAKED})
    assert resolved == {
        "api_base": "https://example.openai.azure.com/",
        "api_version": "2024-02-01",
        "api_key": LEAKED,
        "api_type": "azure",
    }
    assert LEAKED not in repr(connection)  # resolution returns a new dict; the model keeps the placeholder


def test_a_missing_secret_names_the_variable() -> None:
    connection = ConnectionConfig(name="aoai-prod", connection_type="AzureOpenAIConnection",
                                  api_base="${api_base}", api_key="${api_key}")
    with pytest.raises(MissingSecretError) as error:
        resolve_connection(connection, {"AOAI_PROD_API_BASE": "https://x"})
    assert "connection 'aoai-prod': no value for api_key (${api_key}) -> AOAI_PROD_API_KEY" in str(error.value)
    assert "AOAI_PROD_API_BASE" not in str(error.value)


class VaultDouble:
    """Stands in for a Key Vault SecretSource: the protocol is one method."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.asked: list[str] = []

    def get(self, name: str) -> str | None:
        self.asked.append(name)
        return self.secrets.get(name)


def test_secret_sources_are_tried_in_order() -> None:
    connection = ConnectionConfig(name="aoai", api_key="${api_key}", api_base="${api_base}")
    vault = VaultDouble({"AOAI_API_KEY": "from-vault", "AOAI_API_BASE": "https://vault"})
    resolved = resolve_connection(connection, {"AOAI_API_BASE": "https://env"}, sources=[vault])
    assert resolved == {"api_key": "from-vault", "api_base": "https://env"}
    assert resolve_connection(connection, sources=[vault]) == {"api_key": "from-vault", "api_base": "https://vault"}


def test_the_templates_case_preserved_variable_still_works() -> None:
    connection = ConnectionConfig(name="aoai", api_key="${api_key}")
    assert resolve_connection(connection, {"aoai_api_key": "legacy"}) == {"api_key": "legacy"}


def test_settings_come_only_from_what_the_caller_hands_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOAI_API_KEY", "from-os")  # the composition root passes the environment; nothing reads it here
    with pytest.raises(MissingSecretError):
        resolve_connection(ConnectionConfig(name="aoai", api_key="${api_key}"))
    assert EnvSecretSource({"AOAI_API_KEY": "given"}).get("AOAI_API_KEY") == "given"
    assert "given" not in repr(EnvSecretSource({"AOAI_API_KEY": "given"}))
