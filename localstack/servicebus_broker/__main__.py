"""Command line: ``python -m localstack.servicebus_broker --port 5672 --queues genaiops-events``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from .config import BrokerConfig, connection_string
from .server import Broker


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m localstack.servicebus_broker",
        description="Local Azure Service Bus compatible AMQP 1.0 broker (queues only, for dev and tests).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5672, help="TCP port, 0 for any free port (default 5672)")
    parser.add_argument(
        "--queues",
        nargs="*",
        default=[],
        metavar="NAME",
        help="queues to create at start (space or comma separated); others are created on first use",
    )
    parser.add_argument("--max-delivery-count", type=int, default=10, help="deliveries before dead-lettering")
    parser.add_argument("--lock-duration", type=float, default=30.0, help="peek-lock duration in seconds")
    parser.add_argument(
        "--data-dir", default=None, help="keep queue contents in this directory across restarts"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser.parse_args(argv)


def _queue_names(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(name for value in values for name in value.split(",") if name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("proton").setLevel(logging.WARNING)  # proton logs every accepted socket at INFO
    try:
        config = BrokerConfig(
            host=args.host,
            port=args.port,
            queues=_queue_names(args.queues),
            max_delivery_count=args.max_delivery_count,
            lock_duration=args.lock_duration,
            data_dir=args.data_dir,
        )
    except ValueError as exc:
        print(f"servicebus-broker: {exc}", file=sys.stderr)
        return 2
    broker = Broker(config)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        broker.start()
    except OSError as exc:
        print(
            f"servicebus-broker: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    # Any key works (tokens are not checked); print a placeholder so no real key ends up in logs.
    print(connection_string(args.host, broker.port, key="<any-value>"), flush=True)
    try:
        stop.wait()
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
