"""Post-production evaluation without I/O: the `monitoring.evaluation` block, sampling, judged-once selection,
the request -> evaluator inputs mapping, metrics and thresholds per deployment, and the judge in the A/B report."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.experiments.config import ExperimentConfigError, load_experiment
from shared.experiments.mappings import MappingError
from shared.experiments.monitoring_config import MonitoringConfig, ProductionEvaluationConfig
from shared.feedback.ab_report import RatedFeedback, ServedRequest, build_ab_report, render_csv, render_html
from shared.feedback.statistics import welch_t_test
from shared.monitoring.judging import (
    JudgedLine,
    JudgingState,
    evaluator_inputs,
    is_sampled,
    numeric_scores,
    per_deployment,
    select_lines,
    worst_lines,
)
from shared.monitoring.production_log import ProductionLine

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 4, 12, tzinfo=UTC)
JUDGE = {"name": "judge", "flow": "flows/judge",
         "mappings": {"question": "${data.question}", "answer": "${run.outputs.answer}", "strict": True}}


def evaluation(**fields: object) -> ProductionEvaluationConfig:
    return ProductionEvaluationConfig.model_validate({"evaluators": [JUDGE], **fields})


def line(request_id: str, deployment: str | None = "blue", *, minutes: float = 0, status: int = 200,
         pinned: bool = False, outputs: object = None) -> ProductionLine:
    return ProductionLine(time=T0 + timedelta(minutes=minutes), use_case="uc", endpoint="ep", request_id=request_id,
                          deployment=deployment, pinned=pinned, status=status, latency_ms=10,
                          inputs={"question": f"What is {request_id}?"},
                          outputs={"answer": "42"} if outputs is None else outputs)


def judged(request_id: str, deployment: str, score: float | None, *, error: str | None = None) -> JudgedLine:
    return JudgedLine(request_id=request_id, deployment=deployment, time=T0,
                      scores={} if score is None else {"judge.score": score}, errors=[error] if error else [])


def test_sampling_is_by_request_id_and_close_to_the_rate() -> None:
    ids = [f"req-{i}" for i in range(4000)]
    chosen = [rid for rid in ids if is_sampled(rid, 0.25)]
    assert 900 < len(chosen) < 1100
    assert chosen == [rid for rid in ids if is_sampled(rid, 0.25)]  # the same lines however often it is asked
    assert all(is_sampled(rid, 1.0) for rid in ids)
    assert set(chosen) <= {rid for rid in ids if is_sampled(rid, 0.5)}  # a larger rate keeps the smaller sample


def test_only_new_answered_routed_lines_are_chosen_shared_between_deployments() -> None:
    lines = [line(f"b{i}", "blue", minutes=i) for i in range(30)] + [line(f"g{i}", "green", minutes=i + 0.5)
                                                                       for i in range(3)]
    lines += [line("pinned", pinned=True), line("failed", status=500), line("nobody", None),
              line("no-answer", outputs={})]
    state = JudgingState(judged={"b0": T0, "b1": T0})
    chosen, left_over = select_lines(lines, state, evaluation(sample_rate=1.0, max_lines=10))
    names = [chosen_line.request_id for chosen_line in chosen]
    assert {"g0", "g1", "g2"} <= set(names)  # the small share is judged too, not crowded out
    assert not {"b0", "b1", "pinned", "failed", "nobody"} & set(names)
    assert len(names) == 10
    assert left_over == 28 + 3 + 1 - 10
    assert [c.time for c in chosen] == sorted(c.time for c in chosen)


def test_the_state_remembers_judged_lines_only_while_the_lookback_can_read_them() -> None:
    state = JudgingState()
    config = evaluation(sample_rate=1.0, lookback_minutes=30)
    first = [line(f"r{i}", minutes=i) for i in range(5)]
    state.remember(first, T0 + timedelta(minutes=10), config.lookback)
    chosen, _ = select_lines([*first, line("late", minutes=3), line("new", minutes=11)], state, config)
    assert [c.request_id for c in chosen] == ["late", "new"]  # never the same line twice; a late line still counts
    state.remember(chosen, T0 + timedelta(minutes=34), config.lookback)
    assert set(state.judged) == {"r4", "late", "new"} - {"late"}  # older than 34 - 30 min: the next read misses them
    assert state.last_run == T0 + timedelta(minutes=34)


def test_a_request_maps_to_the_evaluator_inputs_as_experiment_evaluators_do() -> None:
    [judge] = evaluation().evaluators
    assert evaluator_inputs(judge, line("r1")) == {"question": "What is r1?", "answer": "42", "strict": True}
    with pytest.raises(MappingError, match="run output 'answer' is missing"):
        evaluator_inputs(judge, line("r2", outputs={"reasoning": "..."}))


def test_numeric_outputs_become_metrics_and_thresholds_need_enough_lines() -> None:
    assert numeric_scores("judge", {"score": 4, "ok": True, "why": "fine", "nan": float("nan")}) == {
        "judge.score": 4.0, "judge.ok": 1.0}
    config = evaluation(min_lines=3, thresholds=[{"metric": "judge.score", "min": 3.0},
                                                 {"metric": "judge.score", "max": 4.5}])
    lines = [judged("b1", "blue", 5), judged("b2", "blue", 5), judged("b3", "blue", 5),
             judged("g1", "green", 1), judged("g2", "green", 2), judged("g3", "green", None, error="judge: boom"),
             judged("r1", "red", 1)]
    results = {r.deployment: r for r in per_deployment(lines, config)}
    assert results["blue"].metrics == {"judge.score": 5.0}
    assert results["blue"].breaches == ["judge.score 5 > 4.5"]
    assert (results["green"].lines, results["green"].failed_lines) == (3, 1)
    assert results["green"].breaches == []  # two scored lines: below min_lines, no verdict
    assert results["red"].breaches == []
    assert [w.request_id for w in worst_lines(lines, "judge.score", 3)] == ["g3", "g1", "r1"]


@pytest.mark.parametrize(("block", "problem"), [
    ({"evaluators": []}, "at least 1 item"),
    ({"schedule": "0 * * * *"}, "not an NCRONTAB schedule"),
    ({"sample_rate": 0}, "greater than 0"),
    ({"thresholds": [{"metric": "judge.score"}]}, "needs min or max"),
    ({"thresholds": [{"metric": "score", "min": 1}]}, "should match pattern"),
    ({"evaluators": [{**JUDGE, "mappings": {"q": "Q: ${data.question}"}}]}, "is not a reference"),
])
def test_a_wrong_evaluation_block_says_what_is_wrong(block: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        MonitoringConfig.model_validate({"evaluation": {"evaluators": [JUDGE], **block}})


def test_the_shipped_judge_is_configured_locally_and_a_missing_flow_is_reported(tmp_path: Path) -> None:
    config = load_experiment(ROOT / "flows" / "math_coding", "local")
    assert config.monitoring is not None
    assert config.monitoring.evaluation is not None
    [judge] = config.production_evaluators
    assert (judge.flow_dir / "flow.dag.yaml").is_file()
    assert config.monitoring.evaluation.ranking_metric == "judge.score"
    dev = load_experiment(ROOT / "flows" / "math_coding", "dev").monitoring  # the dev overlay: no judge there
    assert dev is not None
    assert dev.evaluation is None

    (tmp_path / "uc" / "flows" / "standard").mkdir(parents=True)
    (tmp_path / "uc" / "flows" / "standard" / "flow.dag.yaml").write_text("inputs: {}\n")
    (tmp_path / "uc" / "data.jsonl").write_text('{"q": 1}\n')
    (tmp_path / "uc" / "experiment.yaml").write_text(
        "name: uc\nflow: flows/standard\ndatasets: [{name: d, source: data.jsonl}]\n"
        "monitoring:\n  evaluation:\n    evaluators: [{name: judge, flow: flows/nowhere}]\n")
    with pytest.raises(ExperimentConfigError) as error:
        load_experiment(tmp_path / "uc", "dev")
    assert any("monitoring.evaluation.evaluators[0].flow" in problem for problem in error.value.problems)


def test_the_ab_report_compares_the_judge_scores_with_the_ratings_test() -> None:
    requests = [ServedRequest(time=T0, endpoint="ep", request_id=f"{d}{i}", deployment=d, status=200,
                              latency_ms=10) for d in ("blue", "green") for i in range(20)]
    blue, green = [4.0, 5.0, 4.0, 5.0, 5.0, 4.0], [2.0, 1.0, 2.0, 3.0, 1.0]
    report = build_ab_report("uc", "ep", requests, [RatedFeedback("blue1", "blue", 4, None)],
                             generated_at=T0, traffic={"blue": 80, "green": 20},
                             judge=("judge.score", {"blue": blue, "green": green}))
    stats = {s.deployment: s for s in report.deployments}
    assert (stats["blue"].judged, stats["blue"].mean_judge, stats["green"].mean_judge) == (6, 4.5, 1.8)
    assert stats["green"].judge_ci_low is not None
    assert stats["green"].judge_ci_low < 1.8
    [comparison] = report.comparisons
    expected = welch_t_test(green, blue)
    assert expected is not None
    assert comparison.judge_difference == pytest.approx(1.8 - 4.5)
    assert (comparison.judge_p, comparison.judge_significant) == (pytest.approx(expected.p_value), True)
    assert "ratings: fewer than 2 on a side" in comparison.notes[0]
    html = render_html(report)
    assert "mean judge.score" in html
    assert "judge score lower by 2.70 (significant" in html
    rows = {row["deployment"]: row for row in csv.DictReader(io.StringIO(render_csv(report)))}
    assert (rows["green"]["judge_significant"], rows["blue"]["mean_judge"]) == ("True", "4.5")

    without = build_ab_report("uc", "ep", requests, [], generated_at=T0)
    assert without.judge_metric is None
    assert "judge" not in render_html(without)
    assert all(c.judge_p is None for c in without.comparisons)


def test_one_run_at_a_time_holds_a_lease_until_it_ends_or_expires() -> None:
    state = JudgingState(running=T0, running_until=T0 + timedelta(minutes=5))
    later = T0 + timedelta(minutes=1)
    assert state.busy(later, now=later)  # a later firing waits: it would judge the same lines
    assert not state.busy(T0, now=later)  # the same firing redelivered takes over its own run
    assert not state.busy(later, now=T0 + timedelta(minutes=6))  # a run that died lets go when its lease ends
    state.remember([], later, timedelta(minutes=30))
    assert (state.running, state.running_until, state.busy(T0 + timedelta(minutes=2), now=later)) == (None, None,
                                                                                                    False)
