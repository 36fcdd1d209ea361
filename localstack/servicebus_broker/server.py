"""Run the broker: bind the port, drive the proton reactor on a background thread, stop cleanly."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from proton import Event, Handler
from proton.reactor import ApplicationEvent, Container, EventInjector

from .amqp_handler import BrokerHandler
from .config import BrokerConfig, connection_string
from .entities import Namespace, Queue
from .journal import FileJournal

_LOG = logging.getLogger(__name__)
_STOP_EVENT = "broker_stop"
_STOP_GRACE_SECONDS = 1.0
_ABORT_SECONDS = 0.5
_STOP_POLL_SECONDS = 0.05


class _QuietProtonLog(logging.Filter):
    """Drop proton's per-socket chatter: the broker logs one line per connection itself, and a client
    hanging up right after its close frame is normal, not an ERROR."""

    _NOISE = ("Accepted connection from", "Couldn't send", "Couldn't recv")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self._NOISE)


def _quiet_proton_logger() -> None:
    logger = logging.getLogger("proton")
    if not any(isinstance(existing, _QuietProtonLog) for existing in logger.filters):
        logger.addFilter(_QuietProtonLog())


class _Lifecycle(Handler):
    """Reactor-thread side of start/stop: the lock-expiry and scheduled-message timer, and the stop request."""

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self._broker = broker
        self._stopping_since: float | None = None

    def on_reactor_init(self, event: Event) -> None:
        event.container.schedule(self._broker.config.lock_check_interval, self)

    def on_timer_task(self, event: Event) -> None:
        container = event.container
        if self._stopping_since is None:
            self._broker.handler.expire_locks()
            self._activate_scheduled()
            container.schedule(self._broker.config.lock_check_interval, self)
            return
        waited = container.now - self._stopping_since
        if not self._broker.handler.has_connections() or waited > _STOP_GRACE_SECONDS + _ABORT_SECONDS:
            container.stop()
            return
        if waited > _STOP_GRACE_SECONDS:
            self._broker.handler.abort_all()  # clients that ignore our close lose their socket
        container.schedule(_STOP_POLL_SECONDS, self)

    def _activate_scheduled(self) -> None:
        """Scheduled messages whose time has come go to consumers already waiting with credit."""
        for queue in self._broker.namespace.queues():
            if queue.activate_due():
                self._broker.handler.dispatch(queue)

    def on_broker_stop(self, event: Event) -> None:
        container = self._broker.container  # injected events carry no container of their own
        self._stopping_since = container.now
        self._broker.close_listener()
        self._broker.handler.close_all()
        container.schedule(_STOP_POLL_SECONDS, self)


class Broker:
    """A Service Bus compatible AMQP broker on one host/port. Use as a context manager or start()/stop()."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.config = config or BrokerConfig()
        self._journal = FileJournal(self.config.data_dir) if self.config.data_dir else None
        self.namespace = Namespace(self.config.lock_duration, self.config.max_delivery_count, self._journal)
        self.handler = BrokerHandler(self.namespace, self.config.max_message_size)
        self._container: Container | None = None
        self._acceptor: Any = None
        self._injector: EventInjector | None = None
        self._thread: threading.Thread | None = None
        self.port = self.config.port

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Broker:
        """Bind the port (raises ``OSError`` at once if it is taken) and serve on a background thread."""
        _quiet_proton_logger()
        container = Container(self.handler, _Lifecycle(self))
        self._acceptor = container.acceptor(self.config.host, str(self.config.port))  # typed as text; int()-ed
        self.port = self._acceptor._selectable.getsockname()[1]  # the real port when port=0
        try:
            if self._journal is not None:
                self._journal.load(self.namespace)
            for name in self.config.queues:
                self.namespace.queue(name)
        except BaseException:
            self._acceptor._selectable.close()  # do not leave the port bound behind a failed start
            raise
        self._injector = EventInjector()
        container.selectable(self._injector)
        self._container = container
        self._thread = threading.Thread(target=self._run, name="servicebus-broker", daemon=True)
        self._thread.start()
        _LOG.info(
            "Service Bus broker listening on amqp://%s:%d (queues: %s)",
            self.config.host,
            self.port,
            ", ".join(self.config.queues) or "created on first use",
        )
        return self

    def _run(self) -> None:
        assert self._container is not None
        try:
            self._container.run()
        except Exception:  # noqa: BLE001 - the thread's last chance to report why it ended
            _LOG.exception("broker reactor stopped with an error")

    def stop(self, timeout: float = 5.0) -> None:
        """Close client connections and the listener, then wait for the reactor thread to end."""
        if self._thread is None or self._injector is None:
            return
        self._injector.trigger(ApplicationEvent(_STOP_EVENT))
        self._thread.join(timeout)
        if self._thread.is_alive():
            _LOG.warning("broker reactor did not stop within %.1fs", timeout)
        else:
            for descriptor in self._injector.pipe:  # EventInjector never closes its wake-up pipe
                os.close(descriptor)
        self._thread = None
        if self._journal is not None:
            self._journal.close()
        _LOG.info("Service Bus broker on port %d stopped", self.port)

    def close_listener(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
        if self._injector is not None:
            self._injector.close()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- conveniences for callers and tests --------------------------------------------------
    @property
    def container(self) -> Container:
        assert self._container is not None, "broker not started"
        return self._container

    @property
    def connection_string(self) -> str:
        return connection_string(self.config.host, self.port)

    def queue(self, name: str) -> Queue:
        """The queue object (read-only use from other threads: counts may be momentarily stale)."""
        return self.namespace.queue(name)


@contextmanager
def running_broker(config: BrokerConfig | None = None, **settings: Any) -> Iterator[Broker]:
    """Run a broker for the duration of a ``with`` block.

    ``running_broker(port=0, queues=("q",), lock_duration=2)`` - keyword settings override ``config``.
    """
    broker = Broker(replace(config or BrokerConfig(port=0), **settings))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
