"""Prompt variants: which node variants a flow offers, which combinations an experiment runs, and a runnable copy
of the flow for one combination.

A DAG flow declares variants in promptflow's format: a node with `use_variants: true` takes its definition from
`node_variants.<node>.variants.<variant id>.node`, `default_variant_id` naming the one used by default.
`materialize` writes the flow with the chosen definitions inlined as ordinary nodes, so any promptflow executor
runs one combination without knowing about variants."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from itertools import product
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, computed_field

from shared.experiments.config import VariantPolicy

DAG_FILES = ("flow.dag.yaml", "flow.dag.yml")
FLEX_FILES = ("flow.flex.yaml", "flow.flex.yml")
LLM_NODE_TYPES = ("llm", "custom_llm")
# Caches promptflow and Python rebuild; a stale flow.tools.json would describe the variants, not the copy.
IGNORED_NAMES = frozenset({"__pycache__", ".promptflow", ".runs"})
IGNORED_SUFFIXES = (".pyc",)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_VARIANT_NUMBER = re.compile(r"^variant_(\d+)$")
_SLUG_LENGTH = 80

FlowKind = Literal["dag", "flex", "prompty"]


class FlowVariantsError(ValueError):
    """A flow whose variants cannot be read, or a combination that does not fit the flow."""


class TooManyCombinations(FlowVariantsError):
    """The policy and grids expand beyond variants.max_combinations."""


class NodeVariants(BaseModel):
    model_config = ConfigDict(frozen=True)

    variants: tuple[str, ...]  # sorted
    default: str


class FlowVariants(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: FlowKind
    nodes: tuple[str, ...] = ()  # every node of a DAG, in file order
    variants: dict[str, NodeVariants] = {}  # only nodes with variants, sorted by name

    @property
    def defaults(self) -> dict[str, str]:
        return {node: spec.default for node, spec in self.variants.items()}

    def counts(self) -> dict[str, int]:
        return {node: len(spec.variants) for node, spec in self.variants.items()}


class Combination(BaseModel):
    """One thing to run: a variant for every node that has variants, plus one point of the hyperparameter grid."""

    model_config = ConfigDict(frozen=True)

    variant: dict[str, str] = {}  # node -> variant id
    hyperparameters: dict[str, Any] = {}  # "input" or "node.input" -> value

    @computed_field
    @property
    def id(self) -> str:
        """Readable, filesystem-safe and stable: a slug of the content plus a hash, so equal content = equal id."""
        parts = [f"{node}-{_short(vid)}" for node, vid in sorted(self.variant.items())]
        parts += [f"{name}-{_text(value)}" for name, value in sorted(self.hyperparameters.items())]
        slug = _UNSAFE.sub("_", "__".join(parts)).strip("._-")[:_SLUG_LENGTH] or "defaults"
        canonical = json.dumps({"hyperparameters": self.hyperparameters, "variant": self.variant},
                               sort_keys=True, separators=(",", ":"), default=str)
        return f"{slug}-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"

    @property
    def label(self) -> str:
        """Same wording as RunResult.label, e.g. 'answer=variant_1, summarize=variant_0, temperature=0.7'."""
        parts = [f"{node}={vid}" for node, vid in sorted(self.variant.items())]
        parts += [f"{name}={value}" for name, value in sorted(self.hyperparameters.items())]
        return ", ".join(parts) or "defaults"


def _short(variant_id: str) -> str:
    return _VARIANT_NUMBER.sub(r"v\1", variant_id)  # variant_1 -> v1: ids stay short


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


# --- reading a flow ----------------------------------------------------------------------------------------------


def flow_file(flow_dir: Path) -> tuple[FlowKind, Path]:
    """The flow's kind and definition file (DAG first, then flex, then prompty)."""
    candidates: tuple[tuple[FlowKind, tuple[str, ...]], ...] = (("dag", DAG_FILES), ("flex", FLEX_FILES))
    for kind, names in candidates:
        for name in names:
            if (flow_dir / name).is_file():
                return kind, flow_dir / name
    prompty = sorted(flow_dir.glob("*.prompty"))
    if prompty:
        return "prompty", prompty[0]
    raise FlowVariantsError(f"{flow_dir}: no flow.dag.yaml, flow.flex.yaml or .prompty file; is this a flow folder?")


def flow_document(flow_dir: Path) -> dict[str, Any]:
    """The flow's YAML definition (DAG or flex) as a mapping; empty for a prompty flow."""
    kind, path = flow_file(Path(flow_dir))
    if kind == "prompty":
        return {}
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return document if isinstance(document, dict) else {}


def flow_inputs(flow_dir: Path) -> list[str]:
    """The names of the flow's declared inputs, in file order."""
    inputs = flow_document(flow_dir).get("inputs") or {}
    return [str(name) for name in inputs] if isinstance(inputs, dict) else []


def _load_dag(path: Path) -> dict[str, Any]:
    try:
        dag = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise FlowVariantsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(dag, dict) or not isinstance(dag.get("nodes") or [], list):
        raise FlowVariantsError(f"{path}: must be a mapping with a 'nodes' list")
    return dag


def _variants_of(path: Path, dag: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, NodeVariants]]:
    nodes = [node for node in dag.get("nodes") or [] if isinstance(node, dict)]
    names = tuple(str(node.get("name")) for node in nodes)
    declared = dag.get("node_variants") or {}
    found: dict[str, NodeVariants] = {}
    for node in nodes:
        if not node.get("use_variants"):
            continue
        name = str(node.get("name"))
        spec = declared.get(name)
        where = f"{path}: node_variants.{name}"
        if not isinstance(spec, dict):
            raise FlowVariantsError(f"{path}: node {name!r} has use_variants: true but node_variants has no {name!r}")
        variants = spec.get("variants")
        if not isinstance(variants, dict) or not variants:
            raise FlowVariantsError(f"{where}.variants: must map variant ids to {{node: ...}}")
        for variant_id, variant in variants.items():
            if not isinstance(variant, dict) or not isinstance(variant.get("node"), dict):
                raise FlowVariantsError(f"{where}.variants.{variant_id}: needs a 'node' mapping (type, source, ...)")
        default = spec.get("default_variant_id")
        if default not in variants:
            raise FlowVariantsError(
                f"{where}.default_variant_id: {default!r} is not one of its variants ({', '.join(map(str, variants))})"
            )
        found[name] = NodeVariants(variants=tuple(sorted(map(str, variants))), default=str(default))
    return names, dict(sorted(found.items()))


def discover_variants(flow_dir: Path) -> FlowVariants:
    """The flow's nodes with variants (sorted ids, default); flex and prompty flows have none."""
    kind, path = flow_file(Path(flow_dir))
    if kind != "dag":
        return FlowVariants(kind=kind)
    nodes, variants = _variants_of(path, _load_dag(path))
    return FlowVariants(kind=kind, nodes=nodes, variants=variants)


# --- expanding a policy ------------------------------------------------------------------------------------------


def _checked(flow: FlowVariants, chosen: Mapping[str, str], what: str) -> dict[str, str]:
    """`chosen` completed with defaults; unknown nodes or variant ids are errors naming the valid ones."""
    for node, variant_id in chosen.items():
        if node not in flow.variants:
            with_variants = ", ".join(flow.variants) or "(none)"
            raise FlowVariantsError(f"{what}: node {node!r} has no variants; nodes with variants: {with_variants}")
        if variant_id not in flow.variants[node].variants:
            raise FlowVariantsError(
                f"{what}: node {node!r} has no variant {variant_id!r}; "
                f"its variants: {', '.join(flow.variants[node].variants)}"
            )
    return {**flow.defaults, **chosen}


def _one_at_a_time(flow: FlowVariants) -> list[dict[str, str]]:
    defaults = flow.defaults
    return [defaults] + [
        {**defaults, node: variant_id}
        for node, spec in flow.variants.items()
        for variant_id in spec.variants
        if variant_id != spec.default
    ]


def _assignments(flow: FlowVariants, policy: VariantPolicy) -> list[dict[str, str]]:
    if policy.mode == "defaults":
        return [flow.defaults]
    if policy.mode == "one-at-a-time":
        return _one_at_a_time(flow)
    if policy.mode == "explicit":
        listed = [_checked(flow, entry, f"variants.explicit[{i}]") for i, entry in enumerate(policy.explicit)]
        unique = {json.dumps(entry, sort_keys=True): entry for entry in listed}  # first occurrence keeps its place
        return list(unique.values())
    nodes = list(flow.variants)
    everything = [dict(zip(nodes, ids, strict=True)) for ids in product(*(flow.variants[n].variants for n in nodes))]
    # The all-defaults baseline first, as in one-at-a-time, so reports can compare against it.
    return [flow.defaults] + [entry for entry in everything if entry != flow.defaults]


def _planned_count(flow: FlowVariants, policy: VariantPolicy) -> int:
    if policy.mode == "all":
        return math.prod(flow.counts().values())  # without building a product that may be huge
    return len(_assignments(flow, policy))


def _check_hyperparameter_nodes(flow: FlowVariants, names: Iterable[str]) -> None:
    names = list(names)
    if names and flow.kind != "dag":
        raise FlowVariantsError(
            f"hyperparameters {', '.join(names)}: a {flow.kind} flow has no nodes to set them on; remove them"
        )
    for name in names:
        node, dot, _ = name.partition(".")
        if dot and node not in flow.nodes:
            raise FlowVariantsError(
                f"hyperparameters.{name}: the flow has no node {node!r}; nodes: {', '.join(flow.nodes)}"
            )


def expand(
    flow_variants: FlowVariants,
    policy: VariantPolicy | None = None,
    hyperparameters: Mapping[str, Sequence[Any]] | None = None,
) -> list[Combination]:
    """Every combination the policy asks for, times every point of the hyperparameter grid, in a stable order
    (the all-defaults baseline first, except in explicit mode, which keeps the listed order)."""
    policy = policy or VariantPolicy()
    grids = {name: list(values) for name, values in sorted((hyperparameters or {}).items())}
    _check_hyperparameter_nodes(flow_variants, grids)
    variant_count = _planned_count(flow_variants, policy)
    grid_size = math.prod(len(values) for values in grids.values())
    if variant_count * grid_size > policy.max_combinations:
        raise TooManyCombinations(_too_many(flow_variants, policy, variant_count, grids))
    points = [dict(zip(grids, values, strict=True)) for values in product(*grids.values())]
    return [
        Combination(variant=assignment, hyperparameters=point)
        for assignment in _assignments(flow_variants, policy)
        for point in points
    ]


def _too_many(flow: FlowVariants, policy: VariantPolicy, variant_count: int, grids: Mapping[str, list[Any]]) -> str:
    grid_size = math.prod(len(values) for values in grids.values())
    per_node = " x ".join(f"{node} {count}" for node, count in flow.counts().items()) or "no variants"
    per_grid = " x ".join(f"{name} {len(values)}" for name, values in grids.items()) or "none"
    return (
        f"{variant_count * grid_size} combinations exceed variants.max_combinations = {policy.max_combinations}: "
        f"mode {policy.mode} gives {variant_count} variant combination(s) (variants per node: {per_node}) "
        f"x {grid_size} hyperparameter point(s) ({per_grid}). Narrow it: variants.mode one-at-a-time "
        f"({len(_one_at_a_time(flow))} variant combinations), defaults or explicit; fewer hyperparameter values; "
        "or raise variants.max_combinations"
    )


# --- materializing one combination -------------------------------------------------------------------------------


def _apply_hyperparameters(nodes: list[dict[str, Any]], hyperparameters: Mapping[str, Any]) -> None:
    by_name = {node.get("name"): node for node in nodes}
    for name, value in sorted(hyperparameters.items()):
        node_name, dot, input_name = name.rpartition(".")
        if dot:
            node = by_name.get(node_name)
            if node is None:
                known = ", ".join(map(str, by_name))
                raise FlowVariantsError(f"hyperparameter {name}: no node {node_name!r}; nodes: {known}")
            # Explicitly qualified: set it even if the node does not list it yet (e.g. top_p on an llm node).
            node.setdefault("inputs", {})[input_name] = value
            continue
        having = [node for node in nodes if input_name in (node.get("inputs") or {})]
        targets = [node for node in having if node.get("type") in LLM_NODE_TYPES] or having
        if not targets:
            raise FlowVariantsError(
                f"hyperparameter {name}: no node has an input {name!r} in this combination; qualify it as "
                f"<node>.{name} to add it (nodes: {', '.join(map(str, by_name))})"
            )
        for node in targets:
            node["inputs"][input_name] = value


def _inline_variants(dag: dict[str, Any], chosen: Mapping[str, str]) -> dict[str, Any]:
    """The DAG with each variant node replaced by its chosen definition, as promptflow itself does at run time."""
    declared = dag.pop("node_variants", None) or {}
    dag["nodes"] = [
        _chosen_node(node["name"], declared, chosen) if isinstance(node, dict) and node.get("use_variants") else node
        for node in dag.get("nodes") or []
    ]
    return dag


def _chosen_node(name: str, declared: Mapping[str, Any], chosen: Mapping[str, str]) -> dict[str, Any]:
    definition = copy.deepcopy(declared[name]["variants"][chosen[name]]["node"])
    definition.pop("use_variants", None)
    definition.pop("name", None)
    return {"name": name, **definition}


def _copy_tree(source: Path, target: Path) -> None:
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if IGNORED_NAMES.intersection(relative.parts) or path.suffix in IGNORED_SUFFIXES:
            continue
        if path.is_dir():
            (target / relative).mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / relative)


def _include(flow_dir: Path, include: Any, target: Path) -> None:
    """Copy an `additional_includes` entry into the copy's root, where promptflow itself would put it."""
    source = (flow_dir / str(include)).resolve()
    destination = target / source.name
    if destination.exists():
        raise FlowVariantsError(f"{flow_dir}: additional_includes entry {include!r} clashes with {source.name!r}")
    if source.is_dir():
        destination.mkdir()
        _copy_tree(source, destination)
    else:
        shutil.copyfile(source, destination)


def materialize(flow_dir: Path, combination: Combination, target_dir: Path) -> Path:
    """Write a runnable copy of the flow for one combination into `target_dir` (replaced if it exists).

    Variant nodes become ordinary nodes (no use_variants, no node_variants), hyperparameters are set on node inputs,
    every other file is copied and additional_includes are pulled in, so the copy runs from target_dir alone.
    Same input, byte-identical output."""
    flow_dir, target = Path(flow_dir).resolve(), Path(target_dir).resolve()
    if target == flow_dir or flow_dir in target.parents or target in flow_dir.parents:
        raise FlowVariantsError(f"target {target} overlaps the flow {flow_dir}; materialize somewhere else")
    kind, definition = flow_file(flow_dir)
    flow = discover_variants(flow_dir)
    chosen = _checked(flow, combination.variant, f"combination {combination.id}")
    _check_hyperparameter_nodes(flow, combination.hyperparameters)

    dag: dict[str, Any] | None = None
    includes: list[Any] = []
    if kind == "dag":
        dag = _inline_variants(_load_dag(definition), chosen)
        includes = dag.pop("additional_includes", None) or []
        _apply_hyperparameters(dag["nodes"], combination.hyperparameters)
    missing = [str(include) for include in includes if not (flow_dir / str(include)).exists()]
    if missing:  # checked before target is touched, so a bad flow leaves nothing half-written
        raise FlowVariantsError(f"{definition}: additional_includes not found: {', '.join(missing)}")

    if target.exists():
        shutil.rmtree(target)  # a redelivered event re-materializes from scratch
    target.mkdir(parents=True)
    _copy_tree(flow_dir, target)
    for include in includes:
        _include(flow_dir, include, target)
    if dag is not None:
        text = yaml.safe_dump(dag, sort_keys=False, allow_unicode=True, default_flow_style=False)
        (target / definition.name).write_text(text, encoding="utf-8")
    return target
