"""Optional persistence: an append-only JSON-lines journal of queue changes, compacted on start.

Each line is one change (``add``, ``remove``, ``count``) or a queue's next sequence number
(``queue``). On start the journal is replayed into the namespace and rewritten as a snapshot of
what is left, and the same happens while running once it has grown well past the live contents,
so the file stays about as small as the queues. Locks are not persisted: after a
restart every message is available again. A scheduled message is journaled with its due time as
``t`` and so stays scheduled until then. A torn last line (crash mid-write) is skipped.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from .entities import DEAD_LETTER_SUFFIX, Namespace, StoredMessage

_LOG = logging.getLogger(__name__)
JOURNAL_FILE = "servicebus-journal.jsonl"
COMPACT_AFTER_RECORDS = 10_000  # appended lines before a running broker considers compacting

_Key = tuple[str, int]


class FileJournal:
    """Journal of queue changes kept in ``<directory>/servicebus-journal.jsonl``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / JOURNAL_FILE
        self._file: IO[str] | None = None
        self._namespace: Namespace | None = None
        self._appended = 0

    # -- the Journal protocol used by the queues ----------------------------------------------
    def added(self, queue: str, message: StoredMessage) -> None:
        self._write(_add_record(queue, message))

    def removed(self, queue: str, sequence_number: int) -> None:
        self._write({"op": "remove", "q": queue, "seq": sequence_number})

    def counted(self, queue: str, sequence_number: int, delivery_count: int) -> None:
        self._write({"op": "count", "q": queue, "seq": sequence_number, "n": delivery_count})

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise RuntimeError("journal used before load()")
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        self._appended += 1
        if self._appended >= COMPACT_AFTER_RECORDS:
            self._compact_if_bloated()

    def _compact_if_bloated(self) -> None:
        # Records are written after the state change they describe, so a snapshot taken now is exact.
        assert self._namespace is not None
        assert self._file is not None
        live = sum(queue.message_count for queue in self._namespace.queues())
        if self._appended < 4 * live:
            return
        self._file.close()
        self._compact(self._namespace)
        self._file = self.path.open("a", encoding="utf-8")
        self._appended = 0

    # -- start and stop ----------------------------------------------------------------------
    def load(self, namespace: Namespace) -> int:
        """Replay the journal into ``namespace``, compact it, and open it for appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        messages, next_numbers = self._replay()
        for name, number in next_numbers.items():
            namespace.queue(name).next_sequence_number = number
        for (name, _), message in sorted(messages.items(), key=lambda item: item[1].sequence_number):
            namespace.queue(name).restore(message)
        self._compact(namespace)
        self._namespace = namespace
        self._file = self.path.open("a", encoding="utf-8")
        _LOG.info("journal %s: restored %d message(s)", self.path, len(messages))
        return len(messages)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _replay(self) -> tuple[dict[_Key, StoredMessage], dict[str, int]]:
        messages: dict[_Key, StoredMessage] = {}
        next_numbers: dict[str, int] = {}
        if not self.path.exists():
            return messages, next_numbers
        with self.path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                try:
                    _apply(json.loads(line), messages, next_numbers)
                except (ValueError, KeyError, TypeError):
                    _LOG.warning("journal %s: skipping unreadable line %d", self.path, number)
        return messages, next_numbers

    def _compact(self, namespace: Namespace) -> None:
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as out:
            for queue in namespace.queues():
                if not queue.name.endswith(DEAD_LETTER_SUFFIX):
                    out.write(
                        json.dumps({"op": "queue", "q": queue.name, "next": queue.next_sequence_number})
                    )
                    out.write("\n")
                for message in queue.messages():
                    out.write(json.dumps(_add_record(queue.name, message), separators=(",", ":")) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)


def _add_record(queue: str, message: StoredMessage) -> dict[str, Any]:
    return {
        "op": "add",
        "q": queue,
        "seq": message.sequence_number,
        "t": message.enqueued_time,
        "n": message.delivery_count,
        "payload": base64.b64encode(message.payload).decode("ascii"),
    }


def _apply(record: dict[str, Any], messages: dict[_Key, StoredMessage], next_numbers: dict[str, int]) -> None:
    operation, key = record["op"], (record["q"], int(record.get("seq", 0)))
    if operation == "add":
        payload = base64.b64decode(record["payload"])
        messages[key] = StoredMessage(key[1], float(record["t"]), payload, int(record["n"]))
        next_numbers[key[0]] = max(next_numbers.get(key[0], 1), key[1] + 1)  # numbers never go back
    elif operation == "remove":
        messages.pop(key, None)
    elif operation == "count" and key in messages:
        messages[key].delivery_count = int(record["n"])
    elif operation == "queue":
        next_numbers[record["q"]] = max(next_numbers.get(record["q"], 1), int(record["next"]))
