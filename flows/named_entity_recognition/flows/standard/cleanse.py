"""Turn the model's reply into a clean list of entity strings."""

import string

from promptflow.core import tool


@tool
def cleanse(text: str, strip_punctuation: bool = True) -> list[str]:
    if not text or text.strip().lower() in {"none", "n/a", ""}:
        return []
    entities = []
    for part in text.replace("\n", ",").split(","):
        entity = part.strip()
        if strip_punctuation:
            entity = entity.strip(string.punctuation + " ")
        if entity:
            entities.append(entity)
    return entities
