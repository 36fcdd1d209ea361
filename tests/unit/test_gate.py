from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.experiments.config import ExperimentConfigError, load_experiment
from shared.experiments.gate import Baseline, GateConfig, GateConfigError, Threshold, evaluate_gate
from shared.experiments.results import ExperimentResult, LineResult, RunResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# combination -> dataset -> (accuracy, error_rate)
SCORES = {
    "variant_0": {"train": (0.9, 0.1), "test": (0.7, 0.3)},  # mean accuracy 0.8
    "variant_1": {"train": (0.8, 0.2), "test": (0.9, 0.1)},  # mean accuracy 0.85: the best
}


def run(run_id: str, variant: str, dataset: str, kind: str = "standard", **extra: object) -> RunResult:
    return RunResult(run_id=run_id, kind=kind, flow="f", dataset=dataset, variant={"solve": variant},
                     status="completed", lines=[LineResult(line_number=0, inputs={}, outputs={}, duration_ms=1)],
                     started_at=T0, duration_seconds=1, **extra)


def experiment() -> ExperimentResult:
    standard, evaluations = [], []
    for variant, datasets in SCORES.items():
        for dataset, (accuracy, error_rate) in datasets.items():
            standard.append(run(f"{variant}-{dataset}", variant, dataset))
            evaluations.append(run(f"{variant}-{dataset}-eval", variant, dataset, kind="evaluation",
                                   evaluator="acc", parent_run_id=f"{variant}-{dataset}",
                                   metrics={"accuracy": accuracy, "error_rate": error_rate}))
    return ExperimentResult(experiment_id="e", use_case="u", environment="dev", status="completed",
                            standard_runs=standard, evaluation_runs=evaluations, started_at=T0, finished_at=T0)


def test_best_combination_is_chosen_by_the_mean_of_the_primary_metric() -> None:
    verdict = evaluate_gate(experiment(), GateConfig(primary_metric="accuracy"), baseline=None)
    assert verdict.passed
    assert verdict.best_variant == {"solve": "variant_1"}
    assert verdict.best_value == pytest.approx(0.85)
    assert verdict.best_metrics == {"acc.accuracy": pytest.approx(0.85), "acc.error_rate": pytest.approx(0.15)}


def test_lower_is_better_metrics_pick_the_lowest() -> None:
    verdict = evaluate_gate(experiment(), GateConfig(primary_metric="acc.error_rate"), baseline=None)
    assert verdict.best_variant == {"solve": "variant_1"}
    assert verdict.best_value == pytest.approx(0.15)


def test_absolute_thresholds_fail_with_reasons() -> None:
    gate = GateConfig(primary_metric="accuracy", thresholds=[Threshold(metric="accuracy", min=0.9),
                                                             Threshold(metric="error_rate", max=0.2)])
    verdict = evaluate_gate(experiment(), gate, baseline=None)
    assert not verdict.passed
    assert [c.passed for c in verdict.checks] == [False, True]
    assert verdict.reasons == ["accuracy >= 0.9 failed: actual 0.85"]


def test_relative_threshold_compares_with_the_deployed_version() -> None:
    gate = GateConfig(primary_metric="accuracy", thresholds=[Threshold(metric="accuracy", max_drop=0.02)])
    assert evaluate_gate(experiment(), gate, Baseline(flow_version="3", metrics={"acc.accuracy": 0.86})).passed
    failed = evaluate_gate(experiment(), gate, Baseline(flow_version="3", metrics={"acc.accuracy": 0.9}))
    assert not failed.passed
    assert "deployed version 3: 0.9" in failed.reasons[0]
    first_ever = evaluate_gate(experiment(), gate, baseline=None)
    assert first_ever.passed
    assert first_ever.checks[0].note == "skipped: no deployed version yet"


def test_unknown_metric_is_a_configuration_error_naming_what_exists() -> None:
    with pytest.raises(GateConfigError, match=r"'f1' was not measured; metrics of this experiment: .*accuracy"):
        evaluate_gate(experiment(), GateConfig(primary_metric="f1"), baseline=None)


def test_threshold_needs_exactly_one_bound() -> None:
    with pytest.raises(ValueError, match="exactly one of min, max, max_drop"):
        Threshold(metric="accuracy", min=0.1, max=0.9)


def test_a_bad_gate_block_in_experiment_yaml_names_the_file(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parents[2] / "flows" / "math_coding"
    use_case = tmp_path / "math_coding"
    import shutil

    shutil.copytree(source, use_case)
    (use_case / "experiment.dev.yaml").write_text("gate:\n  primary_metric: accuracy\n  thresholds:\n"
                                                  "  - {metric: accuracy, min: 0.5, max: 0.9}\n")
    with pytest.raises(ExperimentConfigError, match=r"experiment.dev.yaml.*gate"):
        load_experiment(use_case, "dev")


def test_without_evaluators_nothing_ranks_and_every_threshold_fails_for_want_of_a_value() -> None:
    unevaluated = experiment().model_copy(update={"evaluation_runs": []})

    plain = evaluate_gate(unevaluated, GateConfig(primary_metric="<no metric>"), baseline=None)
    assert plain.passed  # no thresholds: the flow ran on every line, which is all a pr overlay without evaluators asks
    assert plain.best_variant == {"solve": "variant_0"}  # the first combination (all defaults) stands

    guarded = evaluate_gate(unevaluated, GateConfig(primary_metric="accuracy",
                                                    thresholds=[Threshold(metric="accuracy", min=0.8)]), baseline=None)
    assert not guarded.passed
    assert guarded.reasons == ["accuracy: no evaluator ran in this environment, so this threshold cannot be checked"]
