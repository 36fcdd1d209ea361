import itertools
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.experiments.config import VariantPolicy
from shared.experiments.variants import (
    Combination,
    FlowVariants,
    FlowVariantsError,
    NodeVariants,
    TooManyCombinations,
    discover_variants,
    expand,
    materialize,
)

FLOWS = Path(__file__).parent / "fixtures" / "experiments" / "flows"
STANDARD = FLOWS / "math_coding" / "flows" / "standard"  # summarize: 2 variants, answer: 3 (default variant_1)
FLEX = FLOWS / "qa_bot" / "flows" / "chat"
SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def source_dag() -> dict[str, Any]:
    return yaml.safe_load((STANDARD / "flow.dag.yaml").read_text(encoding="utf-8"))


def written_dag(target: Path) -> dict[str, Any]:
    return yaml.safe_load((target / "flow.dag.yaml").read_text(encoding="utf-8"))


def nodes_of(dag: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["name"]: node for node in dag["nodes"]}


def files_of(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def policy(mode: str = "all", **fields: Any) -> VariantPolicy:
    return VariantPolicy.model_validate({"mode": mode, **fields})


# --- discovery ----------------------------------------------------------------------------------------------------


def test_discover_variants_of_a_dag_flow() -> None:
    flow = discover_variants(STANDARD)
    assert flow.kind == "dag"
    assert flow.nodes == ("summarize", "answer", "parse")
    assert list(flow.variants) == ["answer", "summarize"]
    answer_variants = ("variant_0", "variant_1", "variant_2")
    assert flow.variants["answer"] == NodeVariants(variants=answer_variants, default="variant_1")
    assert flow.variants["summarize"] == NodeVariants(variants=("variant_0", "variant_1"), default="variant_0")
    assert flow.defaults == {"answer": "variant_1", "summarize": "variant_0"}
    assert flow.counts() == {"answer": 3, "summarize": 2}


def test_flex_and_prompty_flows_have_no_variants(tmp_path: Path) -> None:
    assert discover_variants(FLEX) == FlowVariants(kind="flex")
    (tmp_path / "chat.prompty").write_text("---\nname: chat\n---\nsystem:\nhi\n", encoding="utf-8")
    assert discover_variants(tmp_path).variants == {}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda dag: dag.pop("node_variants"), "node 'summarize' has use_variants: true but node_variants has no"),
        (lambda dag: dag["node_variants"]["answer"].update(default_variant_id="variant_9"),
         "node_variants.answer.default_variant_id: 'variant_9' is not one of its variants"),
        (lambda dag: dag["node_variants"]["answer"]["variants"].update(variant_3={"nodes": {}}),
         "node_variants.answer.variants.variant_3: needs a 'node' mapping"),
    ],
)
def test_broken_variant_declarations_are_reported(tmp_path: Path, edit: Any, expected: str) -> None:
    dag = source_dag()
    edit(dag)
    (tmp_path / "flow.dag.yaml").write_text(yaml.safe_dump(dag), encoding="utf-8")
    with pytest.raises(FlowVariantsError, match=re.escape(expected)):
        discover_variants(tmp_path)


def test_a_folder_without_a_flow(tmp_path: Path) -> None:
    with pytest.raises(FlowVariantsError, match=re.escape("no flow.dag.yaml, flow.flex.yaml or .prompty file")):
        discover_variants(tmp_path)


# --- expansion ----------------------------------------------------------------------------------------------------


def test_all_is_the_full_cross_product_with_the_defaults_first() -> None:
    combinations = expand(discover_variants(STANDARD), policy("all"))
    assert len(combinations) == 6
    assert combinations[0].variant == {"answer": "variant_1", "summarize": "variant_0"}
    expected = [
        {"answer": answer, "summarize": summarize}
        for answer, summarize in itertools.product(["variant_0", "variant_1", "variant_2"], ["variant_0", "variant_1"])
    ]
    assert sorted(tuple(c.variant.items()) for c in combinations) == sorted(tuple(e.items()) for e in expected)
    assert all(c.hyperparameters == {} for c in combinations)
    assert len({c.id for c in combinations}) == 6


def test_one_at_a_time_varies_one_node_with_the_others_at_default() -> None:
    combinations = expand(discover_variants(STANDARD), policy("one-at-a-time"))
    assert [c.variant for c in combinations] == [
        {"answer": "variant_1", "summarize": "variant_0"},
        {"answer": "variant_0", "summarize": "variant_0"},
        {"answer": "variant_2", "summarize": "variant_0"},
        {"answer": "variant_1", "summarize": "variant_1"},
    ]


def test_defaults_is_one_combination() -> None:
    [only] = expand(discover_variants(STANDARD), policy("defaults"))
    assert only.variant == {"answer": "variant_1", "summarize": "variant_0"}


def test_explicit_fills_missing_nodes_with_defaults_and_drops_repeats() -> None:
    explicit = [{"summarize": "variant_1", "answer": "variant_0"}, {"summarize": "variant_1"},
                {"answer": "variant_0", "summarize": "variant_1"}]
    combinations = expand(discover_variants(STANDARD), policy("explicit", explicit=explicit))
    assert [c.variant for c in combinations] == [
        {"answer": "variant_0", "summarize": "variant_1"},
        {"answer": "variant_1", "summarize": "variant_1"},
    ]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"sumarize": "variant_1"}, "variants.explicit[0]: node 'sumarize' has no variants; nodes with variants: "
                                    "answer, summarize"),
        ({"parse": "variant_0"}, "node 'parse' has no variants"),
        ({"answer": "variant_7"}, "node 'answer' has no variant 'variant_7'; its variants: variant_0, variant_1, "
                                  "variant_2"),
    ],
)
def test_explicit_entries_are_validated_against_the_flow(entry: dict[str, str], expected: str) -> None:
    with pytest.raises(FlowVariantsError, match=re.escape(expected)):
        expand(discover_variants(STANDARD), policy("explicit", explicit=[entry]))


def test_hyperparameter_grids_multiply_every_variant_combination() -> None:
    grids = {"temperature": [0.0, 0.7], "answer.max_tokens": [64, 128]}
    combinations = expand(discover_variants(STANDARD), policy("all"), grids)
    assert len(combinations) == 24
    assert combinations[0].hyperparameters == {"answer.max_tokens": 64, "temperature": 0.0}
    assert combinations[0].variant == {"answer": "variant_1", "summarize": "variant_0"}
    points = {tuple(sorted(c.hyperparameters.items())) for c in combinations}
    assert len(points) == 4
    assert len({c.id for c in combinations}) == 24


def test_flows_without_variants_still_run_once_per_grid_point() -> None:
    flow = FlowVariants(kind="dag", nodes=("answer",))
    combinations = expand(flow, policy("all"), {"temperature": [0.1, 0.2]})
    assert [(c.variant, c.hyperparameters) for c in combinations] == [({}, {"temperature": 0.1}),
                                                                       ({}, {"temperature": 0.2})]
    assert [c.variant for c in expand(FlowVariants(kind="flex"))] == [{}]


def test_too_many_combinations_names_the_count_the_factors_and_the_fix() -> None:
    with pytest.raises(TooManyCombinations) as error:
        expand(discover_variants(STANDARD), policy("all", max_combinations=10), {"temperature": [0.0, 0.7]})
    message = str(error.value)
    assert message.startswith("12 combinations exceed variants.max_combinations = 10")
    assert "mode all gives 6 variant combination(s) (variants per node: answer 3 x summarize 2)" in message
    assert "x 2 hyperparameter point(s) (temperature 2)" in message
    assert "variants.mode one-at-a-time (4 variant combinations)" in message
    assert "raise variants.max_combinations" in message


def test_the_limit_is_checked_before_building_a_huge_product() -> None:
    nodes = {f"n{i}": NodeVariants(variants=tuple(f"variant_{j}" for j in range(10)), default="variant_0")
             for i in range(12)}
    with pytest.raises(TooManyCombinations, match=r"^1000000000000 combinations"):
        expand(FlowVariants(kind="dag", nodes=tuple(nodes), variants=nodes), policy("all"))


def test_hyperparameters_for_unknown_nodes_or_flex_flows_fail_before_any_run() -> None:
    with pytest.raises(FlowVariantsError, match=r"hyperparameters.anser.max_tokens: the flow has no node 'anser'"):
        expand(discover_variants(STANDARD), policy("defaults"), {"anser.max_tokens": [64]})
    with pytest.raises(FlowVariantsError, match="a flex flow has no nodes to set them on"):
        expand(discover_variants(FLEX), policy("defaults"), {"temperature": [0.1]})


def test_combination_ids_are_stable_short_safe_and_content_derived() -> None:
    first = expand(discover_variants(STANDARD), policy("all"), {"temperature": [0.0, 0.7]})
    second = expand(discover_variants(STANDARD), policy("all"), {"temperature": [0.0, 0.7]})
    assert [c.id for c in first] == [c.id for c in second]
    assert all(SAFE_ID.match(c.id) for c in first)
    assert first[1].id.startswith("answer-v1__summarize-v0__temperature-0.7-")
    same = Combination(variant={"summarize": "variant_0", "answer": "variant_1"}, hyperparameters={"temperature": 0.7})
    assert same.id == first[1].id
    assert same.label == "answer=variant_1, summarize=variant_0, temperature=0.7"
    assert Combination().id.startswith("defaults-")
    odd = Combination(variant={"a/b": "../x y"}, hyperparameters={"stop": ["\n"], "name": "a" * 300})
    assert SAFE_ID.match(odd.id)
    assert Combination.model_validate_json(same.model_dump_json()) == same
    assert same.model_dump()["id"] == same.id


# --- materialization ----------------------------------------------------------------------------------------------


def test_materialize_inlines_the_chosen_variants_for_all_six_combinations(tmp_path: Path) -> None:
    source = source_dag()
    declared = source["node_variants"]
    for combination in expand(discover_variants(STANDARD), policy("all")):
        target = materialize(STANDARD, combination, tmp_path / combination.id)
        dag = written_dag(target)
        text = (target / "flow.dag.yaml").read_text(encoding="utf-8")
        assert "use_variants" not in text
        assert "node_variants" not in dag
        nodes = nodes_of(dag)
        assert list(nodes) == ["summarize", "answer", "parse"]
        for node, variant_id in combination.variant.items():
            assert nodes[node] == {"name": node, **declared[node]["variants"][variant_id]["node"]}
        assert nodes["parse"] == nodes_of(source)["parse"]
        assert {key: dag[key] for key in ("inputs", "outputs", "environment")} == {
            key: source[key] for key in ("inputs", "outputs", "environment")
        }
        copied = set(files_of(target))
        assert copied == set(files_of(STANDARD))
        assert (target / "parse.py").read_bytes() == (STANDARD / "parse.py").read_bytes()


def test_materialize_is_byte_for_byte_deterministic(tmp_path: Path) -> None:
    combination = Combination(variant={"answer": "variant_2", "summarize": "variant_1"},
                              hyperparameters={"temperature": 0.7})
    first = files_of(materialize(STANDARD, combination, tmp_path / "one"))
    second = files_of(materialize(STANDARD, combination, tmp_path / "two"))
    assert first == second


def test_unqualified_hyperparameters_set_every_llm_node_that_has_the_input(tmp_path: Path) -> None:
    combination = Combination(variant={"answer": "variant_2"}, hyperparameters={"temperature": 0.9, "max_tokens": 32})
    nodes = nodes_of(written_dag(materialize(STANDARD, combination, tmp_path / "out")))
    assert nodes["summarize"]["inputs"]["temperature"] == 0.9
    assert nodes["answer"]["inputs"]["temperature"] == 0.9
    assert nodes["summarize"]["inputs"]["max_tokens"] == 32
    assert "max_tokens" not in nodes["answer"]["inputs"]  # variant_2 has no max_tokens: left alone
    assert nodes["summarize"]["source"]["path"] == "summarize_v0.jinja2"  # missing nodes take their default
    assert nodes["answer"]["source"]["path"] == "answer_v2.jinja2"


def test_unqualified_hyperparameters_fall_back_to_any_node_with_the_input(tmp_path: Path) -> None:
    combination = Combination(hyperparameters={"text": "fixed"})
    nodes = nodes_of(written_dag(materialize(STANDARD, combination, tmp_path / "out")))
    assert nodes["parse"]["inputs"]["text"] == "fixed"


def test_qualified_hyperparameters_set_only_that_node_and_may_add_an_input(tmp_path: Path) -> None:
    combination = Combination(hyperparameters={"answer.max_tokens": 512, "answer.top_p": 0.5})
    nodes = nodes_of(written_dag(materialize(STANDARD, combination, tmp_path / "out")))
    assert nodes["answer"]["inputs"]["max_tokens"] == 512
    assert nodes["answer"]["inputs"]["top_p"] == 0.5
    assert nodes["summarize"]["inputs"]["max_tokens"] == 128


@pytest.mark.parametrize(
    ("combination", "expected"),
    [
        (Combination(hyperparameters={"top_k": 3}), "hyperparameter top_k: no node has an input 'top_k'"),
        (Combination(hyperparameters={"anser.top_k": 3}), "the flow has no node 'anser'"),
        (Combination(variant={"answer": "variant_5"}), "node 'answer' has no variant 'variant_5'"),
    ],
)
def test_materialize_rejects_what_the_flow_cannot_take(tmp_path: Path, combination: Combination, expected: str) -> None:
    with pytest.raises(FlowVariantsError, match=re.escape(expected)):
        materialize(STANDARD, combination, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_materialize_replaces_an_existing_target(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("from an earlier attempt", encoding="utf-8")
    materialize(STANDARD, Combination(), target)
    assert not (target / "stale.txt").exists()
    assert (target / "flow.dag.yaml").is_file()


def test_materialize_refuses_to_write_over_or_inside_the_flow(tmp_path: Path) -> None:
    flow = tmp_path / "flow"
    shutil.copytree(STANDARD, flow)
    for target in (flow, flow / "inner", tmp_path):
        with pytest.raises(FlowVariantsError, match="overlaps the flow"):
            materialize(flow, Combination(), target)
    assert (flow / "flow.dag.yaml").is_file()


def test_materialize_skips_caches_and_pulls_in_additional_includes(tmp_path: Path) -> None:
    flow = tmp_path / "flows" / "standard"
    shutil.copytree(STANDARD, flow)
    (flow / "__pycache__").mkdir()
    (flow / "__pycache__" / "parse.cpython-311.pyc").write_bytes(b"\0")
    (flow / ".promptflow").mkdir()
    (flow / ".promptflow" / "flow.tools.json").write_text("{}", encoding="utf-8")
    shared = tmp_path / "flows" / "common"
    shared.mkdir()
    (shared / "helpers.py").write_text("VALUE = 1\n", encoding="utf-8")
    (tmp_path / "flows" / "glossary.txt").write_text("terms\n", encoding="utf-8")
    dag = source_dag()
    dag["additional_includes"] = ["../common", "../glossary.txt"]
    (flow / "flow.dag.yaml").write_text(yaml.safe_dump(dag, sort_keys=False), encoding="utf-8")

    target = materialize(flow, Combination(), tmp_path / "out")

    copied = set(files_of(target))
    assert "common/helpers.py" in copied
    assert "glossary.txt" in copied
    assert not any(name.startswith(("__pycache__", ".promptflow")) for name in copied)
    assert "additional_includes" not in written_dag(target)


def test_materialize_a_flex_flow_copies_it_unchanged(tmp_path: Path) -> None:
    target = materialize(FLEX, Combination(), tmp_path / "out")
    assert files_of(target) == files_of(FLEX)
