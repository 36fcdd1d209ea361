"""The experiment.yaml model: datasets, evaluators, our extensions and the experiment that holds them, with paths
resolved against the use case folder. Files are read and overlays applied in shared/experiments/config.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, PrivateAttr, field_validator, model_validator

from shared.experiments.connections import ConnectionConfig
from shared.experiments.fields import (
    SourceKind,
    StrictBlock,
    check_hyperparameters,
    check_mappings,
    check_name,
    check_source,
    parse_blob_source,
    source_kind,
)
from shared.experiments.gate import GateConfig
from shared.experiments.mappings import ReferenceKind
from shared.experiments.monitoring_config import MonitoringConfig, ProductionEvaluator

# What makes a folder a flow promptflow can run (DAG, flex, or a prompty file).
FLOW_FILES = ("flow.dag.yaml", "flow.dag.yml", "flow.flex.yaml", "flow.flex.yml")

VariantMode = Literal["all", "one-at-a-time", "defaults", "explicit"]
# The name of a use case, dataset or evaluator: one check wherever a model has one.
CheckedName = Annotated[str, BeforeValidator(check_name)]


class _Dataset(StrictBlock):
    name: CheckedName
    description: str | None = None
    mappings: dict[str, Any] = Field(default_factory=dict, description="flow input -> '${data.<column>}' | literal")

    _allowed: ClassVar[tuple[ReferenceKind, ...]] = ("data",)
    _shape: ClassVar[str] = "'${data.<column>}'"
    _local_path: Path | None = PrivateAttr(default=None)

    @field_validator("mappings", mode="before")
    @classmethod
    def _mappings(cls, value: Any) -> dict[str, Any]:
        return check_mappings(value, cls._allowed, cls._shape)

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
        return check_source(value)


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
        return None if value is None else check_source(value)


class EvaluatorConfig(StrictBlock):
    name: CheckedName
    flow: str | None = Field(default=None, description="Evaluation flow folder; default: the evaluator's name.")
    datasets: list[EvaluatorDatasetConfig]

    _flow_dir: Path | None = PrivateAttr(default=None)

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


class VariantPolicy(StrictBlock):
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


class ExecutionConfig(StrictBlock):
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


# --- the experiment ----------------------------------------------------------------------------------------------


class ExperimentConfig(StrictBlock):
    name: CheckedName
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
    monitoring: MonitoringConfig | None = None  # see shared/experiments/monitoring_config.py

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

    @field_validator("datasets", mode="before")
    @classmethod
    def _datasets(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("needs at least one dataset for the standard flow (name, source, mappings)")
        return value

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _hyperparameters(cls, value: Any) -> dict[str, list[Any]]:
        return check_hyperparameters(value)

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
        for judge in self.production_evaluators:
            judge._flow_dir = _flow_dir(self.base_dir, judge.flow or judge.name)
        return self

    @property
    def production_evaluators(self) -> list[ProductionEvaluator]:
        evaluation = self.monitoring.evaluation if self.monitoring else None
        return evaluation.evaluators if evaluation else []

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
