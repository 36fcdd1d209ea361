"""Register-if-changed for flows: hash the folder, let the registry decide whether that is a new version. (Datasets are
hashed by the intake check, in the pass that validates them; shared/services/registration.py registers them.)"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from shared.registry.hashing import directory_hash
from shared.registry.models import FlowVersion
from shared.registry.port import EMPTY_TAGS, Registry

log = logging.getLogger("genaiops.registry")


def register_flow_if_changed(registry: Registry, *, name: str, flow_dir: Path, properties: Mapping[str, str],
                             tags: Mapping[str, str] = EMPTY_TAGS) -> tuple[FlowVersion, bool]:
    """`properties` are strings: metrics, variant, dataset versions, git commit, build id."""
    content_hash = directory_hash(flow_dir)
    version, created = registry.register_flow(name, flow_dir=flow_dir, content_hash=content_hash,
                                              properties=properties, tags=tags)
    log.info("flow %s: %s version %s (%s)", name, "registered" if created else "unchanged, kept", version.version,
             content_hash)
    return version, created
