"""The Registry port: versioned datasets and flows that only get a new version when their content changed.

Semantics every adapter keeps:
- versions are "1", "2", ... per name;
- `register_*` makes a new version only when `content_hash` differs from the latest version's hash, otherwise it
  returns (latest, False); a redelivered event therefore never creates a second version;
- the hash is stored as the tag `content_hash`, so people browsing the registry (Azure ML studio) see it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from shared.registry.models import DataVersion, FlowVersion

CONTENT_HASH_TAG = "content_hash"
EMPTY_TAGS: Mapping[str, str] = MappingProxyType({})

# Azure ML asset names and one blob path segment at once: no slashes, no leading dot or dash.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class RegistryError(RuntimeError):
    pass


class InvalidName(RegistryError, ValueError):
    pass


class RegistryConflict(RegistryError):
    """Gave up after losing the race for a new version number too many times."""


def validate_name(name: str) -> str:
    if not _NAME.match(name) or name.endswith("."):
        raise InvalidName(f"{name!r} is not a registry name: 1-255 of letters, digits, '.', '_', '-', "
                          "starting with a letter or digit (no '/': use e.g. '<use_case>-<dataset>')")
    return name


def next_version(name: str, latest: str | None) -> str:
    if latest is None:
        return "1"
    if not latest.isdigit():
        raise RegistryError(f"latest version {latest!r} of {name!r} is not a number; versions here are 1, 2, ...")
    return str(int(latest) + 1)


class Registry(Protocol):
    def latest_data(self, name: str) -> DataVersion | None: ...

    def register_data(self, name: str, *, source_uri: str, content_hash: str, description: str = "",
                      tags: Mapping[str, str] = EMPTY_TAGS) -> tuple[DataVersion, bool]:
        """(version, created): a new version only when `content_hash` differs from the latest one's."""
        ...

    def latest_flow(self, name: str) -> FlowVersion | None: ...

    def flow(self, name: str, version: str) -> FlowVersion | None:
        """One flow version (what a deployment asks for by number); None when it does not exist."""
        ...

    def register_flow(self, name: str, *, flow_dir: Path, content_hash: str, properties: Mapping[str, str],
                      tags: Mapping[str, str] = EMPTY_TAGS) -> tuple[FlowVersion, bool]:
        """(version, created). `content_hash` is `directory_hash(flow_dir)`; the adapter stores exactly the files
        that hash covers (ignored files are left out) and refuses a hash that does not match them."""
        ...
