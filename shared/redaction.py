"""Keep secrets out of logs, events, dead letters and reports."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
_SECRET_KEY = re.compile(r"(key|secret|password|passwd|token|credential|connection[_-]?string|sas|sig)$", re.I)
# Inline secrets inside free text: connection-string parts and SAS signatures.
_INLINE = re.compile(r"(?i)(AccountKey|SharedAccessKey|SharedAccessSignature|sig|api[_-]?key|password)=([^;&\s\"']+)")


def redact_text(text: str) -> str:
    return _INLINE.sub(lambda match: f"{match.group(1)}={REDACTED}", text)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secret-looking fields and inline credentials masked."""
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and _SECRET_KEY.search(key) and item else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
