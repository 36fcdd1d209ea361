"""The ports services depend on. Adapters live in shared/adapters; tests use the same adapters against
Azurite and the local broker, so there are no in-memory twins to drift from the real behaviour."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.events import Event


class BlobNotFound(LookupError):
    pass


class PreconditionFailed(RuntimeError):
    """A conditional write lost a race (blob already exists, or its ETag changed)."""


@dataclass(frozen=True)
class BlobInfo:
    container: str
    name: str
    size: int
    etag: str
    last_modified: datetime


class BlobStore(Protocol):
    def read(self, container: str, name: str) -> tuple[bytes, str]:
        """Content and ETag; raises BlobNotFound."""
        ...

    def stream(self, container: str, name: str, chunk_size: int = 4 * 1024 * 1024, *,
               etag: str | None = None) -> Iterator[bytes]:
        """Content in chunks, so memory stays constant in the blob's size. With `etag`, every chunk comes from
        that version: PreconditionFailed once the blob was replaced (never a mix of two versions)."""
        ...

    def write(self, container: str, name: str, data: bytes, *, content_type: str = "application/json",
              if_match: str | None = None, if_absent: bool = False) -> str:
        """Write and return the new ETag. `if_absent`/`if_match` make it conditional (PreconditionFailed)."""
        ...

    def delete(self, container: str, name: str, *, if_match: str | None = None) -> None: ...

    def info(self, container: str, name: str) -> BlobInfo: ...

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]: ...


class EventPublisher(Protocol):
    def publish(self, events: Sequence[Event]) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...
