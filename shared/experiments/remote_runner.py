"""The remote flow-runner port: runs too large for a Function go to a service that runs them on its own compute.

Unlike FlowRunner.run_all, nothing here waits: `submit` starts one run and returns its name, a scheduled
re-check asks `status` until the run has finished, then `collect` brings its lines and metrics back as the same
RunResult the local runner produces, so the store, the gate and the reports do not know where a run ran."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from shared.experiments.results import RunResult
from shared.experiments.runner import ConnectionSpec, ExecutionLimits, RunSpec


class RemoteRunStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    state: Literal["running", "completed", "failed"]
    message: str = ""  # the service's error, redacted (shared.redaction.redact_text)


class RemoteFlowRunner(Protocol):
    def submit(self, spec: RunSpec, connections: Sequence[ConnectionSpec], limits: ExecutionLimits) -> str:
        """Start the run without waiting; returns the Azure ML run name. Idempotent: the run name is derived
        from spec.run_id (sanitised to Azure ML's name rules), and submitting a run that already exists returns
        its name instead of starting a second one."""
        ...

    def status(self, run_name: str) -> RemoteRunStatus: ...

    def collect(self, spec: RunSpec, run_name: str) -> RunResult:
        """The finished run's line results (inputs, outputs, errors per line number: `pf.runs.get_details`)
        and, for evaluation runs, its metrics (`pf.runs.get_metrics`), as our RunResult."""
        ...
