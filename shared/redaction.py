"""Keep secrets out of logs, events, dead letters, reports and blobs.

Two nets, applied together by `redact_text`:
- by value: every secret the process knows (connection secrets as they are resolved, secret-named app settings,
  the keys inside connection strings) is replaced wherever it appears, whatever surrounds it — an LLM answering
  401 with "Incorrect API key provided: <key>" included;
- by shape: credentials the process never saw (`Bearer …`, `api-key: …` headers, `sk-…` keys, JWTs, SAS
  signatures, `AccountKey=…` and other `name=value` parts of connection strings).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

REDACTED = "***"
MIN_SECRET_LENGTH = 6  # shorter values ("true", "1234") would mask ordinary words everywhere
_SECRET_KEY = re.compile(r"(key|secret|password|passwd|token|credential|connection[_-]?string|sas|sig)$", re.I)
# App settings holding a secret by their name (AOAI_API_KEY, SYSTEM_ACCESSTOKEN, ..._CONNECTION_STRING); a webhook
# URL carries its token in the path.
_SECRET_SETTING = re.compile(
    r"(key|secret|password|passwd|pwd|token|credential|connection[_-]?string|webhook[_-]?url)s?$", re.I)
# The shell's working directories end in "pwd" like a password setting (DB_PWD); masking them would mask every path
# under the folder the stack was started from (the local endpoints' telemetry paths among them).
_SHELL_DIRECTORIES = frozenset({"PWD", "OLDPWD"})
_SECRET_PART = r"AccountKey|SharedAccessKey|SharedAccessSignature|sig|api[_-]?key|password|pwd|client[_-]?secret"
# `name=value` inside free text: connection-string parts, SAS signatures, query strings.
_INLINE = re.compile(rf"(?i)\b({_SECRET_PART}|access[_-]?token|refresh[_-]?token)=([^;&\s\"']+)")
# `name: value` as in HTTP headers and JSON / Python dict reprs: `api-key: x`, `"api_key": "x"`, `'password': 'x'`.
_HEADER = re.compile(
    r"(?i)([\"']?)\b(api[-_]?key|x-api-key|ocp-apim-subscription-key|client[-_]?secret|password|access[-_]?token)"
    r"\1(\s*:\s*)([\"']?)([^\"'\s,;}]+)"
)
_BEARER = re.compile(r"(?i)\b(Bearer)\s+[A-Za-z0-9._~+/=-]{6,}")
_OPENAI_KEY = re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{16,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_CONNECTION_PART = re.compile(rf"(?i)(?:^|;)\s*(?:{_SECRET_PART})=([^;]+)")
_AUTH_HEADER = re.compile(r"(?i)^\s*(?:Bearer|Basic)\s+(\S+)\s*$")


class SecretRegistry:
    """The secret values to mask wherever they appear.

    One per process, shared by every thread, and it only grows. That is safe for concurrent experiments: a value
    one experiment adds can only mask more text in another, never less, and nothing is ever removed, so no
    experiment can unmask a secret another one is still using. Readers take no lock: the compiled patterns are
    replaced as one tuple, so a reader sees either the old set or the new one, never half of each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._patterns: tuple[re.Pattern[str], re.Pattern[bytes], tuple[bytes, ...]] | None = None

    def add(self, values: Iterable[str]) -> None:
        fresh = {variant for value in values if len(value) >= MIN_SECRET_LENGTH for variant in _spellings(value)}
        with self._lock:
            if fresh <= self._values:
                return
            known = self._values | fresh
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(known, key=len, reverse=True)
            text = re.compile("|".join(map(re.escape, ordered)))
            encoded = tuple(value.encode() for value in ordered)
            raw = re.compile(b"|".join(map(re.escape, encoded)))
            self._values, self._patterns = known, (text, raw, encoded)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def mask(self, text: str) -> str:
        patterns = self._patterns
        return patterns[0].sub(REDACTED, text) if patterns else text

    def mask_bytes(self, data: bytes) -> bytes:
        patterns = self._patterns
        # `in` on bytes is a fast substring search; the regex runs only on the rare blob that holds a secret.
        if not patterns or not any(value in data for value in patterns[2]):
            return data
        return patterns[1].sub(REDACTED.encode(), data)


def _spellings(value: str) -> set[str]:
    """The value as written, URL-encoded (paths, query strings, forms) and JSON-escaped (a dumped document)."""
    return {value, quote(value), quote(value, safe=""), quote_plus(value), json.dumps(value, ensure_ascii=False)[1:-1]}


KNOWN_SECRETS = SecretRegistry()


def register_secret(value: str | SecretStr | None) -> None:
    """Mask this value from now on; a connection string also registers the keys inside it, an Authorization
    header value the token after its scheme."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value:
        return
    KNOWN_SECRETS.add([value, *(part.strip() for part in _CONNECTION_PART.findall(value)),
                       *_AUTH_HEADER.findall(value)])


def register_secrets(values: Iterable[str | SecretStr | None]) -> None:
    for value in values:
        register_secret(value)


def register_environment(app_settings: Mapping[str, str]) -> None:
    """Register every app setting (Settings.app_settings) that holds a secret: by its name, or a connection string
    with a key inside."""
    for name, value in app_settings.items():
        if name.upper() in _SHELL_DIRECTORIES:
            continue
        if _SECRET_SETTING.search(name) or _CONNECTION_PART.search(value):
            register_secret(value)


def _mask_header(match: re.Match[str]) -> str:
    quote_, name, separator, value_quote = match.group(1), match.group(2), match.group(3), match.group(4)
    return f"{quote_}{name}{quote_}{separator}{value_quote}{REDACTED}"


# (pattern, replacement, words one of which the lower-cased text must hold): the word test is a fast `in`, and
# spares most log lines the slower case-insensitive scans.
_SHAPES: tuple[tuple[re.Pattern[str], Any, tuple[str, ...]], ...] = (
    (_INLINE, lambda match: f"{match.group(1)}={REDACTED}", ("key=", "signature=", "sig=", "password=", "pwd=",
                                                            "secret=", "token=")),
    (_HEADER, _mask_header, ("key", "secret", "password", "token")),
    (_BEARER, lambda match: f"{match.group(1)} {REDACTED}", ("bearer",)),
    (_OPENAI_KEY, REDACTED, ("sk-",)),
    (_JWT, REDACTED, ("eyj",)),
)


def redact_text(text: str) -> str:
    """The text with every known secret value and every credential-shaped substring masked."""
    text = KNOWN_SECRETS.mask(text)
    lowered = text.lower()
    for pattern, replacement, words in _SHAPES:
        if any(word in lowered for word in words):
            text = pattern.sub(replacement, text)
    return text


def redact_bytes(data: bytes) -> bytes:
    """Known secret values masked in stored bytes. By value only: shapes could rewrite a user's dataset."""
    return KNOWN_SECRETS.mask_bytes(data)


def redact(value: Any, *, by_name: bool = True) -> Any:
    """A copy of a JSON-like value with inline credentials masked in every string and, with `by_name`, every
    secret-named field's value masked whole (off for documents whose field names are not ours to judge)."""
    if isinstance(value, dict):
        return {
            key: REDACTED if by_name and isinstance(key, str) and _SECRET_KEY.search(key) and item
            else redact(item, by_name=by_name)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item, by_name=by_name) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
