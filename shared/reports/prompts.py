"""Each node variant the result recorded, as the page shows it: its definition (node type, inputs, prompt template
or code) and, for a variant other than the node's default, a unified diff against the default's definition."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

import yaml

from shared.experiments.results import ExperimentResult, VariantDefinition

DiffKind = Literal["add", "remove", "hunk", "same"]
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class DiffLine:
    kind: DiffKind
    text: str


@dataclass
class VariantView:
    definition: VariantDefinition
    anchor: str
    used: bool              # some combination of this experiment ran it
    text: str               # the whole definition as shown
    diff: list[DiffLine]    # against the node's default; empty for the default itself, or when identical


@dataclass
class NodeVariants:
    node: str
    default: str
    variants: list[VariantView]


def variant_anchor(node: str, variant: str) -> str:
    return "variant-" + _UNSAFE.sub("_", f"{node}-{variant}")


def definition_text(definition: VariantDefinition) -> str:
    """Node type, source and inputs as YAML, then the template or code: one text to read and to diff."""
    head = {"type": definition.type, "source": definition.source, "inputs": definition.inputs}
    text = yaml.safe_dump(head, sort_keys=False, allow_unicode=True, default_flow_style=False)
    if definition.source:
        body = definition.text if definition.text is not None else "(not readable)"
        text += f"\n--- {definition.source} ---\n{body}"
    return text


def _diff(default: VariantDefinition, other: VariantDefinition) -> list[DiffLine]:
    lines = difflib.unified_diff(
        definition_text(default).splitlines(), definition_text(other).splitlines(),
        fromfile=f"{default.node}={default.variant}", tofile=f"{other.node}={other.variant}", lineterm="", n=2)
    kinds: dict[str, DiffKind] = {"+": "add", "-": "remove", "@": "hunk"}
    # The two file-header lines only repeat the variants' names, which the page shows already.
    return [DiffLine(kinds.get(line[:1], "same"), line) for line in list(lines)[2:]]


def node_variants(result: ExperimentResult) -> list[NodeVariants]:
    """The recorded variants, grouped by node, the default first; the others diffed against it."""
    ran = {(node, variant) for run in result.standard_runs for node, variant in run.variant.items()}
    nodes: dict[str, list[VariantDefinition]] = {}
    for definition in result.variant_definitions:
        nodes.setdefault(definition.node, []).append(definition)
    found = []
    for node, definitions in nodes.items():
        default = next((d for d in definitions if d.default), definitions[0])
        ordered = [default, *(d for d in definitions if d is not default)]
        found.append(NodeVariants(node=node, default=default.variant, variants=[
            VariantView(definition=d, anchor=variant_anchor(node, d.variant), used=(node, d.variant) in ran,
                        text=definition_text(d), diff=[] if d is default else _diff(default, d))
            for d in ordered
        ]))
    return found
