"""ExperimentStore in blob storage: runs/{use_case}/{experiment_id}/...

    plan.json                        the plan (if-absent: the first writer wins, redeliveries reuse it)
    evaluation-plan.json             the evaluation stage, planned once the standard stage is done
    data/{dataset}.json              the rows every item reads
    lines/{run_id}/{line}.json       a checkpoint per finished line
    items/{stage}/{item_id}.json     a finished item with its lines
    metrics/{run_id}.json            an evaluation run's aggregated metrics
    progress.json, result.json, verdict.json
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pydantic import BaseModel

from shared.blob_layout import RUNS, experiment_prefix, safe_segment
from shared.experiments.results import ExperimentResult
from shared.experiments.store import (
    ExperimentPlan,
    ItemOutcome,
    LineCheckpoint,
    Progress,
    RunMetrics,
    Stage,
    StagePlan,
)
from shared.ports import BlobNotFound, BlobStore, PreconditionFailed

M = TypeVar("M", bound=BaseModel)
_PARALLEL_READS = 8  # a stage of many items is read back in parallel, not one blob at a time


class BlobExperimentStore:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    # --- plan and data ---------------------------------------------------------------------------

    def save_plan(self, plan: ExperimentPlan) -> ExperimentPlan:
        return self._write_once(self._name(plan.use_case, plan.experiment_id, "plan.json"), plan)

    def plan(self, use_case: str, experiment_id: str) -> ExperimentPlan:
        return self._read(self._name(use_case, experiment_id, "plan.json"), ExperimentPlan)

    def find_plan(self, use_case: str, experiment_id: str) -> ExperimentPlan | None:
        try:
            return self.plan(use_case, experiment_id)
        except BlobNotFound:
            return None

    def save_rows(self, use_case: str, experiment_id: str, dataset: str, rows: list[dict[str, Any]]) -> None:
        data = json.dumps(rows, ensure_ascii=False, default=str).encode()
        self._blobs.write(RUNS, self._name(use_case, experiment_id, f"data/{safe_segment(dataset)}.json"), data)

    def rows(self, use_case: str, experiment_id: str, dataset: str) -> list[dict[str, Any]]:
        name = self._name(use_case, experiment_id, f"data/{safe_segment(dataset)}.json")
        return list(json.loads(self._blobs.read(RUNS, name)[0]))

    def save_evaluation_plan(self, use_case: str, experiment_id: str, stage: StagePlan) -> StagePlan:
        return self._write_once(self._name(use_case, experiment_id, "evaluation-plan.json"), stage)

    def evaluation_plan(self, use_case: str, experiment_id: str) -> StagePlan:
        return self._read(self._name(use_case, experiment_id, "evaluation-plan.json"), StagePlan)

    # --- lines and items -------------------------------------------------------------------------

    def record_line(self, use_case: str, experiment_id: str, checkpoint: LineCheckpoint) -> None:
        name = self._name(use_case, experiment_id,
                          f"lines/{safe_segment(checkpoint.run_id)}/{checkpoint.line.line_number:07d}.json")
        self._blobs.write(RUNS, name, _dump(checkpoint))

    def lines(self, use_case: str, experiment_id: str, run_id: str) -> dict[int, LineCheckpoint]:
        prefix = self._name(use_case, experiment_id, f"lines/{safe_segment(run_id)}/")
        checkpoints = self._read_all([info.name for info in self._blobs.list(RUNS, prefix)], LineCheckpoint)
        return {checkpoint.line.line_number: checkpoint for checkpoint in checkpoints}

    def finish_item(self, use_case: str, experiment_id: str, outcome: ItemOutcome) -> None:
        self._blobs.write(RUNS, self._item_name(use_case, experiment_id, outcome.stage, outcome.item_id),
                          _dump(outcome))

    def item_outcome(self, use_case: str, experiment_id: str, stage: Stage, item_id: str) -> ItemOutcome | None:
        try:
            return self._read(self._item_name(use_case, experiment_id, stage, item_id), ItemOutcome)
        except BlobNotFound:
            return None

    def finished_items(self, use_case: str, experiment_id: str, stage: Stage) -> list[str]:
        prefix = self._name(use_case, experiment_id, f"items/{stage}/")
        return sorted(info.name.removeprefix(prefix).removesuffix(".json") for info in self._blobs.list(RUNS, prefix))

    def item_outcomes(self, use_case: str, experiment_id: str, stage: Stage) -> list[ItemOutcome]:
        prefix = self._name(use_case, experiment_id, f"items/{stage}/")
        return self._read_all([info.name for info in self._blobs.list(RUNS, prefix)], ItemOutcome)

    def save_run_metrics(self, use_case: str, experiment_id: str, metrics: RunMetrics) -> None:
        self._blobs.write(RUNS, self._name(use_case, experiment_id, f"metrics/{safe_segment(metrics.run_id)}.json"),
                          _dump(metrics))

    def run_metrics(self, use_case: str, experiment_id: str) -> dict[str, RunMetrics]:
        names = [info.name for info in self._blobs.list(RUNS, self._name(use_case, experiment_id, "metrics/"))]
        return {metrics.run_id: metrics for metrics in self._read_all(names, RunMetrics)}

    # --- progress and outcome --------------------------------------------------------------------

    def save_progress(self, progress: Progress) -> None:
        self._blobs.write(RUNS, self._name(progress.use_case, progress.experiment_id, "progress.json"),
                          _dump(progress))

    def progress(self, use_case: str, experiment_id: str) -> Progress | None:
        try:
            return self._read(self._name(use_case, experiment_id, "progress.json"), Progress)
        except BlobNotFound:
            return None

    def save_result(self, result: ExperimentResult) -> None:
        self._blobs.write(RUNS, self._name(result.use_case, result.experiment_id, "result.json"), _dump(result))

    def result(self, use_case: str, experiment_id: str) -> ExperimentResult:
        return self._read(self._name(use_case, experiment_id, "result.json"), ExperimentResult)

    def save_verdict(self, use_case: str, experiment_id: str, verdict: dict[str, Any]) -> None:
        self._blobs.write(RUNS, self._name(use_case, experiment_id, "verdict.json"),
                          json.dumps(verdict, indent=2).encode())

    def verdict(self, use_case: str, experiment_id: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._blobs.read(RUNS, self._name(use_case, experiment_id, "verdict.json"))[0]))
        except BlobNotFound:
            return None

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _name(use_case: str, experiment_id: str, relative: str) -> str:
        return experiment_prefix(use_case, experiment_id) + relative

    def _item_name(self, use_case: str, experiment_id: str, stage: Stage, item_id: str) -> str:
        return self._name(use_case, experiment_id, f"items/{stage}/{safe_segment(item_id)}.json")

    def _write_once(self, name: str, model: M) -> M:
        try:
            self._blobs.write(RUNS, name, _dump(model), if_absent=True)
            return model
        except PreconditionFailed:
            return self._read(name, type(model))

    def _read(self, name: str, model: type[M]) -> M:
        return model.model_validate_json(self._blobs.read(RUNS, name)[0])

    def _read_all(self, names: list[str], model: type[M]) -> list[M]:
        if len(names) <= 1:
            return [self._read(name, model) for name in names]
        with ThreadPoolExecutor(max_workers=_PARALLEL_READS) as pool:
            return list(pool.map(lambda name: self._read(name, model), names))


def _dump(model: BaseModel) -> bytes:
    # Aggregation inputs are whatever a flow's nodes returned: anything not JSON is kept as its text.
    return model.model_dump_json(fallback=str).encode()
