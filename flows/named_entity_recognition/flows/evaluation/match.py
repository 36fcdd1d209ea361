"""Exact match: the predicted set equals the expected set. Partial match: the share of expected entities found
(case-insensitive), so a model that finds one of two cities scores 0.5."""

from promptflow.core import tool


def _normalise(values: list[str]) -> set[str]:
    return {value.strip().lower() for value in values if value and value.strip()}


@tool
def match(ground_truth: str, entities: list[str]) -> dict:
    expected = _normalise(ground_truth.split(","))
    predicted = _normalise(entities or [])
    exact = int(expected == predicted)
    partial = len(expected & predicted) / len(expected) if expected else float(not predicted)
    return {"exact": exact, "partial": round(partial, 4)}
