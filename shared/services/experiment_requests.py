"""Who asks for experiments: a dataset upload (every use case that uses the uploaded file) and a pipeline run
(the use cases it names)."""

from __future__ import annotations

import logging
from pathlib import Path

from shared.events import DatasetUploaded, ExperimentRequested, PipelineTriggered
from shared.experiments.catalog import use_cases_for_blob
from shared.experiments.config import DatasetConfig, EvaluatorDatasetConfig, ExperimentConfigError, load_experiment

log = logging.getLogger("genaiops.experiments")


def requests_for_upload(event: DatasetUploaded, flows_root: Path, environment: str) -> list[ExperimentRequested]:
    """One experiment per use case using the uploaded file, over the datasets it replaces. An upload that
    replaces only an evaluator's dataset re-runs the standard dataset that evaluator scores."""
    upload = event.payload
    blob_uri = f"blob://{upload.container}/{upload.blob_name}"
    by_use_case: dict[str, list[str]] = {}
    for use_case, dataset in use_cases_for_blob(flows_root, upload.container, upload.blob_name, environment):
        by_use_case.setdefault(use_case, []).append(dataset)
    requests = []
    for use_case, names in sorted(by_use_case.items()):
        try:
            config = load_experiment(flows_root / use_case, environment)
        except ExperimentConfigError as problem:
            log.warning("not starting %s for %s: %s", use_case, blob_uri, problem)
            continue
        standard = {d.name for d in config.datasets}
        runs = sorted({_standard_run(config.dataset(name)) for name in names})
        sources = {config.dataset(name).source_text or "": blob_uri for name in names}
        requests.append(event.follow_up(ExperimentRequested, {
            "use_case": use_case, "environment": environment, "datasets": [n for n in runs if n in standard],
            "data_sources": {source: uri for source, uri in sources.items() if source}, "reason": "dataset",
        }, key=use_case))
    return requests


def requests_for_pipeline(event: PipelineTriggered) -> list[ExperimentRequested]:
    run = event.payload
    build = {"git_commit": run.commit, "build_id": run.run_id, "pipeline": run.pipeline}
    return [event.follow_up(ExperimentRequested, {"use_case": use_case, "environment": run.environment,
                                                  "reason": "pipeline", "build": build}, key=use_case)
            for use_case in run.use_cases]


def _standard_run(dataset: DatasetConfig | EvaluatorDatasetConfig) -> str:
    """The standard dataset whose runs a changed file feeds: itself, or the one an evaluator dataset scores."""
    if isinstance(dataset, EvaluatorDatasetConfig):
        return dataset.reference or dataset.name
    return dataset.name
