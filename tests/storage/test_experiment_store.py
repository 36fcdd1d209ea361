"""The experiment store on Azurite, and the plan an experiment.requested writes into it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.adapters.blob_experiment_store import BlobExperimentStore
from shared.adapters.promptflow_runner import PromptflowRunner
from shared.events import ExperimentItemRequested, ExperimentRequested
from shared.experiments.planning import standard_dataset_key
from shared.experiments.results import LineResult
from shared.experiments.store import ItemOutcome, LineCheckpoint, RunMetrics
from shared.ports import BlobStore
from shared.registry.blob_registry import BlobRegistry
from shared.services.experiments import ExperimentWorkspace, experiment_id_for, plan_experiment
from tests.fakes.memory import ManualClock

pytestmark = pytest.mark.azurite
FLOWS = Path(__file__).resolve().parents[2] / "flows"
SECRETS = {"AOAI_BASE_URL": "http://127.0.0.1:9/v1", "AOAI_API_KEY": "not-a-real-key"}


def test_a_redelivered_request_reuses_its_plan_and_data_snapshot(blob_store: BlobStore, clock: ManualClock,
                                                                 unique: str, tmp_path: Path) -> None:
    blob = f"math_coding/{unique}.jsonl"
    rows = [json.loads(line) for line in (FLOWS / "math_coding" / "data" / "math_test.jsonl").read_text().splitlines()]
    blob_store.write("datasets", blob, "\n".join(json.dumps(row) for row in rows[:5]).encode())
    store = BlobExperimentStore(blob_store)
    space = ExperimentWorkspace(FLOWS, tmp_path, PromptflowRunner(), secrets_env=SECRETS, store=store,
                                local_stack=False)
    request = ExperimentRequested.create({"use_case": "math_coding", "environment": "local", "datasets": ["math_test"],
                                          "data_sources": {"data/math_test.jsonl": f"blob://datasets/{blob}"}},
                                         correlation_id=unique)
    first = plan_experiment(request, blob_store, clock, space, BlobRegistry(blob_store, clock))

    items = [event for event in first if isinstance(event, ExperimentItemRequested)]
    assert len(items) == 4  # 2 x 2 combinations, 5 lines each: one item per run
    blob_store.write("datasets", blob, "\n".join(json.dumps(row) for row in rows).encode())  # a new upload meanwhile
    again = plan_experiment(request, blob_store, clock, space, BlobRegistry(blob_store, clock))

    assert [event.id for event in again] == [event.id for event in first]
    experiment = experiment_id_for(request)
    assert len(store.rows("math_coding", experiment, standard_dataset_key("math_test"))) == 5
    assert store.plan("math_coding", experiment).standard.lines == 4 * 5


def test_lines_and_items_round_trip(blob_store: BlobStore, unique: str) -> None:
    store = BlobExperimentStore(blob_store)
    run_id = f"{unique}.defaults.math_test"
    for number in (2, 0, 1):
        line = LineResult(line_number=number, inputs={"question": f"{number}+1"}, outputs={"answer": number + 1},
                          duration_ms=10.0)
        store.record_line("math_coding", unique, LineCheckpoint(run_id=run_id, line=line,
                                                                aggregation_inputs={"grade": object()}))
    lines = store.lines("math_coding", unique, run_id)
    assert sorted(lines) == [0, 1, 2]
    assert lines[1].line.outputs == {"answer": 2}
    assert str(lines[1].aggregation_inputs["grade"]).startswith("<object object")  # kept as its text
    assert store.item_outcome("math_coding", unique, "standard", "a") is None

    store.finish_item("math_coding", unique, ItemOutcome(item_id="a", run_id=run_id, stage="standard",
                                                         lines=list(lines.values()), worker="w1"))
    store.finish_item("math_coding", unique, ItemOutcome(item_id="b", run_id=run_id, stage="standard",
                                                         error="flow could not be loaded"))
    assert store.finished_items("math_coding", unique, "standard") == ["a", "b"]
    assert store.finished_items("math_coding", unique, "evaluation") == []
    outcomes = {outcome.item_id: outcome for outcome in store.item_outcomes("math_coding", unique, "standard")}
    assert len(outcomes["a"].lines) == 3
    assert outcomes["b"].error == "flow could not be loaded"
    assert store.find_plan("math_coding", unique) is None


def test_run_metrics_are_kept_by_run_id_however_long(blob_store: BlobStore, unique: str) -> None:
    store = BlobExperimentStore(blob_store)
    long_id = f"{unique}." + "combination_" * 30 + ".math_test.accuracy"  # over a blob segment's 200 characters
    store.save_run_metrics("math_coding", unique, RunMetrics(run_id=long_id, metrics={"accuracy": 0.75}))
    store.save_run_metrics("math_coding", unique, RunMetrics(run_id="short", error="aggregation failed"))
    kept = store.run_metrics("math_coding", unique)
    assert kept[long_id].metrics == {"accuracy": 0.75}
    assert kept["short"].error == "aggregation failed"
