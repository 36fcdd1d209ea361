"""The one way HTML is drawn here: a Jinja template beside the module that fills it, every value autoescaped
(model outputs, error messages and names are data, never markup), a missing variable an error."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment


@cache
def _environment(directory: Path) -> Environment:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined  # lazy: ~85 ms, only when a page is drawn

    # autoescape=True for every template, whatever its extension.
    return Environment(loader=FileSystemLoader(directory), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render_template(directory: Path, name: str, **context: Any) -> str:
    """`name` from `directory` rendered with `context`."""
    return _environment(directory).get_template(name).render(**context)
