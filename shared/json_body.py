"""HTTP request bodies that are one JSON object validated by a pydantic model (feedback, the candidate export), and
what is wrong with one said in a line a caller can act on (the 400's reason). Any bytes are safe: bad JSON or UTF-8,
a 5,000-digit number or [[[[... nested too deep are refused like any other bad body."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class InvalidBody(ValueError):
    """The body is not what the route takes; the message says why."""


def parse_object(body: bytes, model: type[M], what: str, *, empty_is_default: bool = False) -> M:
    """`body` as `model`; InvalidBody names `what` was expected. With `empty_is_default`, no body (or only
    whitespace) is the model's defaults."""
    if empty_is_default and not body.strip():
        body = b"{}"
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as bad:
        raise InvalidBody(f"{what} must be a JSON object: {str(bad)[:200]}") from None
    if not isinstance(document, dict):
        raise InvalidBody(f"{what} must be a JSON object")
    try:
        return model.model_validate(document)
    except ValidationError as invalid:
        raise InvalidBody(validation_problems(invalid)) from None


def validation_problems(invalid: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in invalid.errors())
