"""experiment.yaml: one use case's flows, datasets, evaluators, connections and run policy.

The keys are the reference template's (name, flow, connections, datasets, evaluators, runtime), so its use cases
move over unchanged; our extensions (variants, hyperparameters, execution, gate, deployment) are optional.
`experiment.<env>.yaml` overlays replace whole top-level blocks. Every problem is reported as
`<file>: <field path>: <what is wrong and how to fix it>`, and never echoes a value that could be a secret.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, ClassVar, Literal, Protocol, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from shared.experiments.gate import GateConfig
from shared.experiments.mappings import MappingError, ReferenceKind, parse_reference

EXPERIMENT_FILE = "experiment.yaml"
ENVIRONMENTS = ("pr", "dev", "prod", "local")
YAML_KEYS = (
    "name", "flow", "connections", "datasets", "evaluators", "runtime", "resources",
    "variants", "hyperparameters", "execution", "gate", "deployment",
)
# What makes a folder a flow promptflow can run (DAG, flex, or a prompty file).
FLOW_FILES = ("flow.dag.yaml", "flow.dag.yml", "flow.flex.yaml", "flow.flex.yml")

ConnectionType = Literal["AzureOpenAIConnection", "OpenAIConnection", "CustomConnection"]
VariantMode = Literal["all", "one-at-a-time", "defaults", "explicit"]
SourceKind = Literal["local", "blob", "azureml"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PLACEHOLDER = re.compile(r"^\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}$")
_SECRET_FIELD = re.compile(r"(key|secret|password|passwd|token|credential|connection[_-]?string)s?$", re.I)
_HYPERPARAMETER = re.compile(r"^(?:[A-Za-z0-9_-]+\.)?[A-Za-z_][A-Za-z0-9_]*$")
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$")
_CONNECTION_TYPES = {kind.lower(): kind for kind in get_args(ConnectionType)}


class ExperimentConfigError(ValueError):
    """An experiment.yaml that cannot be used; `problems` holds one line per problem."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


class MissingSecretError(ExperimentConfigError):
    """A connection placeholder with no value in any secret source."""


# --- YAML -------------------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates as text: `api_version: 2024-02-01` must reach the API as that string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


# --- small validators ---------------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", type(None): "nothing"}.get(type(value), type(value).__name__)


def _check_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a name (got a {_type_name(value)})")
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid name; use letters, digits, '_', '-' and '.', starting with a "
                         "letter or digit")
    return value


def source_kind(source: str) -> SourceKind:
    if source.startswith("blob://"):
        return "blob"
    if source.startswith("azureml:"):
        return "azureml"
    return "local"


def parse_blob_source(source: str) -> tuple[str, str] | None:
    """(container, blob name) of a `blob://<container>/<path>` source, else None."""
    if source_kind(source) != "blob":
        return None
    container, _, name = source.removeprefix("blob://").partition("/")
    return container, name


def _check_source(value: Any) -> str:
    usage = "use a path relative to the use case folder, blob://<container>/<path> or azureml:<name>:<version>"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string; {usage} (got a {_type_name(value)})")
    kind = source_kind(value)
    if kind == "blob":
        container, name = parse_blob_source(value) or ("", "")
        if not _CONTAINER.match(container) or not name or name.startswith("/"):
            raise ValueError(f"{value!r} is not blob://<container>/<path> (container: 3-63 of a-z, 0-9, '-')")
    elif kind == "azureml":
        parts = value.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{value!r} is not azureml:<name>:<version>")
    elif "://" in value:
        raise ValueError(f"{value!r} has an unsupported scheme; {usage}")
    elif PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute():
        raise ValueError(f"{value!r} is absolute; {usage} so the use case works on every machine")
    return value


def _check_mappings(value: Any, allowed: tuple[ReferenceKind, ...], shape: str) -> dict[str, Any]:
    if value is None:
        return {}  # `mappings:` left empty: each flow input reads the same-named column
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of flow input -> {shape} (got a {_type_name(value)})")
    problems: list[str] = []
    for flow_input, reference in value.items():
        if not isinstance(flow_input, str):
            problems.append(f"key {flow_input!r} must be a flow input name")
            continue
        if not isinstance(reference, str | int | float | bool):
            problems.append(f"{flow_input}: must be {shape} or a literal value (got a {_type_name(reference)})")
            continue
        try:
            ref = parse_reference(reference)
        except MappingError as error:
            problems.append(f"{flow_input}: {error}")
            continue
        if ref is not None and ref.kind not in allowed:
            problems.append(
                f"{flow_input}: {ref} refers to a run, but a standard dataset feeds the flow before any run exists; "
                "use '${data.<column>}' here and put run references in an evaluator dataset"
            )
    if problems:
        raise ValueError("; ".join(problems))
    return value


class _Strict(BaseModel):
    """A YAML block: unknown keys fail with the list of allowed ones (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")
    _key_hints: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = [field.alias or name for name, field in cls.model_fields.items()]
            unknown = [str(key) for key in data if key not in allowed]
            if unknown:
                hints = "".join(f" ({cls._key_hints[key]})" for key in unknown if key in cls._key_hints)
                listed = ", ".join(map(repr, unknown))
                raise ValueError(f"unknown key(s) {listed}{hints}; allowed: {', '.join(allowed)}")
        return data


# --- connections and secrets --------------------------------------------------------------------------------------


def is_secret_field(field: str) -> bool:
    """Whether a connection field holds a secret (the runner keeps these as SecretStr, never logs them)."""
    return bool(_SECRET_FIELD.search(field))


def secret_variable(connection_name: str, placeholder: str) -> str:
    """The canonical secret name for `${placeholder}` in a connection: `<CONNECTION>_<PLACEHOLDER>` upper-cased."""
    return re.sub(r"[^A-Za-z0-9]", "_", f"{connection_name}_{placeholder}").upper()


class ConnectionConfig(BaseModel):
    """A promptflow connection. Fields other than name and connection_type (api_base, api_version, api_key, ...) are
    kept as written; every secret-looking field must be a `${...}` placeholder (see resolve_connection)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    connection_type: ConnectionType | None = Field(
        default=None, description="None: a connection that already exists where the flow runs (name only)."
    )

    @model_validator(mode="before")
    @classmethod
    def _fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        kind = data.get("connection_type")
        if isinstance(kind, str):
            data["connection_type"] = _CONNECTION_TYPES.get(kind.lower(), kind)  # the template compares lower-cased
        problems: list[str] = []
        for field, value in data.items():
            if field in ("name", "connection_type"):
                continue
            if not isinstance(value, str | int | float | bool):
                problems.append(f"{field}: must be a single value (got a {_type_name(value)})")
                continue
            data[field] = str(value).lower() if isinstance(value, bool) else str(value)
            if is_secret_field(str(field)) and not _PLACEHOLDER.match(data[field]):
                variable = secret_variable(str(data.get("name", "<name>")), str(field))
                problems.append(
                    f"{field} holds a literal value, but experiment.yaml must not contain secrets; write "
                    f"'{field}: ${{{field}}}' and set {variable} in the environment (or Key Vault)"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return _check_name(value)

    @property
    def fields(self) -> dict[str, str]:
        """The connection's own fields as written (placeholders unresolved)."""
        return dict(self.model_extra or {})


class SecretSource(Protocol):
    """Where placeholder values come from: the environment, Key Vault, ... (first source with a value wins)."""

    def get(self, name: str) -> str | None: ...


class EnvSecretSource:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env

    def get(self, name: str) -> str | None:
        return self._env.get(name)

    def __repr__(self) -> str:
        return "EnvSecretSource()"  # never the values


def resolve_connection(
    conn: ConnectionConfig, env: Mapping[str, str] | None = None, sources: Sequence[SecretSource] = ()
) -> dict[str, str]:
    """The connection's fields with every `${placeholder}` replaced by its secret.

    `${api_key}` in connection `aoai` reads AOAI_API_KEY (the template's case-preserved `aoai_api_key` is tried
    next, so migrated pipelines keep working). Lookup order: `env` (os.environ when neither env nor sources is
    given), then `sources`. The result holds secrets: hand it to the executor, never log or store it."""
    chain: list[SecretSource] = [EnvSecretSource(env)] if env is not None or not sources else []
    chain.extend(sources)
    resolved: dict[str, str] = {}
    missing: list[str] = []
    for field, value in conn.fields.items():
        match = _PLACEHOLDER.match(value)
        if match is None:
            resolved[field] = value
            continue
        canonical = secret_variable(conn.name, match.group(1))
        names = dict.fromkeys([canonical, f"{conn.name}_{match.group(1)}"])
        found = next((v for source in chain for name in names if (v := source.get(name)) is not None), None)
        if found is None:
            missing.append(f"{field} (${{{match.group(1)}}}) -> {canonical}")
        else:
            resolved[field] = found
    if missing:
        raise MissingSecretError(
            f"connection {conn.name!r}: no value for {'; '.join(missing)}; set the environment variable(s) "
            "(or the Key Vault secret(s)) named there"
        )
    return resolved


# --- datasets and evaluators --------------------------------------------------------------------------------------


class _Dataset(_Strict):
    name: str
    description: str | None = None
    mappings: dict[str, Any] = Field(default_factory=dict, description="flow input -> '${data.<column>}' | literal")

    _allowed: ClassVar[tuple[ReferenceKind, ...]] = ("data",)
    _shape: ClassVar[str] = "'${data.<column>}'"
    _local_path: Path | None = PrivateAttr(default=None)

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return _check_name(value)

    @field_validator("mappings", mode="before")
    @classmethod
    def _mappings(cls, value: Any) -> dict[str, Any]:
        return _check_mappings(value, cls._allowed, cls._shape)

    @property
    def source_text(self) -> str | None:
        return getattr(self, "source", None)

    @property
    def source_kind(self) -> SourceKind | None:
        return source_kind(self.source_text) if self.source_text else None

    @property
    def blob(self) -> tuple[str, str] | None:
        """(container, name) for blob:// sources."""
        return parse_blob_source(self.source_text) if self.source_text else None

    @property
    def local_path(self) -> Path | None:
        """Absolute path of a local source (None for blob and azureml sources)."""
        return self._local_path


class DatasetConfig(_Dataset):
    """A dataset the standard flow runs on."""

    source: str = Field(description="local path | blob://<container>/<path> | azureml:<name>:<version>")

    _key_hints: ClassVar[dict[str, str]] = {"reference": "reference is only for evaluator datasets"}

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> str:
        return _check_source(value)


class EvaluatorDatasetConfig(_Dataset):
    """A dataset an evaluator runs on, scoring the standard run of `reference`.

    As in the template, naming a standard dataset with no source/reference reuses it; a reference without a
    source evaluates on the referenced dataset's own data. After loading, reference and source are always set."""

    reference: str | None = None
    source: str | None = None

    _allowed: ClassVar[tuple[ReferenceKind, ...]] = ("data", "run.outputs", "run.inputs")
    _shape: ClassVar[str] = "'${data.<column>}' | '${run.outputs.<output>}' | '${run.inputs.<input>}'"

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> str | None:
        return None if value is None else _check_source(value)


class EvaluatorConfig(_Strict):
    name: str
    flow: str | None = Field(default=None, description="Evaluation flow folder; default: the evaluator's name.")
    datasets: list[EvaluatorDatasetConfig]

    _flow_dir: Path | None = PrivateAttr(default=None)

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return _check_name(value)

    @field_validator("datasets", mode="before")
    @classmethod
    def _datasets(cls, value: Any) -> Any:
        if not value:
            raise ValueError("an evaluator needs at least one dataset (name, reference, source, mappings)")
        return value

    @property
    def flow_dir(self) -> Path:
        return _resolved(self._flow_dir, f"evaluator {self.name!r}")


# --- our extensions ----------------------------------------------------------------------------------------------


class VariantPolicy(_Strict):
    mode: VariantMode = "all"
    explicit: list[dict[str, str]] = Field(default_factory=list, description="node -> variant id, for mode explicit")
    max_combinations: int = Field(default=64, ge=1)

    @model_validator(mode="after")
    def _explicit_matches_mode(self) -> VariantPolicy:
        if self.mode == "explicit" and not self.explicit:
            raise ValueError("mode explicit needs a non-empty 'explicit' list, e.g. [{summarize: variant_1}]")
        if self.mode != "explicit" and self.explicit:
            raise ValueError(f"'explicit' is only read with mode: explicit (mode is {self.mode}); set mode: explicit")
        return self


class ExecutionConfig(_Strict):
    concurrency: int = Field(default=8, ge=1, le=256, description="Lines in flight at once.")
    max_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Larger share of failed lines fails.")
    # An item's invocation lasts at most item_seconds + one line_timeout_seconds: within host.json's 10 minutes.
    line_timeout_seconds: int = Field(default=120, ge=1, le=300)
    lines_per_item: int = Field(default=16, ge=1, le=10_000,
                                description="Lines of one run in one work item (a bus message any instance takes).")
    item_seconds: int = Field(default=120, ge=10, le=240,
                              description="Time budget of one work item; what is left goes on in a continuation.")
    runner: Literal["auto", "local", "azureml"] = Field(
        default="auto", description="local = work items on the Functions; azureml = promptflow runs on Azure ML "
                                    "compute; auto = azureml from azureml_min_lines lines per run when configured.")
    azureml_min_lines: int = Field(default=5000, ge=1)


def _check_hyperparameters(value: Any) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of input or node.input -> list of values (got a {_type_name(value)})")
    grids: dict[str, list[Any]] = {}
    problems: list[str] = []
    for name, values in value.items():
        if not isinstance(name, str) or not _HYPERPARAMETER.match(name):
            problems.append(f"{name!r} must be an input name (temperature) or node.input (answer.max_tokens)")
            continue
        grid = values if isinstance(values, list) else [values]  # a single value pins the input
        if not grid:
            problems.append(f"{name}: needs at least one value, e.g. {name}: [0.0, 0.7]")
            continue
        if any(isinstance(item, dict | list) for item in grid):
            problems.append(f"{name}: values must be single values, e.g. {name}: [0.0, 0.7]")
            continue
        seen = [json.dumps(item, sort_keys=True) for item in grid]
        if len(set(seen)) != len(seen):
            problems.append(f"{name}: has duplicate values; list each value once")
            continue
        grids[name] = grid
    if problems:
        raise ValueError("; ".join(problems))
    return grids


# --- the experiment ----------------------------------------------------------------------------------------------


class ExperimentConfig(_Strict):
    name: str
    flow: str | None = Field(default=None, description="Standard flow folder relative to base_dir; default: name.")
    connections: list[ConnectionConfig] = Field(default_factory=list)
    datasets: list[DatasetConfig]
    evaluators: list[EvaluatorConfig] = Field(default_factory=list)
    runtime: str | None = Field(default=None, description="Azure ML runtime; ignored locally.")
    resources: dict[str, Any] | None = Field(default=None, description="e.g. instance_type; ignored locally.")
    variants: VariantPolicy = Field(default_factory=VariantPolicy)
    hyperparameters: dict[str, list[Any]] = Field(default_factory=dict)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    gate: GateConfig | None = None  # see shared/experiments/gate.py
    deployment: dict[str, Any] | None = None  # owned by the deployment feature; not validated here

    # Set by load_experiment, not YAML keys.
    base_dir: Path
    environment: str | None = None
    config_files: tuple[Path, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _empty_blocks(cls, data: Any) -> Any:
        """A block named with nothing under it means "none": `evaluators:` in an overlay drops the evaluators."""
        if isinstance(data, dict):
            data = dict(data)
            for key in ("connections", "datasets", "evaluators"):
                if key in data and data[key] is None:
                    data[key] = []
            for key in ("variants", "execution"):
                if key in data and data[key] is None:
                    del data[key]
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return _check_name(value)

    @field_validator("datasets", mode="before")
    @classmethod
    def _datasets(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("needs at least one dataset for the standard flow (name, source, mappings)")
        return value

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _hyperparameters(cls, value: Any) -> dict[str, list[Any]]:
        return _check_hyperparameters(value)

    @field_validator("base_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()

    @model_validator(mode="after")
    def _resolve(self) -> ExperimentConfig:
        """Fill what the template leaves implicit and resolve paths; load_experiment checks they exist."""
        standard = {dataset.name: dataset for dataset in self.datasets}
        for dataset in self.datasets:
            dataset._local_path = _local_source(self.base_dir, dataset.source)
        for evaluator in self.evaluators:
            evaluator._flow_dir = _flow_dir(self.base_dir, evaluator.flow or evaluator.name)
            for dataset in evaluator.datasets:
                if dataset.reference is None and dataset.name in standard:
                    dataset.reference = dataset.name
                referenced = standard.get(dataset.reference or "")
                if dataset.source is None and referenced is not None:
                    dataset.source = referenced.source
                if dataset.source is not None:
                    dataset._local_path = _local_source(self.base_dir, dataset.source)
        return self

    @property
    def flow_dir(self) -> Path:
        return _flow_dir(self.base_dir, self.flow or self.name)

    def connection(self, name: str) -> ConnectionConfig:
        return _find(self.connections, name, "connection")

    def evaluator(self, name: str) -> EvaluatorConfig:
        return _find(self.evaluators, name, "evaluator")

    def dataset(self, name: str) -> DatasetConfig | EvaluatorDatasetConfig:
        """A standard dataset by name, else an evaluator dataset of that name."""
        return _find([*self.datasets, *(d for e in self.evaluators for d in e.datasets)], name, "dataset")

    def evaluator_datasets_for(self, standard_dataset: str) -> list[tuple[EvaluatorConfig, EvaluatorDatasetConfig]]:
        """Every (evaluator, evaluator dataset) that scores the standard runs on `standard_dataset`."""
        return [(e, d) for e in self.evaluators for d in e.datasets if d.reference == standard_dataset]

    def all_datasets(self) -> list[DatasetConfig | EvaluatorDatasetConfig]:
        """Standard datasets, then evaluator datasets, in file order."""
        return [*self.datasets, *(d for e in self.evaluators for d in e.datasets)]


def _find(items: Sequence[Any], name: str, what: str) -> Any:
    for item in items:
        if item.name == name:
            return item
    raise KeyError(f"no {what} {name!r}; known: {', '.join(sorted({item.name for item in items})) or '(none)'}")


def _resolved(path: Path | None, what: str) -> Path:
    if path is None:
        raise RuntimeError(f"{what} was not built by ExperimentConfig, so its paths are not resolved")
    return path


def is_flow_dir(path: Path) -> bool:
    return path.is_dir() and (any((path / name).is_file() for name in FLOW_FILES) or any(path.glob("*.prompty")))


def _flow_dir(base_dir: Path, flow: str) -> Path:
    """`<base>/<flow>`, or `<base>/flows/<flow>` as in the template (so `flow: standard` works too)."""
    candidates = [base_dir / flow, base_dir / "flows" / flow]
    return next((path.resolve() for path in candidates if is_flow_dir(path)), candidates[0].resolve())


def _local_source(base_dir: Path, source: str) -> Path | None:
    """`<base>/<source>`, or `<base>/data/<source>` as in the template."""
    if source_kind(source) != "local":
        return None
    candidates = [base_dir / source, base_dir / "data" / source]
    return next((path.resolve() for path in candidates if path.exists()), candidates[0].resolve())


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
        raise ExperimentConfigError(f"{label}: must be a mapping of top-level keys (got a {_type_name(document)})")
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
        return f"must be a mapping of key: value (got a {_type_name(error['input'])})"
    if kind == "list_type":
        return f"must be a list of entries, each starting with '- ' (got a {_type_name(error['input'])})"
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


def load_experiment(use_case_dir: Path, environment: str | None = None) -> ExperimentConfig:
    """The use case's experiment.yaml with the `experiment.<environment>.yaml` overlay applied, fully checked."""
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
    overlay_file = base_dir / f"experiment.{environment}.yaml"
    if environment is not None and overlay_file.is_file():
        overlay = _read(overlay_file)
        document.update(overlay)  # whole top-level blocks: the overlay decides a block entirely
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
