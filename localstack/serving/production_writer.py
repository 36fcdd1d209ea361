"""The local endpoints' production log writer: every request the A/B router served, one JSON line each, appended
to blob storage (Azurite locally) where shared/monitoring/production_log.py reads it back.

Lines are queued and appended in batches (one append block per flush), so scoring never waits on storage. Each
router process writes its own append blobs, one per hour (`{HH}-{writer}-{part}.jsonl`), and rolls to the next part
well before Azure's 50,000-block limit: no blob grows without bound, and the storage lifecycle rule
(infra/storage.tf) deletes old hours.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import BlobServiceClient

from shared.blob_layout import PRODUCTION, production_log_name
from shared.monitoring.production_log import ProductionLine

log = logging.getLogger("localstack.production_log")

MAX_BLOCKS_PER_BLOB = 10_000  # Azure's limit is 50,000 appends per blob
MAX_BLOCK_BYTES = 4 * 1024 * 1024  # Azure's limit per append
MAX_PENDING_LINES = 50_000  # while storage is unreachable; beyond this the oldest lines are dropped
FLUSH_SECONDS = 0.5


class BlobProductionWriter:
    def __init__(self, service: BlobServiceClient, *, flush_seconds: float = FLUSH_SECONDS,
                 max_blocks: int = MAX_BLOCKS_PER_BLOB, max_pending: int = MAX_PENDING_LINES) -> None:
        self._container = service.get_container_client(PRODUCTION)
        self._flush_seconds = flush_seconds
        self._max_blocks = max_blocks
        self._max_pending = max_pending
        self.dropped = 0  # lines lost because storage stayed unreachable
        self.writer = uuid.uuid4().hex[:12]
        self._pending: list[ProductionLine] = []
        self._lock = threading.Lock()
        self._blocks: dict[tuple[str, str, str], tuple[int, int]] = {}  # (use case, endpoint, hour) -> (part, blocks)
        self._created: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="production-log", daemon=True)
        with contextlib.suppress(ResourceExistsError, AzureError):  # unreachable now: the appends will say so
            self._container.create_container()

    @classmethod
    def from_connection_string(cls, connection_string: str) -> BlobProductionWriter:
        return cls(BlobServiceClient.from_connection_string(connection_string))

    def start(self) -> BlobProductionWriter:
        self._thread.start()
        return self

    def record(self, line: ProductionLine) -> None:
        with self._lock:
            self._pending.append(line)
            self._bound()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.flush()

    def flush(self) -> None:
        """Append what is queued, one block per blob; what failed is queued again, in order, for the next flush."""
        with self._lock:
            lines, self._pending = self._pending, []
        batches: dict[tuple[str, str, str], list[ProductionLine]] = {}
        for line in lines:
            batches.setdefault(_key(line), []).append(line)
        failed: set[tuple[str, str, str]] = set()
        for key, batch in batches.items():
            try:
                self._append(key, batch)
            except AzureError as failure:
                log.warning("production log: %d line(s) not written yet: %s", len(batch), type(failure).__name__)
                failed.add(key)
        if failed:
            with self._lock:
                self._pending[:0] = [line for line in lines if _key(line) in failed]
                self._bound()

    def _bound(self) -> None:
        """Memory stays bounded while storage is down: the oldest queued lines go first (caller holds the lock)."""
        excess = len(self._pending) - self._max_pending
        if excess > 0:
            del self._pending[:excess]
            self.dropped += excess
            log.warning("production log: storage unreachable, %d line(s) dropped so far", self.dropped)

    def _append(self, key: tuple[str, str, str], batch: list[ProductionLine]) -> None:
        for chunk in _chunks([line.model_dump_json().encode() + b"\n" for line in batch]):
            part, blocks = self._blocks.get(key, (0, self._max_blocks))
            if blocks >= self._max_blocks:  # a new hour, or this part is full: start the next part
                part, blocks = part + 1, 0
            name = production_log_name(key[0], key[1], batch[0].time, self.writer, part)
            blob = self._container.get_blob_client(name)
            if name not in self._created:
                blob.create_append_blob()
                self._created.add(name)
            blob.append_block(chunk)
            self._blocks[key] = (part, blocks + 1)

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self.flush()


def _key(line: ProductionLine) -> tuple[str, str, str]:
    """The blob family a line goes to: its use case, endpoint and hour."""
    return line.use_case, line.endpoint, f"{line.time:%Y%m%d%H}"


def _chunks(encoded: list[bytes]) -> list[bytes]:
    """The lines joined into blocks of at most MAX_BLOCK_BYTES (a longer single line is its own block)."""
    chunks: list[bytes] = []
    current = b""
    for line in encoded:
        if current and len(current) + len(line) > MAX_BLOCK_BYTES:
            chunks.append(current)
            current = b""
        current += line
    return [*chunks, current] if current else chunks
