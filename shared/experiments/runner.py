"""The flow-runner port: run many flows over many lines, return one RunResult per run.

One call takes every run of an experiment phase, so an adapter can share one concurrency budget across
all of them (the local adapter keeps every worker busy until the last line; an Azure ML adapter submits them
as parallel runs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared.experiments.results import LineResult, RunResult


class ConnectionSpec(BaseModel):
    """A promptflow connection handed straight to the executor (no local connection store, no keyring)."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: str = Field(description="promptflow connection class, e.g. OpenAIConnection, AzureOpenAIConnection")
    values: dict[str, str] = Field(default_factory=dict, description="non-secret fields")
    secrets: dict[str, SecretStr] = Field(default_factory=dict, description="secret fields, e.g. api_key")

    def to_executor(self) -> dict[str, Any]:
        values = {**self.values, **{key: value.get_secret_value() for key, value in self.secrets.items()}}
        return {"type": self.type, "value": values}


class RunSpec(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    run_id: str
    kind: Literal["standard", "evaluation"]
    flow_dir: Path = Field(description="The flow to execute: for standard runs, the materialized variant")
    flow: str = Field(description="The flow's name for reports, relative to the use case")
    dataset: str
    rows: list[dict[str, Any]] = Field(description="Flow inputs per line, mappings already applied")
    line_numbers: list[int] | None = Field(default=None, description="Line numbers of rows (default 0..n-1)")
    variant: dict[str, str] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    evaluator: str | None = None
    parent_run_id: str | None = None


class ExecutionLimits(BaseModel):
    model_config = ConfigDict(frozen=True)

    concurrency: int = Field(default=8, ge=1, le=256)
    line_timeout_seconds: int = Field(default=120, ge=1)


AggregateOutcome = tuple[dict[str, float], str | None]  # (metrics, error)
# (run id, the finished line, its aggregation inputs or None): called as each line finishes, from any thread.
LineCallback = Callable[[str, LineResult, Any], None]


class FlowRunner(Protocol):
    def run_all(self, specs: Sequence[RunSpec], connections: Sequence[ConnectionSpec], limits: ExecutionLimits,
                *, on_line: LineCallback | None = None, deadline: float | None = None,
                aggregate: bool = True) -> list[RunResult]:
        """Run every spec; a run that cannot start is a failed RunResult with its error, never an exception.
        Lines not started by `deadline` (time.monotonic) are skipped; `aggregate=False` leaves evaluation
        metrics to a later `aggregate` call over every line of the run."""
        ...

    def aggregate(self, spec: RunSpec, lines: Sequence[LineResult], aggregation_inputs: dict[int, Any],
                  connections: Sequence[ConnectionSpec], limits: ExecutionLimits) -> AggregateOutcome:
        """An evaluation run's metrics over its lines; (metrics, error)."""
        ...
