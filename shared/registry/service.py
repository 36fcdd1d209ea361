"""Register-if-changed: hash the content, let the registry decide whether that is a new version."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from shared.registry.hashing import directory_hash, sha256_stream
from shared.registry.models import DataVersion, FlowVersion
from shared.registry.port import EMPTY_TAGS, Registry

log = logging.getLogger("genaiops.registry")


def register_dataset_if_changed(
    registry: Registry, *, name: str, source_uri: str, chunks: Iterable[bytes], description: str = "",
    tags: Mapping[str, str] = EMPTY_TAGS,
) -> tuple[DataVersion, bool]:
    """`chunks` is the dataset's content (e.g. BlobStore.stream): hashed in one pass, in constant memory."""
    content_hash = sha256_stream(chunks)
    version, created = registry.register_data(name, source_uri=source_uri, content_hash=content_hash,
                                              description=description, tags=tags)
    log.info("data %s: %s version %s (%s)", name, "registered" if created else "unchanged, kept", version.version,
             content_hash)
    return version, created


def register_flow_if_changed(registry: Registry, *, name: str, flow_dir: Path, properties: Mapping[str, str],
                             tags: Mapping[str, str] = EMPTY_TAGS) -> tuple[FlowVersion, bool]:
    """`properties` are strings: metrics, variant, dataset versions, git commit, build id."""
    content_hash = directory_hash(flow_dir)
    version, created = registry.register_flow(name, flow_dir=flow_dir, content_hash=content_hash,
                                              properties=properties, tags=tags)
    log.info("flow %s: %s version %s (%s)", name, "registered" if created else "unchanged, kept", version.version,
             content_hash)
    return version, created
