"""experiment.yaml: one use case's flows, datasets, evaluators, connections and run policy, read with its overlays.

The keys are the reference template's (name, flow, connections, datasets, evaluators, runtime), so its use cases
move over unchanged; our extensions (variants, hyperparameters, execution, gate, deployment) are optional.
`experiment.<env>.yaml` overlays replace whole top-level blocks; on the local stack `experiment.local.yaml` is applied
last, on top of the environment's overlay. Every problem is reported as
`<file>: <field path>: <what is wrong and how to fix it>`, and never echoes a value that could be a secret.
The model lives in experiment_model.py, connections in connections.py; their public names are importable here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shared.experiments.connections import (
    ConnectionConfig,
    ConnectionType,
    EnvSecretSource,
    SecretSource,
    is_secret_field,
    resolve_connection,
    secret_variable,
)
from shared.experiments.experiment_model import (
    FLOW_FILES,
    DatasetConfig,
    EvaluatorConfig,
    EvaluatorDatasetConfig,
    ExecutionConfig,
    ExperimentConfig,
    VariantMode,
    VariantPolicy,
    is_flow_dir,
)
from shared.experiments.fields import (
    ExperimentConfigError,
    MissingSecretError,
    SourceKind,
    parse_blob_source,
    source_kind,
    type_name,
)

__all__ = [
    "ENVIRONMENTS", "EXPERIMENT_FILE", "FLOW_FILES", "LOCAL", "YAML_KEYS",
    "ConnectionConfig", "ConnectionType", "DatasetConfig", "EnvSecretSource", "EvaluatorConfig",
    "EvaluatorDatasetConfig", "ExecutionConfig", "ExperimentConfig", "ExperimentConfigError", "MissingSecretError",
    "SecretSource", "SourceKind", "VariantMode", "VariantPolicy", "is_flow_dir", "is_secret_field",
    "load_experiment", "overlay_files", "parse_blob_source", "resolve_connection", "secret_variable", "source_kind",
]

EXPERIMENT_FILE = "experiment.yaml"
ENVIRONMENTS = ("pr", "dev", "prod", "local")
LOCAL = "local"
YAML_KEYS = (
    "name", "flow", "connections", "datasets", "evaluators", "runtime", "resources",
    "variants", "hyperparameters", "execution", "gate", "deployment", "monitoring",
)


# --- YAML -------------------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates as text: `api_version: 2024-02-01` must reach the API as that string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


# --- loading -----------------------------------------------------------------------------------------------------


def _display(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _read(path: Path) -> dict[str, Any]:
    label = _display(path)
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ExperimentConfigError(f"{label}: not valid YAML: {error}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ExperimentConfigError(f"{label}: must be a mapping of top-level keys (got a {type_name(document)})")
    unknown = [str(key) for key in document if key not in YAML_KEYS]
    if unknown:
        raise ExperimentConfigError(
            f"{label}: unknown top-level key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(YAML_KEYS)}"
        )
    return document


def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


_MISSING_HINTS = {
    "name": "; add name: <name>",
    "datasets": "; add at least one dataset (name, source, mappings)",
    "source": "; add source: data/<file>.jsonl | blob://<container>/<path> | azureml:<name>:<version>",
}


def _message(error: Any) -> str:
    kind, message = error["type"], error["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"is required here{_MISSING_HINTS.get(str(error['loc'][-1]), '')}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping of key: value (got a {type_name(error['input'])})"
    if kind == "list_type":
        return f"must be a list of entries, each starting with '- ' (got a {type_name(error['input'])})"
    return message


def _validation_problems(error: ValidationError, origins: Mapping[str, Path], default: Path) -> list[str]:
    problems = []
    for item in error.errors(include_url=False, include_input=True):
        loc = item["loc"]
        origin = origins.get(str(loc[0]), default) if loc else default
        problems.append(f"{_display(origin)}: {_field_path(loc)}: {_message(item)}")
    return problems


def _unique(names: Sequence[str], what: str) -> list[str]:
    duplicates = sorted({name for name in names if names.count(name) > 1})
    return [f"{what} {name!r} is defined more than once; give each a unique name" for name in duplicates]


def _semantic_problems(config: ExperimentConfig, datasets_origin: str = "") -> list[tuple[str, str]]:
    """(field path, problem) for what a single field cannot see: references between blocks and the file system."""
    problems: list[tuple[str, str]] = []
    base = config.base_dir
    standard = [dataset.name for dataset in config.datasets]
    known = f"{', '.join(standard)}{f' (from {datasets_origin})' if datasets_origin else ''}"
    problems += [("connections", p) for p in _unique([c.name for c in config.connections], "connection")]
    problems += [("datasets", p) for p in _unique(standard, "dataset")]
    problems += [("evaluators", p) for p in _unique([e.name for e in config.evaluators], "evaluator")]

    def missing_flow(path: str, written: str, resolved: Path) -> None:
        if not is_flow_dir(resolved):
            problems.append((path, (
                f"{written!r} is not a flow folder (looked for {' or '.join(FLOW_FILES[::2])} or a .prompty file "
                f"in {_display(base / written)} and {_display(base / 'flows' / written)}); fix the path, relative "
                f"to {_display(base)}"
            )))

    def missing_source(path: str, dataset: DatasetConfig | EvaluatorDatasetConfig) -> None:
        if dataset.local_path is not None and not dataset.local_path.exists():
            written = dataset.source_text or ""
            problems.append((path, (
                f"{written!r} does not exist (looked in {_display(base / written)} and "
                f"{_display(base / 'data' / written)}); fix the path, relative to {_display(base)}"
            )))

    missing_flow("flow", config.flow or config.name, config.flow_dir)
    for index, dataset in enumerate(config.datasets):
        missing_source(f"datasets[{index}].source", dataset)
    for index, judge in enumerate(config.production_evaluators):
        missing_flow(f"monitoring.evaluation.evaluators[{index}].flow", judge.flow or judge.name, judge.flow_dir)
    for e_index, evaluator in enumerate(config.evaluators):
        missing_flow(f"evaluators[{e_index}].flow", evaluator.flow or evaluator.name, evaluator.flow_dir)
        problems += [(f"evaluators[{e_index}].datasets", p)
                     for p in _unique([d.name for d in evaluator.datasets], "evaluator dataset")]
        for d_index, dataset in enumerate(evaluator.datasets):
            path = f"evaluators[{e_index}].datasets[{d_index}]"
            if dataset.reference is None:
                problems.append((f"{path}.reference", (
                    f"{dataset.name!r} names no standard dataset, so it needs 'reference: <standard dataset>' "
                    f"(one of: {known})"
                )))
            elif dataset.reference not in standard:
                problems.append((f"{path}.reference", (
                    f"{dataset.reference!r} names no standard dataset; use one of: {known}"
                )))
            elif dataset.source != config.datasets[standard.index(dataset.reference)].source:
                missing_source(f"{path}.source", dataset)  # a reused source was already checked above
    return problems


def _block(field_path: str) -> str:
    return re.split(r"[.\[]", field_path, maxsplit=1)[0]


def overlay_files(use_case_dir: Path, environment: str | None, local: bool) -> list[Path]:
    """The overlays that apply, in order: `experiment.<environment>.yaml`, then `experiment.local.yaml` on the
    local stack (once, also when the environment is `local`); files that do not exist are left out."""
    names = [f"experiment.{env}.yaml" for env in (environment, LOCAL if local else None) if env is not None]
    return [path for name in dict.fromkeys(names) if (path := use_case_dir / name).is_file()]


def load_experiment(use_case_dir: Path, environment: str | None = None, *, local: bool = False) -> ExperimentConfig:
    """The use case's experiment.yaml with its overlays applied in order (see overlay_files), fully checked.

    `local`: stack experiment.local.yaml on top — the app runs on the local stack (Settings.local_stack), so a `pr`
    experiment there reads experiment.yaml <- experiment.pr.yaml <- experiment.local.yaml. The `local`
    environment reads its overlay either way."""
    base_dir = Path(use_case_dir).resolve()
    base_file = base_dir / EXPERIMENT_FILE
    if not base_file.is_file():
        raise ExperimentConfigError(f"{_display(base_file)}: not found; a use case folder needs an {EXPERIMENT_FILE}")
    if environment is not None and environment not in ENVIRONMENTS:
        raise ExperimentConfigError(
            f"{_display(base_file)}: unknown environment {environment!r}; use one of: {', '.join(ENVIRONMENTS)}"
        )
    document = _read(base_file)
    origins = dict.fromkeys(document, base_file)
    files = [base_file]
    for overlay_file in overlay_files(base_dir, environment, local):
        overlay = _read(overlay_file)
        document.update(overlay)  # whole top-level blocks: the later file decides a block entirely
        origins.update(dict.fromkeys(overlay, overlay_file))
        files.append(overlay_file)
    try:
        config = ExperimentConfig.model_validate(
            {**document, "base_dir": base_dir, "environment": environment, "config_files": tuple(files)}
        )
    except ValidationError as error:
        problems = _validation_problems(error, origins, base_file)
        raise ExperimentConfigError("\n".join(problems), problems) from None  # `from None`: inputs may be secrets
    # A cross-block mistake is easiest to fix when the message says which file the other block came from.
    datasets_origin = origins.get("datasets", base_file)
    note = _display(datasets_origin) if datasets_origin != origins.get("evaluators", base_file) else ""
    problems = [f"{_display(origins.get(_block(path), base_file))}: {path}: {problem}"
                for path, problem in _semantic_problems(config, note)]
    if problems:
        raise ExperimentConfigError("\n".join(problems), problems)
    return config
