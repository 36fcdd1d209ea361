"""The building blocks of experiment.yaml's checks: the error type, the small field validators and the strict block
base every YAML block model derives from."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from shared.experiments.mappings import MappingError, ReferenceKind, parse_reference

SourceKind = Literal["local", "blob", "azureml"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HYPERPARAMETER = re.compile(r"^(?:[A-Za-z0-9_-]+\.)?[A-Za-z_][A-Za-z0-9_]*$")
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$")

class ExperimentConfigError(ValueError):
    """An experiment.yaml that cannot be used; `problems` holds one line per problem."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]

class MissingSecretError(ExperimentConfigError):
    """A connection placeholder with no value in any secret source."""

def type_name(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", type(None): "nothing"}.get(type(value), type(value).__name__)

def check_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a name (got a {type_name(value)})")
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid name; use letters, digits, '_', '-' and '.', starting with a "
                         "letter or digit")
    return value

def source_kind(source: str) -> SourceKind:
    if source.startswith("blob://"):
        return "blob"
    if source.startswith("azureml:"):
        return "azureml"
    return "local"

def parse_blob_source(source: str) -> tuple[str, str] | None:
    """(container, blob name) of a `blob://<container>/<path>` source, else None."""
    if source_kind(source) != "blob":
        return None
    container, _, name = source.removeprefix("blob://").partition("/")
    return container, name

def check_source(value: Any) -> str:
    usage = "use a path relative to the use case folder, blob://<container>/<path> or azureml:<name>:<version>"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string; {usage} (got a {type_name(value)})")
    kind = source_kind(value)
    if kind == "blob":
        container, name = parse_blob_source(value) or ("", "")
        if not _CONTAINER.match(container) or not name or name.startswith("/"):
            raise ValueError(f"{value!r} is not blob://<container>/<path> (container: 3-63 of a-z, 0-9, '-')")
    elif kind == "azureml":
        parts = value.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{value!r} is not azureml:<name>:<version>")
    elif "://" in value:
        raise ValueError(f"{value!r} has an unsupported scheme; {usage}")
    elif PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute():
        raise ValueError(f"{value!r} is absolute; {usage} so the use case works on every machine")
    return value

def check_mappings(value: Any, allowed: tuple[ReferenceKind, ...], shape: str) -> dict[str, Any]:
    if value is None:
        return {}  # `mappings:` left empty: each flow input reads the same-named column
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of flow input -> {shape} (got a {type_name(value)})")
    problems: list[str] = []
    for flow_input, reference in value.items():
        if not isinstance(flow_input, str):
            problems.append(f"key {flow_input!r} must be a flow input name")
            continue
        if not isinstance(reference, str | int | float | bool):
            problems.append(f"{flow_input}: must be {shape} or a literal value (got a {type_name(reference)})")
            continue
        try:
            ref = parse_reference(reference)
        except MappingError as error:
            problems.append(f"{flow_input}: {error}")
            continue
        if ref is not None and ref.kind not in allowed:
            problems.append(
                f"{flow_input}: {ref} refers to a run, but a standard dataset feeds the flow before any run exists; "
                "use '${data.<column>}' here and put run references in an evaluator dataset"
            )
    if problems:
        raise ValueError("; ".join(problems))
    return value

class StrictBlock(BaseModel):
    """A YAML block: unknown keys fail with the list of allowed ones (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")
    _key_hints: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = [field.alias or name for name, field in cls.model_fields.items()]
            unknown = [str(key) for key in data if key not in allowed]
            if unknown:
                hints = "".join(f" ({cls._key_hints[key]})" for key in unknown if key in cls._key_hints)
                listed = ", ".join(map(repr, unknown))
                raise ValueError(f"unknown key(s) {listed}{hints}; allowed: {', '.join(allowed)}")
        return data

def check_hyperparameters(value: Any) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of input or node.input -> list of values (got a {type_name(value)})")
    grids: dict[str, list[Any]] = {}
    problems: list[str] = []
    for name, values in value.items():
        if not isinstance(name, str) or not _HYPERPARAMETER.match(name):
            problems.append(f"{name!r} must be an input name (temperature) or node.input (answer.max_tokens)")
            continue
        grid = values if isinstance(values, list) else [values]  # a single value pins the input
        if not grid:
            problems.append(f"{name}: needs at least one value, e.g. {name}: [0.0, 0.7]")
            continue
        if any(isinstance(item, dict | list) for item in grid):
            problems.append(f"{name}: values must be single values, e.g. {name}: [0.0, 0.7]")
            continue
        seen = [json.dumps(item, sort_keys=True) for item in grid]
        if len(set(seen)) != len(seen):
            problems.append(f"{name}: has duplicate values; list each value once")
            continue
        grids[name] = grid
    if problems:
        raise ValueError("; ".join(problems))
    return grids

