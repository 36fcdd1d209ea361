"""Run one work item of an experiment: some lines of one run, on this instance (or one Azure ML job).

Resume, never redo: every line is checkpointed the moment it finishes, and an item (re)starts with the lines that
have no checkpoint yet — a crash, a lost lock or a redelivery costs at most the lines that were in flight.
An item stops taking new lines when its time budget is spent and sends its own continuation, so no invocation
runs longer than `execution.item_seconds` plus one line's time-out.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.events import Event, ExperimentItemRequested
from shared.experiments.config import ExperimentConfig
from shared.experiments.connections import connection_specs
from shared.experiments.planning import evaluation_inputs_key, run_spec, standard_dataset_key
from shared.experiments.results import LineResult
from shared.experiments.runner import ExecutionLimits
from shared.experiments.store import ExperimentPlan, ItemOutcome, LineCheckpoint, PlannedRun, StagePlan, WorkItem
from shared.experiments.variants import Combination, materialize
from shared.ports import Clock
from shared.services.experiment_fanout import after_item
from shared.services.experiments import SETUP_ERRORS, ExperimentWorkspace, aggregate_run

log = logging.getLogger("genaiops.experiments")
REMOTE_CHECK_INTERVAL = timedelta(seconds=60)  # how often an Azure ML run is looked at again
REMOTE_MAX_CHECKS = 24 * 60  # a day of checks: a run still not finished then has failed (queued or stuck)
WORKER = f"{socket.gethostname()}:{os.getpid()}"


def run_item(event: ExperimentItemRequested, clock: Clock, workspace: ExperimentWorkspace) -> list[Event]:
    request = event.payload
    store = workspace.store
    plan = store.plan(request.use_case, request.experiment_id)
    stage = plan.standard if request.stage == "standard" else store.evaluation_plan(plan.use_case, plan.experiment_id)
    item = stage.item(request.item_id)
    if store.item_outcome(plan.use_case, plan.experiment_id, stage.stage, item.item_id) is None:
        remote = item.runner == "azureml"
        try:
            config = workspace.config(plan.use_case, plan.environment)
            finished = (_run_remote(config, plan, stage, item, workspace, request.part) if remote
                        else _run_local(config, plan, stage, item, workspace))
        except SETUP_ERRORS as problem:  # cannot succeed on a retry: the run fails, the experiment goes on
            _finish(workspace, plan, stage, item, error=str(problem))
            finished = True
        delay = REMOTE_CHECK_INTERVAL if remote else timedelta(0)
        if not finished:
            part = request.part + 1
            not_before = clock.now() + delay if delay else None
            return [event.follow_up(ExperimentItemRequested, {**request.model_dump(), "part": part,
                                                              "not_before": not_before}, key=f"part-{part}")]
    if stage.stage == "evaluation":
        _aggregate_when_run_done(plan, stage, item, workspace)
    return after_item(event, plan, stage, clock=clock, store=store)


def _aggregate_when_run_done(plan: ExperimentPlan, stage: StagePlan, item: WorkItem,
                             workspace: ExperimentWorkspace) -> None:
    """The item that finds its evaluation run's items all done runs the aggregation nodes over the run's lines,
    so the experiment's last step only reads metrics (several items may find it at once: same result)."""
    store = workspace.store
    outcomes = [store.item_outcome(plan.use_case, plan.experiment_id, stage.stage, other.item_id)
                for other in stage.items if other.run_id == item.run_id]
    done = [outcome for outcome in outcomes if outcome is not None]
    if len(done) < len(outcomes):
        return
    try:
        config = workspace.config(plan.use_case, plan.environment)
    except SETUP_ERRORS:
        return  # the experiment's last step meets the same problem and reports it
    store.save_run_metrics(plan.use_case, plan.experiment_id,
                           aggregate_run(config, plan, stage.run(item.run_id), done, workspace))


def _finish(workspace: ExperimentWorkspace, plan: ExperimentPlan, stage: StagePlan, item: WorkItem,
            **outcome: Any) -> None:
    """Mark the item done with its lines, or with the error that ended its run."""
    workspace.store.finish_item(plan.use_case, plan.experiment_id, ItemOutcome(
        item_id=item.item_id, run_id=item.run_id, stage=stage.stage, worker=WORKER, **outcome))


def _limits(plan: ExperimentPlan) -> ExecutionLimits:
    return ExecutionLimits(concurrency=plan.concurrency, line_timeout_seconds=plan.line_timeout_seconds)


def _run_local(config: ExperimentConfig, plan: ExperimentPlan, stage: StagePlan, item: WorkItem,
               workspace: ExperimentWorkspace) -> bool:
    """Run the item's lines that have no checkpoint; True when the item is finished (and recorded)."""
    store, run = workspace.store, stage.run(item.run_id)
    wanted = set(item.line_numbers)
    done = {number: checkpoint for number, checkpoint
            in store.lines(plan.use_case, plan.experiment_id, run.run_id).items() if number in wanted}
    todo = [number for number in item.line_numbers if number not in done]
    if todo:
        log.info("item %s: %d line(s) to run, %d already done", item.item_id, len(todo), len(done))

        def checkpoint(run_id: str, line: LineResult, aggregation_inputs: Any) -> None:
            saved = LineCheckpoint(run_id=run_id, line=line, aggregation_inputs=aggregation_inputs)
            store.record_line(plan.use_case, plan.experiment_id, saved)
            done[line.line_number] = saved

        with _flow_dir(config, run, workspace.work_root) as flow_dir:
            [result] = workspace.runner.run_all(
                [run_spec(run, flow_dir, _rows(workspace, plan, run), todo)],
                connection_specs(config, workspace.secrets_env), _limits(plan), on_line=checkpoint,
                deadline=time.monotonic() + plan.item_seconds, aggregate=False)
        if result.status == "failed" and not result.lines:  # the flow could not even load: the run has failed
            _finish(workspace, plan, stage, item, error=result.error)
            return True
    if any(number not in done for number in item.line_numbers):
        return False
    _finish(workspace, plan, stage, item, lines=[done[number] for number in item.line_numbers])
    return True


def _run_remote(config: ExperimentConfig, plan: ExperimentPlan, stage: StagePlan, item: WorkItem,
                workspace: ExperimentWorkspace, part: int) -> bool:
    """Submit the run to Azure ML (idempotent) and look at it; True once it has finished and its lines are kept."""
    run = stage.run(item.run_id)
    if workspace.remote is None:
        _finish(workspace, plan, stage, item, error="execution.runner is azureml but this app has no Azure ML runner "
                                                    "configured (set AZUREML_WORKSPACE_NAME, see the README)")
        return True
    with _flow_dir(config, run, workspace.work_root) as flow_dir:
        spec = run_spec(run, flow_dir, _rows(workspace, plan, run), item.line_numbers)
        name = workspace.remote.submit(spec, connection_specs(config, workspace.secrets_env), _limits(plan))
        status = workspace.remote.status(name)
        if status.state == "running" and part < REMOTE_MAX_CHECKS:
            return False
        if status.state != "completed":
            reason = (f"failed: {status.message}" if status.state == "failed"
                      else f"did not finish within {REMOTE_MAX_CHECKS} checks {REMOTE_CHECK_INTERVAL} apart")
            _finish(workspace, plan, stage, item, error=f"Azure ML run {name} {reason}")
            return True
        result = workspace.remote.collect(spec, name)
    _finish(workspace, plan, stage, item, lines=[LineCheckpoint(run_id=run.run_id, line=line) for line in result.lines],
            metrics=result.metrics, error=result.error if result.status == "failed" else None)
    return True


def _rows(workspace: ExperimentWorkspace, plan: ExperimentPlan, run: PlannedRun) -> dict[int, dict[str, Any]]:
    store = workspace.store
    if run.kind == "standard":
        return dict(enumerate(store.rows(plan.use_case, plan.experiment_id, standard_dataset_key(run.dataset))))
    stored = store.rows(plan.use_case, plan.experiment_id, evaluation_inputs_key(run.run_id))
    return {int(entry["line_number"]): entry["inputs"] for entry in stored}


@contextmanager
def _flow_dir(config: ExperimentConfig, run: PlannedRun, work_root: Path) -> Iterator[Path]:
    """The flow to run: a standard run's combination materialized into a private scratch folder (removed after;
    never the process's working directory), or the evaluator's own folder."""
    if run.kind == "evaluation":
        evaluator = next(e for e in config.evaluators if e.name == run.evaluator)
        yield evaluator.flow_dir
        return
    work_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="item-", dir=work_root))
    try:
        yield materialize(config.flow_dir, Combination(variant=run.variant, hyperparameters=run.hyperparameters),
                          scratch / "flow")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
