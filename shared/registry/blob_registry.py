"""The registry kept in blob storage (Azurite locally), with the same semantics as the Azure ML one.

    registry/data/{name}/versions/{version}.json     one immutable record per version
    registry/data/{name}/latest.json                 pointer: a copy of the latest record
    registry/flows/{name}/versions/{version}.json
    registry/flows/{name}/latest.json
    registry/flows/{name}/{version}/files/<path>     the flow's files, exactly those its hash covers

Concurrency without locks, on conditional writes only:
- a version is claimed by creating its record if absent — one writer wins each number;
- the pointer moves from version k to k+1 only (an ETag-conditional write from the k it read), so it never skips;
- whoever loses the claim reads the winner's record: same hash → that is the answer (not created); other hash →
  it helps move the pointer forward (the winner may have died before doing so) and tries the next number.
So concurrent registrations of one content create one version, and of different contents create 1..N, no gaps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

from shared.blob_layout import REGISTRY, registry_flow_files_prefix, registry_pointer_name, registry_version_name
from shared.ports import BlobNotFound, BlobStore, Clock, PreconditionFailed
from shared.registry.hashing import directory_hash, list_files
from shared.registry.models import DataVersion, FlowVersion
from shared.registry.port import (
    CONTENT_HASH_TAG,
    EMPTY_TAGS,
    RegistryConflict,
    RegistryError,
    next_version,
    validate_name,
)

MAX_ATTEMPTS = 100  # each lost race means another writer made progress; this only stops a runaway loop


class _FlowRecord(FlowVersion):
    files: dict[str, int]  # relative path -> size: lets any caller check the copy is complete


R = TypeVar("R", DataVersion, _FlowRecord)


class _VersionLog(Generic[R]):
    """Numbered, immutable records per name plus a latest pointer, under registry/{kind}/{name}/."""

    def __init__(self, blobs: BlobStore, kind: str, record: type[R]) -> None:
        self._blobs = blobs
        self._kind = kind
        self._record = record

    def latest(self, name: str) -> R | None:
        current = self._pointer(name)
        return current[0] if current else None

    def register(self, name: str, content_hash: str, make: Callable[[str, str | None], R],
                 complete: Callable[[R], None]) -> tuple[R, bool]:
        """`make(version, previous)` builds the new record; `complete(record)` makes sure what the record describes
        exists (the flow's files) before the pointer reaches it, and is idempotent for the same content."""
        for _ in range(MAX_ATTEMPTS):
            current = self._pointer(name)
            latest, etag = current if current else (None, None)
            if latest is not None and latest.content_hash == content_hash:
                complete(latest)
                return latest, False
            candidate = make(next_version(name, latest.version if latest else None), latest.version if latest else None)
            try:
                self._blobs.write(REGISTRY, self._version_name(name, candidate.version),
                                  candidate.model_dump_json(indent=2).encode(), if_absent=True)
            except PreconditionFailed:
                winner = self._read_version(name, candidate.version)
                if winner.content_hash == content_hash:
                    complete(winner)
                    self._advance(name, winner, etag)
                    return winner, False
                self._advance(name, winner, etag)
                continue
            complete(candidate)
            self._advance(name, candidate, etag)
            return candidate, True
        raise RegistryConflict(f"{self._kind}/{name}: no version after {MAX_ATTEMPTS} attempts")

    def _pointer(self, name: str) -> tuple[R, str] | None:
        try:
            data, etag = self._blobs.read(REGISTRY, registry_pointer_name(self._kind, name))
        except BlobNotFound:
            return None
        return self._record.model_validate(json.loads(data)), etag

    def _read_version(self, name: str, version: str) -> R:
        try:
            data, _ = self._blobs.read(REGISTRY, self._version_name(name, version))
        except BlobNotFound:  # records are never deleted by this code: someone removed it by hand
            raise RegistryError(f"{self._kind}/{name} version {version} vanished after it was claimed") from None
        return self._record.model_validate(json.loads(data))

    def _advance(self, name: str, record: R, seen_etag: str | None) -> None:
        """Move the pointer from the version read (ETag `seen_etag`, None = no pointer yet) to `record`."""
        body = record.model_dump_json(indent=2).encode()
        try:
            if seen_etag is None:
                self._blobs.write(REGISTRY, registry_pointer_name(self._kind, name), body, if_absent=True)
            else:
                self._blobs.write(REGISTRY, registry_pointer_name(self._kind, name), body, if_match=seen_etag)
        except PreconditionFailed:
            pass  # someone else moved it; it moves one version at a time, so it is at `record` or beyond

    def _version_name(self, name: str, version: str) -> str:
        return registry_version_name(self._kind, name, version)


class BlobRegistry:
    def __init__(self, blobs: BlobStore, clock: Clock) -> None:
        self._blobs = blobs
        self._clock = clock
        self._data = _VersionLog(blobs, "data", DataVersion)
        self._flows = _VersionLog(blobs, "flows", _FlowRecord)

    def latest_data(self, name: str) -> DataVersion | None:
        return self._data.latest(validate_name(name))

    def register_data(self, name: str, *, source_uri: str, content_hash: str, description: str = "",
                      tags: Mapping[str, str] = EMPTY_TAGS) -> tuple[DataVersion, bool]:
        validate_name(name)

        def make(version: str, previous: str | None) -> DataVersion:
            return DataVersion(
                name=name, version=version, content_hash=content_hash, source_uri=source_uri,
                description=description, tags={**tags, CONTENT_HASH_TAG: content_hash},
                created_at=self._clock.now(), previous_version=previous,
            )

        return self._data.register(name, content_hash, make, lambda _record: None)

    def latest_flow(self, name: str) -> FlowVersion | None:
        record = self._flows.latest(validate_name(name))
        return _public(record) if record else None

    def flow(self, name: str, version: str) -> FlowVersion | None:
        try:
            return _public(self._flows._read_version(validate_name(name), version))
        except RegistryError:
            return None

    def register_flow(self, name: str, *, flow_dir: Path, content_hash: str, properties: Mapping[str, str],
                      tags: Mapping[str, str] = EMPTY_TAGS) -> tuple[FlowVersion, bool]:
        validate_name(name)
        files = list_files(flow_dir)
        if not files:
            raise ValueError(f"{flow_dir} has no files to register")
        actual = directory_hash(flow_dir)
        if actual != content_hash:
            raise ValueError(f"content_hash {content_hash} does not match {flow_dir} ({actual})")
        manifest = {relative: path.stat().st_size for relative, path in files}

        def make(version: str, previous: str | None) -> _FlowRecord:
            return _FlowRecord(
                name=name, version=version, content_hash=content_hash, properties=dict(properties),
                tags={**tags, CONTENT_HASH_TAG: content_hash}, created_at=self._clock.now(),
                artifact_uri=f"blob://{REGISTRY}/{self._files_prefix(name, version)}", previous_version=previous,
                files=manifest,
            )

        def complete(record: _FlowRecord) -> None:
            # Same hash means same paths and bytes, so any caller holding this content can finish the copy.
            self._copy_missing(name, record.version, files)

        record, created = self._flows.register(name, content_hash, make, complete)
        return _public(record), created

    def _copy_missing(self, name: str, version: str, files: list[tuple[str, Path]]) -> None:
        prefix = self._files_prefix(name, version)
        present = {info.name.removeprefix(prefix): info.size for info in self._blobs.list(REGISTRY, prefix)}
        for relative, path in files:
            if present.get(relative) != path.stat().st_size:
                self._blobs.write(REGISTRY, prefix + relative, path.read_bytes(),
                                  content_type="application/octet-stream")

    @staticmethod
    def _files_prefix(name: str, version: str) -> str:
        return registry_flow_files_prefix(name, version)


def _public(record: _FlowRecord) -> FlowVersion:
    return FlowVersion.model_validate(record.model_dump(exclude={"files"}))
