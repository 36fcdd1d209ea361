"""JSON Schema of the whole catalogue, for pipeline authors (`genaiops schema`)."""

from __future__ import annotations

import json
from typing import Any

from shared.events.catalogue import ANY_EVENT_ADAPTER


def catalogue_schema() -> dict[str, Any]:
    schema = ANY_EVENT_ADAPTER.json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "GenAIOps Functions event"
    schema["description"] = (
        "Every message on the genaiops-events queue. `type` selects the payload; `id` is the idempotency key."
    )
    return schema


def catalogue_schema_json() -> str:
    return json.dumps(catalogue_schema(), indent=2, sort_keys=True) + "\n"
