"""Column mappings: which dataset column (or standard-run value) feeds each flow input.

The grammar is promptflow's `--column-mapping`: a whole-string reference `${data.<column>}`,
`${run.outputs.<output>}` or `${run.inputs.<input>}`, or a literal value passed through unchanged."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

ReferenceKind = Literal["data", "run.outputs", "run.inputs"]
_KINDS: dict[str, ReferenceKind] = {kind: kind for kind in get_args(ReferenceKind)}  # the regex's groups, typed

_REFERENCE = re.compile(r"^\$\{(data|run\.outputs|run\.inputs)\.([^{}]+)\}$")


_WHAT: dict[ReferenceKind, str] = {"data": "column", "run.outputs": "run output", "run.inputs": "run input"}


class MappingError(ValueError):
    """A mapping that cannot be parsed, or a line that lacks a column the mapping needs."""


@dataclass(frozen=True)
class Reference:
    kind: ReferenceKind
    name: str

    def __str__(self) -> str:
        return f"${{{self.kind}.{self.name}}}"


def parse_reference(value: Any) -> Reference | None:
    """The reference a mapping value makes, or None for a literal.

    A string holding `${` that is not one whole reference is an error rather than a literal: promptflow does not
    interpolate inside strings, so 'Q: ${data.q}' would silently reach the flow as that exact text."""
    if not isinstance(value, str) or "${" not in value:
        return None
    match = _REFERENCE.match(value.strip())
    if match is None:
        raise MappingError(
            f"{value!r} is not a reference; use the whole value '${{data.<column>}}', "
            "'${run.outputs.<output>}' or '${run.inputs.<input>}' (no text around it)"
        )
    kind, name = match.groups()
    return Reference(kind=_KINDS[kind], name=name.strip())


def resolve_inputs(
    mapping: Mapping[str, Any],
    data: Mapping[str, Any],
    run_outputs: Mapping[str, Any] | None = None,
    run_inputs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The flow inputs for one line: each mapped input gets its column, run value or literal."""
    sources: dict[ReferenceKind, Mapping[str, Any] | None] = {
        "data": data,
        "run.outputs": run_outputs,
        "run.inputs": run_inputs,
    }
    inputs: dict[str, Any] = {}
    for flow_input, value in mapping.items():
        ref = parse_reference(value)
        if ref is None:
            inputs[flow_input] = value
            continue
        source = sources[ref.kind]
        if source is None:
            raise MappingError(
                f"input {flow_input!r}: {ref} needs a standard run's {ref.kind.split('.')[1]}, but none was given; "
                "only evaluator datasets can refer to a run"
            )
        if ref.name not in source:
            what = _WHAT[ref.kind]
            raise MappingError(
                f"input {flow_input!r}: {what} {ref.name!r} is missing ({ref}); available: {_names(source)}"
            )
        inputs[flow_input] = source[ref.name]
    return inputs


def default_mapping(flow_inputs: Iterable[str], columns: Iterable[str]) -> dict[str, str]:
    """For datasets without mappings: each flow input reads the same-named column.

    Inputs without such a column are left out, so the flow input's own default applies (promptflow reports an
    input that has neither)."""
    available = set(columns)
    return {name: f"${{data.{name}}}" for name in flow_inputs if name in available}


def _names(values: Iterable[str]) -> str:
    names = sorted(values)
    return ", ".join(names) if names else "(none)"
