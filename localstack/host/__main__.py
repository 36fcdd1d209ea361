"""`python -m localstack.host`: run function_app.py locally with real triggers (see localstack/host/__init__)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from localstack.host.blob_trigger import BlobTriggerListener
from localstack.host.bus_trigger import ServiceBusTriggerListener
from localstack.host.connections import HOST_STORAGE, blob_service, servicebus_client
from localstack.host.http_trigger import HttpTriggerServer
from localstack.host.keys import load_or_create_host_keys
from localstack.host.loader import (
    FunctionSpec,
    HostConfigError,
    describe_functions,
    load_function_app,
    load_host_json,
    load_local_settings,
)
from localstack.host.timer_trigger import TimerTriggerListener

log = logging.getLogger("localhost")


def _ensure_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise HostConfigError(f"port {host}:{port} is already in use — is another host running? "
                                  f"(`make down` stops the local stack)") from None


def build_workers(specs: list[FunctionSpec], args: argparse.Namespace, host_config: dict) -> list:
    storage = blob_service(HOST_STORAGE)
    workers: list = []
    http_specs = []
    for spec in specs:
        if spec.trigger_type == "blobTrigger":
            service = blob_service(spec.trigger.get("connection") or HOST_STORAGE)
            attempts = int(host_config.get("extensions", {}).get("queues", {}).get("maxDequeueCount", 5))
            workers.append(BlobTriggerListener(spec, service, args.host_id, args.blob_poll_seconds, attempts))
        elif spec.trigger_type == "serviceBusTrigger":
            connection = spec.trigger["connection"]
            servicebus_client(connection).close()  # a missing setting stops the start, not every receive
            workers.append(ServiceBusTriggerListener(spec, lambda name=connection: servicebus_client(name),
                                                     host_config))
        elif spec.trigger_type == "timerTrigger":
            workers.append(TimerTriggerListener(spec))
        elif spec.trigger_type == "httpTrigger":
            http_specs.append(spec)
        else:
            raise HostConfigError(f"{spec.name}: trigger type {spec.trigger_type!r} is not supported locally")
    keys = load_or_create_host_keys(storage, args.host_id)
    workers.append(HttpTriggerServer(http_specs, keys, host_config, args.bind, args.port))
    return workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localstack.host", description=__doc__)
    parser.add_argument("--script", type=Path, default=Path("function_app.py"))
    parser.add_argument("--settings", type=Path, default=Path("local.settings.json"))
    parser.add_argument("--host-json", type=Path, default=Path("host.json"))
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("FUNCTIONS_HTTPWORKER_PORT", "7071")))
    parser.add_argument("--host-id", default=os.environ.get("AzureFunctionsWebHost__hostid", "genaiops-local"))
    parser.add_argument("--blob-poll-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)

    from shared.observability import configure_logging

    configure_logging(os.environ)  # the launcher's own lines; the app registers its settings when it starts
    try:
        _ensure_port_free(args.bind, args.port)
        load_local_settings(args.settings)
        host_config = load_host_json(args.host_json)
        specs = describe_functions(load_function_app(args.script))
        workers = build_workers(specs, args, host_config)
    except HostConfigError as problem:
        print(f"local host: {problem}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=worker.run, args=(stop,), name=type(worker).__name__, daemon=True)
               for worker in workers]
    for thread in threads:
        thread.start()
    log.info("local host started: %d functions, http on %s:%d", len(specs), args.bind, args.port)
    print(f"Host started. Functions: {', '.join(spec.name for spec in specs)}", flush=True)
    stop.wait()
    log.info("local host stopping")
    for thread in threads:
        thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
