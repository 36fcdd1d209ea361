"""Post-production evaluation: the use case's evaluator flows (e.g. an LLM judge) score a sample of the answers
its deployments gave in production.

The monitor's timer asks (`request_evaluations`): for each use case whose `monitoring.evaluation` schedule fired, one
production.evaluation_requested whose id derives from (environment, use case, firing), so asking twice is one run.
The bus handler judges (`evaluate_production`): the sampled lines of the lookback not judged yet, at most
`max_lines`, each evaluator run by the flow runner once per deployment within `run_seconds`; the metrics per
deployment and every judged line go to `reports/{use_case}/production/{window}/` with summary.html, then
production.evaluated and, per deployment over a threshold, production.degraded.

Idempotent under redelivery: a firing already judged (`last_run`) is not judged again; a run that crashed before
saving its state is redone — the same lines, as sampling is by request id — and its events carry the same ids.
One run at a time per use case: a run takes a lease in the state (compare-and-swap on its ETag) and a later firing
that finds it held does nothing — the next firing takes its lines, as they are still unjudged.
Lines the time budget did not reach are not recorded, so the next run takes them while the lookback still reads them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from croniter import croniter
from pydantic import BaseModel

from shared.blob_layout import SYSTEM, judging_requested_name, judging_state_name
from shared.events import Event
from shared.events.envelope import derived_event_id
from shared.events.monitoring import ProductionDegraded, ProductionEvaluated, ProductionEvaluationRequested
from shared.experiments.catalog import find_use_cases
from shared.experiments.config import ExperimentConfigError, load_experiment
from shared.experiments.connections import connection_specs
from shared.experiments.experiment_model import ExperimentConfig
from shared.experiments.mappings import MappingError
from shared.experiments.monitoring_config import ProductionEvaluationConfig
from shared.experiments.runner import ExecutionLimits, FlowRunner, RunSpec
from shared.feedback.submissions import load_feedback
from shared.monitoring.judging import (
    JudgedLine,
    JudgingState,
    evaluator_inputs,
    numeric_scores,
    per_deployment,
    select_lines,
)
from shared.monitoring.production_log import ProductionLine, loggable
from shared.monitoring.production_report import JudgedWindow, write_window
from shared.ports import BlobNotFound, BlobStore, Clock, EventPublisher, PreconditionFailed
from shared.services.deployment_settings import deployment_config
from shared.services.monitoring import LogFor

log = logging.getLogger("genaiops.production_evaluation")
_M = TypeVar("_M", bound=BaseModel)


class _Requested(BaseModel):
    last_requested: datetime | None = None


def request_evaluations(blobs: BlobStore, publisher: EventPublisher, clock: Clock, flows_root: Path,
                        environment: str) -> list[Event]:
    """Timer: one production.evaluation_requested per use case whose evaluation schedule fired since last asked."""
    published: list[Event] = []
    for use_case in find_use_cases(flows_root):
        try:
            config = load_experiment(flows_root / use_case, environment)
        except ExperimentConfigError:
            continue  # the monitor logs a broken experiment.yaml once a tick already
        evaluation = config.monitoring.evaluation if config.monitoring else None
        if evaluation is None:
            continue
        fired = croniter(evaluation.schedule, clock.now(), second_at_beginning=True).get_prev(datetime)
        asked, etag = _read(blobs, judging_requested_name(use_case), _Requested)
        if asked.last_requested is not None and fired <= asked.last_requested:
            continue
        event = ProductionEvaluationRequested.create(
            {"use_case": use_case, "environment": environment, "window_end": fired},
            correlation_id=f"production-eval-{use_case}-{fired:%Y%m%dT%H%M%S}"[:128], source="monitoring")
        event = event.model_copy(update={"id": derived_event_id(event.type, environment, use_case, fired.isoformat())})
        publisher.publish([event])
        published.append(event)
        with contextlib.suppress(PreconditionFailed):  # another instance asked too: same event id, dropped later
            blobs.write(SYSTEM, judging_requested_name(use_case), _Requested(last_requested=fired)
                        .model_dump_json().encode(), if_match=etag, if_absent=etag is None)
    return published


def evaluate_production(event: ProductionEvaluationRequested, blobs: BlobStore, clock: Clock, runner: FlowRunner,
                        app_settings: Mapping[str, str], flows_root: Path, log_for: LogFor) -> list[Event]:
    """`app_settings` (Settings.app_settings): the judge's connection secrets and the deployment's workspace. The
    request names the app's own environment (request_evaluations), so no local-stack flag is needed."""
    request = event.payload
    config = load_experiment(flows_root / request.use_case, request.environment)
    monitoring = config.monitoring
    evaluation = monitoring.evaluation if monitoring else None
    state, etag = _read(blobs, judging_state_name(request.use_case), JudgingState)
    done = state.last_run is not None and request.window_end <= state.last_run
    if monitoring is None or evaluation is None or done:
        return []  # no longer configured, or this firing (or a later one) was judged already
    settings = deployment_config(config, request.environment, app_settings)
    production_log = log_for(settings)
    if production_log is None or state.busy(request.window_end, clock.now()):
        return []
    state.running, state.running_until = request.window_end, clock.now() + timedelta(
        seconds=evaluation.run_seconds + 2 * config.execution.line_timeout_seconds)
    try:
        etag = blobs.write(SYSTEM, judging_state_name(request.use_case), state.model_dump_json().encode(),
                           if_match=etag, if_absent=etag is None)
    except PreconditionFailed:
        return []  # another run took the lease first
    start = request.window_end - evaluation.lookback
    lines = production_log.lines(request.use_case, settings.endpoint_name, start, request.window_end)
    chosen, left_over = select_lines(lines, state, evaluation)
    judged = _judge(config, evaluation, chosen, runner, app_settings, monitoring.mask_fields) if chosen else []
    left_over += len(chosen) - len(judged)
    events: list[Event] = []
    if judged:
        window = JudgedWindow(use_case=request.use_case, endpoint=settings.endpoint_name,
                              environment=request.environment, window_start=start, window_end=request.window_end,
                              ranking_metric=evaluation.ranking_metric, deployments=per_deployment(judged, evaluation),
                              lines=judged, left_over=left_over)
        report = write_window(blobs, window, load_feedback(blobs, request.use_case, settings.endpoint_name))
        events = _outcome(event, window, evaluation, report)
    state.remember((line for line in chosen if line.request_id in {j.request_id for j in judged}),
                   request.window_end, evaluation.lookback)
    # Lost to another instance judging the same firing: it saved the same lines, its events carry the same ids.
    with contextlib.suppress(PreconditionFailed):
        blobs.write(SYSTEM, judging_state_name(request.use_case), state.model_dump_json().encode(),
                    if_match=etag, if_absent=etag is None)
    log.info("%s: judged %d line(s), %d left over", request.use_case, len(judged), left_over)
    return events


def _judge(config: ExperimentConfig, evaluation: ProductionEvaluationConfig, lines: list[ProductionLine],
           runner: FlowRunner, secrets_env: Mapping[str, str], mask_fields: Sequence[str]) -> list[JudgedLine]:
    """Every evaluator over the lines, one run per (evaluator, deployment) so each deployment's lines are judged
    alike; a line reached by no evaluator before the deadline is not judged (it waits for the next run). What is
    kept of a request is masked again (Azure ML's collector stores what it was sent)."""
    judged = {index: JudgedLine(request_id=line.request_id, deployment=str(line.deployment), time=line.time,
                                inputs=loggable(line.inputs, mask_fields), outputs=loggable(line.outputs, mask_fields))
              for index, line in enumerate(lines)}
    reached: set[int] = set()
    specs = []
    for evaluator in evaluation.evaluators:
        for deployment in sorted({str(line.deployment) for line in lines}):
            rows, numbers = [], []
            for index, line in enumerate(lines):
                if line.deployment != deployment:
                    continue
                try:
                    rows.append(evaluator_inputs(evaluator, line))
                    numbers.append(index)
                except MappingError as missing:
                    judged[index].errors.append(f"{evaluator.name}: {missing}")
                    reached.add(index)
            if rows:
                specs.append(RunSpec(run_id=f"{evaluator.name}-{deployment}", kind="evaluation",
                                     flow_dir=evaluator.flow_dir, flow=evaluator.flow or evaluator.name,
                                     dataset="production", rows=rows, line_numbers=numbers,
                                     evaluator=evaluator.name))
    limits = ExecutionLimits(concurrency=config.execution.concurrency,
                             line_timeout_seconds=config.execution.line_timeout_seconds)
    results = runner.run_all(specs, connection_specs(config, secrets_env), limits,
                             deadline=time.monotonic() + evaluation.run_seconds, aggregate=False) if specs else []
    for spec, result in zip(specs, results, strict=True):
        name = str(spec.evaluator)
        if result.error and not result.lines:  # the flow did not load: every line of the run says why
            for index in spec.line_numbers or []:
                judged[index].errors.append(f"{name}: {result.error}")
                reached.add(index)
        for line in result.lines:
            reached.add(line.line_number)
            if line.error:
                judged[line.line_number].errors.append(f"{name}: {line.error}")
            judged[line.line_number].scores.update(numeric_scores(name, line.outputs))
    return [judged[index] for index in sorted(reached)]


def _outcome(event: ProductionEvaluationRequested, window: JudgedWindow, evaluation: ProductionEvaluationConfig,
             report: str) -> list[Event]:
    common = {"use_case": window.use_case, "endpoint": window.endpoint, "environment": window.environment}
    evaluated = event.follow_up(ProductionEvaluated, {
        **common, "window_start": window.window_start, "window_end": window.window_end, "left_over": window.left_over,
        "report_uri": report, "deployments": [d.model_dump(include={"deployment", "lines", "failed_lines", "metrics"})
                                              for d in window.deployments]})
    degraded = [event.follow_up(ProductionDegraded, {
        **common, "deployment": d.deployment, "breaches": d.breaches, "lines": d.lines, "metrics": d.metrics,
        "thresholds": [t.model_dump() for t in evaluation.thresholds], "window_end": window.window_end,
        "report_uri": report}, key=d.deployment) for d in window.deployments if d.breaches]
    return [evaluated, *degraded]


def _read(blobs: BlobStore, name: str, model: type[_M]) -> tuple[_M, str | None]:
    try:
        data, etag = blobs.read(SYSTEM, name)
    except BlobNotFound:
        return model(), None
    return model.model_validate_json(data), etag
