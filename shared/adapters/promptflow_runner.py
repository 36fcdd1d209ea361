"""FlowRunner on promptflow's executor, in this process.

`pf.run` starts a process pool per run (about 4 s each, measured here) and a local trace service; an experiment
of 8 combinations x 2 datasets would pay that 16 times. Instead every flow is loaded once with
`FlowExecutor.create` and all lines of all runs share one thread pool of `concurrency` workers, so the LLM is
kept busy until the very last line. Aggregation nodes (log_metric) run once per run over its successful lines.

Work items call it with a few lines of one run, a deadline and a callback that checkpoints each line as it
finishes; aggregation then runs separately, once every item of an evaluation run is done (`aggregate`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.experiments.results import LineResult, RunResult
from shared.experiments.runner import AggregateOutcome, ConnectionSpec, ExecutionLimits, LineCallback, RunSpec
from shared.experiments.variants import flow_file
from shared.redaction import redact_text

# promptflow changes the *process-wide* working directory while it loads a flow's tools (os.chdir in
# FlowExecutor.create) and restores what it saw on entry. Two loads in parallel threads interleave: one restores
# the other's flow folder as the process's cwd, and deleting that scratch folder breaks every later relative
# path. Loads are short, so they take turns; lines (exec_line) do not touch the cwd and stay parallel.
_WORKING_DIRECTORY = threading.Lock()


@contextmanager
def _cwd_guard() -> Iterator[None]:
    with _WORKING_DIRECTORY:
        saved = os.getcwd()
        try:
            yield
        finally:
            os.chdir(saved)


def load_executor(flow_dir: Path, connections: dict[str, Any], line_timeout_seconds: int) -> Any:
    from promptflow.executor import FlowExecutor

    _, definition = flow_file(flow_dir)
    with _cwd_guard():
        return FlowExecutor.create(definition.resolve(), connections, flow_dir.resolve(), raise_ex=False,
                                   line_timeout_sec=line_timeout_seconds)


def quiet_promptflow() -> None:
    """Keep promptflow offline inside a Function: no trace exporter, no local trace service. (Telemetry belongs
    to the SDK's PFClient, which this runner never creates.)

    Tracing stays *on* in-process because that is what fills token counts in the run's system metrics;
    spans only leave the process when an OpenTelemetry exporter is configured (App Insights in Azure)."""
    os.environ["PF_DISABLE_TRACING"] = "false"
    # No local trace service or exporter set-up: the executor only records spans in-process.
    os.environ["PF_TRACING_SKIP_LOCAL_SETUP"] = "true"
    os.environ["PF_TRACING_SKIP_EXPORTER_SETUP"] = "true"
    os.environ["PF_BUILTIN_TRACE_EXPORTERS_DISABLE"] = "true"
    # promptflow builds an Azure Monitor exporter even with telemetry off; its control plane and statsbeat would
    # call the internet (seen with strace here).
    os.environ.setdefault("APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED", "true")
    os.environ.setdefault("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    os.environ.setdefault("PF_LOGGING_LEVEL", "WARNING")  # per-node INFO lines would drown the app's own logs


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return redact_text(str(error.get("message") or error.get("code") or error))[:2000]
    return redact_text(str(error))[:2000]


class _Run:
    """One run's executor and the results of its lines as they complete."""

    def __init__(self, spec: RunSpec, executor: Any) -> None:
        self.spec = spec
        self.executor = executor
        self.lines: dict[int, LineResult] = {}
        self.aggregation_inputs: dict[int, Any] = {}
        self.started = datetime.now(UTC)
        self.clock = time.perf_counter()
        self.lock = threading.Lock()


class PromptflowRunner:
    def __init__(self) -> None:
        quiet_promptflow()

    def run_all(self, specs: Sequence[RunSpec], connections: Sequence[ConnectionSpec], limits: ExecutionLimits,
                *, on_line: LineCallback | None = None, deadline: float | None = None,
                aggregate: bool = True) -> list[RunResult]:
        executor_connections = {c.name: c.to_executor() for c in connections}
        runs: list[_Run] = []
        failed: dict[str, RunResult] = {}
        futures: list[Future[None]] = []
        with ThreadPoolExecutor(max_workers=limits.concurrency, thread_name_prefix="pf-line") as pool:
            for spec in specs:
                try:
                    executor = load_executor(spec.flow_dir, executor_connections, limits.line_timeout_seconds)
                except Exception as exc:  # noqa: BLE001 - a flow that cannot load is a failed run, reported
                    failed[spec.run_id] = _failed_run(spec, f"flow could not be loaded: {_error_message(exc)}")
                    continue
                run = _Run(spec, executor)
                runs.append(run)
                # A run's lines start as soon as its flow is loaded: the next flow loads while they wait on the LLM.
                futures += [pool.submit(self._run_line, run, index, row, on_line, deadline)
                            for index, row in zip(self._line_numbers(spec), spec.rows, strict=True)]
            for future in futures:
                future.result()
        results = {run.spec.run_id: self._finish(run, aggregate) for run in runs}
        results.update(failed)
        return [results[spec.run_id] for spec in specs]

    def aggregate(self, spec: RunSpec, lines: Sequence[LineResult], aggregation_inputs: dict[int, Any],
                  connections: Sequence[ConnectionSpec], limits: ExecutionLimits) -> AggregateOutcome:
        """Aggregation nodes (log_metric) of an evaluation run over its lines, gathered from every work item."""
        try:
            executor = load_executor(spec.flow_dir, {c.name: c.to_executor() for c in connections},
                                     limits.line_timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - reported as the run's error
            return {}, f"flow could not be loaded: {_error_message(exc)}"
        run = _Run(spec, executor)
        run.lines = {line.line_number: line for line in lines}
        run.aggregation_inputs = {number: value for number, value in aggregation_inputs.items() if number in run.lines}
        return self._aggregate(run)

    @staticmethod
    def _line_numbers(spec: RunSpec) -> list[int]:
        return spec.line_numbers if spec.line_numbers is not None else list(range(len(spec.rows)))

    @staticmethod
    def _run_line(run: _Run, index: int, row: dict[str, Any], on_line: LineCallback | None,
                  deadline: float | None) -> None:
        if deadline is not None and time.monotonic() > deadline:
            return  # out of this item's time budget: the line is left for the item's continuation
        started = time.perf_counter()
        try:
            result = run.executor.exec_line(row, index=index, run_id=run.spec.run_id)
            info = result.run_info
            error = None if str(getattr(info.status, "value", info.status)) == "Completed" else _error_message(
                info.error or f"line ended with status {info.status}")
            metrics = info.system_metrics or {}
            outputs = {k: v for k, v in (result.output or {}).items() if k != "line_number"} if not error else None
            line = LineResult(line_number=index, inputs=row, outputs=outputs, error=error,
                              duration_ms=(time.perf_counter() - started) * 1000,
                              tokens=int(metrics.get("total_tokens") or 0))
            aggregation_inputs = result.aggregation_inputs
        except Exception as exc:  # noqa: BLE001 - one line's crash is that line's error, the run goes on
            line = LineResult(line_number=index, inputs=row, error=_error_message(exc),
                              duration_ms=(time.perf_counter() - started) * 1000)
            aggregation_inputs = None
        kept_inputs = aggregation_inputs if line.error is None else None
        if on_line is not None:
            on_line(run.spec.run_id, line, kept_inputs)  # checkpointed before it counts as done
        with run.lock:
            run.lines[index] = line
            if kept_inputs is not None:
                run.aggregation_inputs[index] = kept_inputs

    def _finish(self, run: _Run, aggregate: bool) -> RunResult:
        lines = [run.lines[index] for index in sorted(run.lines)]
        metrics, error = self._aggregate(run) if aggregate and run.spec.kind == "evaluation" else ({}, None)
        return RunResult(
            run_id=run.spec.run_id, kind=run.spec.kind, flow=run.spec.flow, dataset=run.spec.dataset,
            variant=run.spec.variant, hyperparameters=run.spec.hyperparameters, evaluator=run.spec.evaluator,
            parent_run_id=run.spec.parent_run_id, status="failed" if error else "completed", error=error,
            lines=lines, metrics=metrics, started_at=run.started, duration_seconds=time.perf_counter() - run.clock,
        )

    @staticmethod
    def _aggregate(run: _Run) -> tuple[dict[str, float], str | None]:
        executor = run.executor
        if not executor.has_aggregation_node or not run.aggregation_inputs:
            return {}, None
        ordered = sorted(run.aggregation_inputs)
        succeeded = [run.lines[i] for i in ordered]
        flow_inputs = {name: [line.inputs.get(name) for line in succeeded] for name in succeeded[0].inputs}
        if isinstance(run.aggregation_inputs[ordered[0]], dict) and hasattr(executor, "aggregation_nodes"):
            keys = run.aggregation_inputs[ordered[0]].keys()
            aggregation_inputs: Any = {key: [run.aggregation_inputs[i][key] for i in ordered] for key in keys}
        else:  # flex flows aggregate the list of line outputs
            aggregation_inputs = [run.lines[i].outputs for i in ordered]
        try:
            result = executor.exec_aggregation(flow_inputs, aggregation_inputs, run_id=run.spec.run_id)
        except Exception as exc:  # noqa: BLE001 - reported as the run's error
            return {}, f"aggregation failed: {_error_message(exc)}"
        metrics = {name: float(value) for name, value in (result.metrics or {}).items()
                   if isinstance(value, int | float)}
        failed_nodes = [name for name, info in (result.node_run_infos or {}).items()
                        if str(getattr(info.status, "value", info.status)) == "Failed"]
        return metrics, (f"aggregation node(s) failed: {', '.join(failed_nodes)}" if failed_nodes else None)


def _failed_run(spec: RunSpec, error: str) -> RunResult:
    return RunResult(run_id=spec.run_id, kind=spec.kind, flow=spec.flow, dataset=spec.dataset, variant=spec.variant,
                     hyperparameters=spec.hyperparameters, evaluator=spec.evaluator, parent_run_id=spec.parent_run_id,
                     status="failed", error=error, lines=[], started_at=datetime.now(UTC), duration_seconds=0.0)
