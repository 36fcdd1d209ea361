"""What a result records about how its lines were produced and scored, so the report can show it without the flow
folder: every node variant's definition (prompt template or code, node inputs) and each evaluator's column mapping."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shared.experiments.config import ExperimentConfig
from shared.experiments.results import EvaluatorMapping, VariantDefinition
from shared.experiments.variants import FlowVariantsError, discover_variants, flow_document

MAX_SOURCE_CHARS = 20_000  # a report shows prompts, not whole libraries


def _source_text(flow_dir: Path, path: str | None) -> str | None:
    if not path:
        return None
    file = (flow_dir / path).resolve()
    if flow_dir.resolve() not in file.parents or not file.is_file():
        return None  # outside the flow (or missing): not ours to publish
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) <= MAX_SOURCE_CHARS else text[:MAX_SOURCE_CHARS] + "\n… (cut)"


def variant_definitions(flow_dir: Path) -> list[VariantDefinition]:
    """Every variant of every node that has variants, in node then variant order (a flow without any: none)."""
    flow_dir = Path(flow_dir)
    try:
        flow = discover_variants(flow_dir)
    except FlowVariantsError:
        return []  # edited into something unreadable since the runs: the finished result records no prompts
    declared = flow_document(flow_dir).get("node_variants") or {}
    found = []
    for node, spec in flow.variants.items():
        for variant in spec.variants:
            definition: dict[str, Any] = declared[node]["variants"][variant]["node"]
            source = definition.get("source") or {}
            path = str(source.get("path")) if isinstance(source, dict) and source.get("path") else None
            inputs = definition.get("inputs") or {}
            found.append(VariantDefinition(
                node=node, variant=variant, default=variant == spec.default, type=str(definition.get("type", "")),
                source=path, text=_source_text(flow_dir, path), inputs=inputs if isinstance(inputs, dict) else {},
            ))
    return found


def evaluator_mappings(config: ExperimentConfig, datasets: Iterable[str]) -> list[EvaluatorMapping]:
    """Each evaluator's column mapping for each standard dataset it scored."""
    return [EvaluatorMapping(evaluator=evaluator.name, dataset=name, mappings=dict(dataset.mappings))
            for name in datasets for evaluator, dataset in config.evaluator_datasets_for(name)]
