"""Queue state: stored messages, scheduled messages, peek-locks, delivery counts and the dead-letter sub-queue.

Pure Python with no AMQP knowledge beyond the raw-payload helpers in :mod:`.codec`, so the rules
(lock expiry, max delivery count, dead-lettering) can be read and reasoned about in one place.
All methods are called from the broker's reactor thread; the namespace lock only guards the
read-only inspection helpers used by tests from other threads.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol
from urllib.parse import urlsplit

from . import codec

_LOG = logging.getLogger(__name__)

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
MANAGEMENT_SUFFIX = "/$management"
MAX_DELIVERY_COUNT_REASON = "MaxDeliveryCountExceeded"
DEAD_LETTER_REASON_PROPERTY = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION_PROPERTY = "DeadLetterErrorDescription"


class Journal(Protocol):
    """What the queues report so a persistence layer can replay them (see :mod:`.journal`)."""

    def added(self, queue: str, message: StoredMessage) -> None: ...

    def removed(self, queue: str, sequence_number: int) -> None: ...

    def counted(self, queue: str, sequence_number: int, delivery_count: int) -> None: ...


@dataclass
class StoredMessage:
    """A message as the client sent it plus the state Service Bus keeps beside it."""

    sequence_number: int
    enqueued_time: float  # epoch seconds; for a scheduled message its due time (Service Bus does the same)
    payload: bytes
    delivery_count: int = 0

    def stamped(self, locked_until: float | None = None) -> bytes:
        """The payload as delivered: header delivery-count and x-opt-* annotations filled in."""
        annotations = {
            "x-opt-enqueued-time": codec.epoch_ms(self.enqueued_time),
            "x-opt-sequence-number": self.sequence_number,
        }
        if locked_until is not None:
            annotations["x-opt-locked-until"] = codec.epoch_ms(locked_until)
        return codec.stamp(self.payload, delivery_count=self.delivery_count, annotations=annotations)


@dataclass
class Lock:
    """A peek-lock held by one consumer link on one message."""

    token: uuid.UUID
    message: StoredMessage
    owner: str
    locked_until: float


class Outcome(Enum):
    """What happened to a message when a lock was resolved."""

    DONE = "done"
    REQUEUED = "requeued"
    DEAD_LETTERED = "dead-lettered"
    LOCK_LOST = "lock-lost"
    NOT_ALLOWED = "not-allowed"


@dataclass
class Queue:
    """One queue (or a queue's dead-letter sub-queue)."""

    name: str
    lock_duration: float
    max_delivery_count: int | None
    journal: Journal | None = None
    dead_letter_queue: Queue | None = None
    next_sequence_number: int = 1
    _messages: dict[int, StoredMessage] = field(default_factory=dict)
    _available: list[int] = field(default_factory=list)  # heap of sequence numbers
    _locks: dict[uuid.UUID, Lock] = field(default_factory=dict)
    # Scheduled messages live apart until due, so they count toward nothing (not active, not peeked).
    _scheduled: dict[int, StoredMessage] = field(default_factory=dict)
    _due: list[tuple[float, int]] = field(default_factory=list)  # heap of (due time, sequence number)
    clock: Callable[[], float] = time.time

    # -- counts, used by tests and logs -------------------------------------------------
    @property
    def available_count(self) -> int:
        return len(self._available)

    @property
    def locked_count(self) -> int:
        return len(self._locks)

    @property
    def message_count(self) -> int:
        """Active messages (available or locked); scheduled ones are not counted until due."""
        return len(self._messages)

    @property
    def scheduled_count(self) -> int:
        return len(self._scheduled)

    # -- sending -------------------------------------------------------------------------
    def enqueue(self, payload: bytes) -> StoredMessage:
        """Store a sent message; one carrying ``x-opt-scheduled-enqueue-time`` in the future waits until then."""
        now = self.clock()
        scheduled = codec.scheduled_enqueue_time(payload)
        message = StoredMessage(self.next_sequence_number, max(now, scheduled or now), payload)
        self.next_sequence_number += 1
        self.restore(message)
        if self.journal:  # the journal keeps the due time as the enqueued time: a restart keeps the schedule
            self.journal.added(self.name, message)
        return message

    def restore(self, message: StoredMessage) -> None:
        """Put a message in without journaling it (journal replay, dead-letter moves)."""
        self.next_sequence_number = max(self.next_sequence_number, message.sequence_number + 1)
        if message.enqueued_time > self.clock():
            self._scheduled[message.sequence_number] = message
            heapq.heappush(self._due, (message.enqueued_time, message.sequence_number))
            return
        self._messages[message.sequence_number] = message
        heapq.heappush(self._available, message.sequence_number)

    def is_scheduled(self, sequence_number: int) -> bool:
        return sequence_number in self._scheduled

    def cancel_scheduled(self, sequence_number: int) -> bool:
        """Drop a scheduled message that is not yet due; False if there is none with that number."""
        message = self._scheduled.pop(sequence_number, None)
        if message is None:
            return False
        if self.journal:
            self.journal.removed(self.name, sequence_number)
        return True  # its heap entry is skipped when it comes up

    def activate_due(self) -> int:
        """Make scheduled messages whose time has come available; return how many."""
        now, activated = self.clock(), 0
        while self._due and self._due[0][0] <= now:
            _, number = heapq.heappop(self._due)
            message = self._scheduled.pop(number, None)
            if message is not None:
                self._messages[number] = message
                heapq.heappush(self._available, number)
                activated += 1
        return activated

    # -- receiving -----------------------------------------------------------------------
    def has_available(self) -> bool:
        self.activate_due()  # a receive right at the due time sees the message without waiting for the timer
        return bool(self._available)

    def lock_next(self, owner: str) -> Lock | None:
        """Peek-lock the oldest available message for ``owner``."""
        message = self._pop_available()
        if message is None:
            return None
        lock = Lock(uuid.uuid4(), message, owner, self.clock() + self.lock_duration)
        self._locks[lock.token] = lock
        return lock

    def take_next(self) -> StoredMessage | None:
        """Remove and return the oldest available message (receive-and-delete)."""
        message = self._pop_available()
        if message is not None:
            self._forget(message)
        return message

    def _pop_available(self) -> StoredMessage | None:
        self.activate_due()
        while self._available:
            message = self._messages.get(heapq.heappop(self._available))
            if message is not None:
                return message
        return None

    def _forget(self, message: StoredMessage) -> None:
        del self._messages[message.sequence_number]
        if self.journal:
            self.journal.removed(self.name, message.sequence_number)

    # -- settling ------------------------------------------------------------------------
    def is_locked(self, token: uuid.UUID) -> bool:
        lock = self._locks.get(token)
        return lock is not None and lock.locked_until > self.clock()

    def complete(self, token: uuid.UUID) -> Outcome:
        lock = self._take_lock(token)
        if lock is None:
            return Outcome.LOCK_LOST
        self._forget(lock.message)
        return Outcome.DONE

    def release(self, token: uuid.UUID) -> Outcome:
        """Give the message back untouched (AMQP released: it was never processed)."""
        lock = self._take_lock(token)
        if lock is None:
            return Outcome.LOCK_LOST
        heapq.heappush(self._available, lock.message.sequence_number)
        return Outcome.REQUEUED

    def abandon(self, token: uuid.UUID) -> Outcome:
        """Give the message back as a failed delivery: count + 1, dead-lettered past the maximum."""
        lock = self._take_lock(token)
        if lock is None:
            return Outcome.LOCK_LOST
        return self._count_failed_delivery(lock.message)

    def dead_letter(self, token: uuid.UUID, reason: str | None, description: str | None) -> Outcome:
        if self.dead_letter_queue is None:
            return Outcome.NOT_ALLOWED  # Service Bus has no dead-letter queue for a dead-letter queue
        lock = self._take_lock(token)
        if lock is None:
            return Outcome.LOCK_LOST
        self._move_to_dead_letter(lock.message, reason, description)
        return Outcome.DEAD_LETTERED

    def renew(self, token: uuid.UUID) -> float | None:
        lock = self._locks.get(token)
        if lock is None or lock.locked_until <= self.clock():
            return None
        lock.locked_until = self.clock() + self.lock_duration
        return lock.locked_until

    def _take_lock(self, token: uuid.UUID) -> Lock | None:
        """Remove a live lock; an expired one counts as lost even if the timer has not fired yet."""
        if not self.is_locked(token):
            return None
        return self._locks.pop(token)

    def _count_failed_delivery(self, message: StoredMessage) -> Outcome:
        message.delivery_count += 1
        limit = self.max_delivery_count
        if limit is not None and message.delivery_count >= limit and self.dead_letter_queue is not None:
            description = f"Message could not be consumed after {limit} delivery attempts."
            self._move_to_dead_letter(message, MAX_DELIVERY_COUNT_REASON, description)
            return Outcome.DEAD_LETTERED
        if self.journal:
            self.journal.counted(self.name, message.sequence_number, message.delivery_count)
        heapq.heappush(self._available, message.sequence_number)
        return Outcome.REQUEUED

    def _move_to_dead_letter(
        self, message: StoredMessage, reason: str | None, description: str | None
    ) -> None:
        assert self.dead_letter_queue is not None
        properties = {
            DEAD_LETTER_REASON_PROPERTY: reason or "",
            DEAD_LETTER_DESCRIPTION_PROPERTY: description or "",
        }
        moved = StoredMessage(
            message.sequence_number,
            message.enqueued_time,
            codec.add_application_properties(message.payload, properties),
            message.delivery_count,
        )
        self._forget(message)
        self.dead_letter_queue.restore(moved)
        if self.journal:
            self.journal.added(self.dead_letter_queue.name, moved)
        _LOG.info(
            "dead-lettered message seq=%d from %s: reason=%s",
            message.sequence_number,
            self.name,
            reason or "-",
        )

    # -- lock housekeeping ---------------------------------------------------------------
    def expire_locks(self) -> list[uuid.UUID]:
        """Return expired locks' messages to the queue as failed deliveries; give back their tokens."""
        now = self.clock()
        expired = [token for token, lock in self._locks.items() if lock.locked_until <= now]
        for token in expired:
            self._count_failed_delivery(self._locks.pop(token).message)
        return expired

    def abandon_owner(self, owner: str) -> int:
        """A consumer link went away: its locked messages come back as failed deliveries."""
        tokens = [token for token, lock in self._locks.items() if lock.owner == owner]
        for token in tokens:
            self._count_failed_delivery(self._locks.pop(token).message)
        return len(tokens)

    def peek(self, from_sequence_number: int, count: int) -> list[StoredMessage]:
        """Active messages (locked ones included, as in Service Bus) from a sequence number on."""
        numbers = sorted(n for n in self._messages if n >= from_sequence_number)
        return [self._messages[n] for n in numbers[: max(count, 0)]]

    def messages(self) -> Iterator[StoredMessage]:
        """Every stored message, scheduled ones included (the journal snapshots them all)."""
        stored = [*self._messages.values(), *self._scheduled.values()]
        return iter(sorted(stored, key=lambda message: message.sequence_number))


def entity_path(address: str | None) -> str:
    """Normalise a link address (``amqps://host:port/q``, ``/q``, ``q``) to a lower-case entity path.

    Service Bus entity names are case-insensitive, so paths are compared in lower case.
    """
    text = (address or "").strip()
    if "://" in text:
        text = urlsplit(text).path
    return text.strip("/").lower()


@dataclass
class Namespace:
    """All queues of the broker; queues are created on first use, like an auto-provisioned namespace."""

    lock_duration: float
    max_delivery_count: int
    journal: Journal | None = None
    _queues: dict[str, Queue] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def queue(self, path: str) -> Queue:
        """The queue for an entity path; ``<queue>/$DeadLetterQueue`` gives its dead-letter sub-queue."""
        name = entity_path(path)
        with self.lock:  # tests look queues up from their own thread
            if name.endswith(DEAD_LETTER_SUFFIX):
                parent = self.queue(name[: -len(DEAD_LETTER_SUFFIX)])
                assert parent.dead_letter_queue is not None
                return parent.dead_letter_queue
            if name not in self._queues:
                self._queues[name] = self._create(name)
            return self._queues[name]

    def _create(self, name: str) -> Queue:
        dead_letter = Queue(name + DEAD_LETTER_SUFFIX, self.lock_duration, None, self.journal)
        return Queue(name, self.lock_duration, self.max_delivery_count, self.journal, dead_letter)

    def queues(self) -> list[Queue]:
        """Every queue and dead-letter queue."""
        result: list[Queue] = []
        with self.lock:
            parents = list(self._queues.values())
        for queue in parents:
            result.append(queue)
            if queue.dead_letter_queue is not None:
                result.append(queue.dead_letter_queue)
        return result
