"""In-memory stand-ins for the app's own ports (shared/ports.py), shared by the fast tests: a BlobStore with Azure
Storage's conditional-write semantics, a publisher and a notifier that record what they were given, a clock the
test moves."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from shared.events import Event
from shared.notifications import Notification
from shared.ports import BlobInfo, BlobNotFound, PreconditionFailed


class MemoryBlobStore:
    """BlobStore with the conditional-write semantics of Azure Storage (if_absent / if_match on ETags)."""

    def __init__(self) -> None:
        self._blobs: dict[tuple[str, str], tuple[bytes, str, datetime]] = {}
        self._content_types: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._version = 0

    def read(self, container: str, name: str) -> tuple[bytes, str]:
        with self._lock:
            if (container, name) not in self._blobs:
                raise BlobNotFound(f"{container}/{name}")
            data, etag, _ = self._blobs[(container, name)]
            return data, etag

    def stream(self, container: str, name: str, chunk_size: int = 4 * 1024 * 1024, *,
               etag: str | None = None) -> Iterator[bytes]:
        data, current = self.read(container, name)
        if etag is not None and not _same(etag, current):
            raise PreconditionFailed("etag changed")
        for start in range(0, len(data), chunk_size):
            yield data[start:start + chunk_size]

    def write(self, container: str, name: str, data: bytes, *, content_type: str = "application/json",
              if_match: str | None = None, if_absent: bool = False) -> str:
        with self._lock:
            existing = self._blobs.get((container, name))
            if if_absent and existing is not None:
                raise PreconditionFailed("exists")
            if if_match is not None and (existing is None or not _same(existing[1], if_match)):
                raise PreconditionFailed("etag changed")
            self._version += 1
            etag = f'"{self._version}"'
            self._blobs[(container, name)] = (data, etag, datetime.now(UTC))
            self._content_types[(container, name)] = content_type
            return etag

    def delete(self, container: str, name: str, *, if_match: str | None = None) -> None:
        with self._lock:
            existing = self._blobs.get((container, name))
            if if_match is not None and existing is not None and not _same(existing[1], if_match):
                raise PreconditionFailed("etag changed")
            self._blobs.pop((container, name), None)

    def info(self, container: str, name: str) -> BlobInfo:
        with self._lock:
            if (container, name) not in self._blobs:
                raise BlobNotFound(f"{container}/{name}")
            data, etag, modified = self._blobs[(container, name)]
            return BlobInfo(container, name, len(data), etag, modified)

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]:
        with self._lock:
            return [BlobInfo(c, n, len(d), e, t) for (c, n), (d, e, t) in sorted(self._blobs.items())
                    if c == container and n.startswith(prefix)]

    def names(self, container: str) -> list[str]:
        return [info.name for info in self.list(container)]

    def containers(self) -> set[str]:
        with self._lock:
            return {container for container, _ in self._blobs}

    def content_type(self, container: str, name: str) -> str:
        return self._content_types[(container, name)]

    def text(self, container: str, name: str) -> str:
        return self.read(container, name)[0].decode("utf-8")


def _same(etag: str, other: str) -> bool:
    """ETags compare without their quotes, as Azure Storage's conditions do (events carry them unquoted)."""
    return etag.strip('"') == other.strip('"')


class RecordingPublisher:
    """An EventPublisher keeping what it was given, in order; `fail_times` publishes fail first (bus unreachable)."""

    def __init__(self, fail_times: int = 0) -> None:
        self.events: list[Event] = []
        self._fail_times = fail_times
        self._lock = threading.Lock()

    def publish(self, events: Sequence[Event]) -> None:
        with self._lock:
            if self._fail_times:
                self._fail_times -= 1
                raise ConnectionError("bus unreachable")
            self.events.extend(events)


class ManualClock:
    """A Clock port whose time the test moves (lease expiry, approval expiry)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class RecordingNotifier:
    """A Notifier keeping what it was asked to send; with `fail` it raises after recording (a notifier broken in a
    way its own delivery handling did not catch)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Notification] = []
        self.fail = fail

    def notify(self, notification: Notification) -> None:
        self.sent.append(notification)
        if self.fail:
            raise RuntimeError("the notifier is broken")

    @property
    def calls(self) -> list[tuple[str, str]]:
        """(subject, link) of each: for an approval, its id and URL."""
        return [(notification.subject, notification.link) for notification in self.sent]
