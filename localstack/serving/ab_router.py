"""The local endpoint: an HTTP router on 127.0.0.1 in front of one endpoint's deployments, with an A/B split.

Scoring behaves like an Azure ML online endpoint: `POST /score` goes to a deployment drawn at random by the traffic
percentages (a seedable RNG, so tests measure a deterministic split), the header `azureml-model-deployment: <name>`
pins a deployment — also one at 0 %, which is how smoke tests reach a new version before it gets traffic — and the
answer carries `x-served-by` / `azureml-model-deployment` (who served it) and `x-request-id` (the id feedback refers
to; a sane id sent by the caller is kept). Every scoring request is appended to a JSONL telemetry file, one
`ServedRequest` a line, which the A/B report reads; with a use case and storage, it also goes to the production log
(inputs and outputs, secrets masked: production_writer.py), which the production monitor reads.

Administration, for the local deployer: `GET|PUT /traffic` (`{"blue": 70, "green": 30}`, summing to 100, or 0 for
none), `GET /deployments`, `PUT /deployments/{name}` (`{"url": ...}`; new deployments start at 0 %),
`DELETE /deployments/{name}` (refused while it has traffic, as in Azure ML), `GET /health`.
The router listens on loopback only and has no keys: it is a development stand-in, not an edge.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from localstack.serving.production_writer import BlobProductionWriter
from shared.feedback.telemetry import ServedRequest
from shared.monitoring.production_log import ProductionLine, loggable

PIN_HEADER = "azureml-model-deployment"
SERVED_BY_HEADER = "x-served-by"
REQUEST_ID_HEADER = "x-request-id"
MAX_BODY_BYTES = 4 * 1024 * 1024
UPSTREAM_TIMEOUT_SECONDS = 120.0
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_DEPLOYMENT_PATH = re.compile(r"^/deployments/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")
_FORWARDED = ("Content-Type", "Accept", "traceparent")
PRODUCTION_LOG_ENV = "PRODUCTION_LOG_CONNECTION_STRING"  # storage the production log goes to (router_admin.py)


class RequestHeaders(Protocol):
    """What the router reads of a request's headers: a mapping, or http.server's case-insensitive Message."""

    def get(self, name: str, /) -> str | None: ...


class RoutingError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def validate_traffic(traffic: Mapping[str, Any], deployments: Mapping[str, str]) -> dict[str, int]:
    """Every deployment with an integer share 0..100 (missing ones get 0), summing to 100 — or 0: no traffic."""
    unknown = sorted(set(traffic) - set(deployments))
    if unknown:
        raise RoutingError(400, f"unknown deployment(s): {', '.join(unknown)}; known: {', '.join(deployments)}")
    split: dict[str, int] = {}
    for name in sorted(deployments):
        share = traffic.get(name, 0)
        if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= 100:
            raise RoutingError(400, f"traffic for {name!r} must be an integer 0..100, got {share!r}")
        split[name] = share
    if sum(split.values()) not in (0, 100):
        raise RoutingError(400, f"traffic must sum to 100 (or 0), got {sum(split.values())}: {split}")
    return split


class RouteTable:
    """Deployments, their traffic, and the draw; thread-safe."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._deployments: dict[str, str] = {}
        self._traffic: dict[str, int] = {}
        self._rng = random.Random(seed)

    def deployments(self) -> dict[str, str]:
        with self._lock:
            return dict(self._deployments)

    def traffic(self) -> dict[str, int]:
        with self._lock:
            return dict(self._traffic)

    def register(self, name: str, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise RoutingError(400, f"deployment {name!r}: url must be http(s), got {url!r}")
        with self._lock:
            self._deployments[name] = url.rstrip("/")
            self._traffic.setdefault(name, 0)

    def unregister(self, name: str) -> None:
        with self._lock:
            if name not in self._deployments:
                return
            if self._traffic.get(name, 0) > 0:
                raise RoutingError(409, f"deployment {name!r} still has {self._traffic[name]}% traffic; move it first")
            del self._deployments[name]
            self._traffic.pop(name, None)

    def set_traffic(self, traffic: Mapping[str, Any]) -> dict[str, int]:
        with self._lock:
            self._traffic = validate_traffic(traffic, self._deployments)
            return dict(self._traffic)

    def choose(self, pinned: str | None) -> tuple[str, str]:
        """(deployment, url) for one request: the pinned one, or a weighted draw over those with traffic."""
        with self._lock:
            if pinned is not None:
                if pinned not in self._deployments:
                    raise RoutingError(404, f"deployment {pinned!r} not found on this endpoint")
                return pinned, self._deployments[pinned]
            # Sorted names: the same seed gives the same sequence of choices whatever the registration order.
            weighted = [(name, share) for name, share in sorted(self._traffic.items()) if share > 0]
            if not weighted:
                raise RoutingError(503, "no deployment has traffic on this endpoint")
            point = self._rng.random() * sum(share for _, share in weighted)
            for name, share in weighted:
                point -= share
                if point < 0:
                    return name, self._deployments[name]
            name = weighted[-1][0]  # float rounding at the very top end
            return name, self._deployments[name]


class JsonlTelemetry:
    """One ServedRequest per line, appended and flushed per request (a crash loses at most the line in flight)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(self, served: ServedRequest) -> None:
        line = served.model_dump_json() + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line)


def read_telemetry(path: Path) -> list[ServedRequest]:
    """The records of a telemetry file; a torn last line (crash mid-write) is skipped."""
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(ServedRequest.model_validate_json(line))
            except ValueError:
                continue
    return records


class ABRouter:
    """The router's HTTP server; `start()` serves on a thread (tests), `serve_forever()` in its own process."""

    def __init__(self, endpoint: str, telemetry: JsonlTelemetry | None, *, port: int = 0, seed: int | None = None,
                 upstream_timeout_seconds: float = UPSTREAM_TIMEOUT_SECONDS, use_case: str | None = None,
                 production: BlobProductionWriter | None = None, mask_fields: Sequence[str] = ()) -> None:
        self.endpoint = endpoint
        self.use_case = use_case
        self.production = production
        self.mask_fields = tuple(mask_fields)
        self.table = RouteTable(seed)
        self.telemetry = telemetry
        self.upstream_timeout_seconds = upstream_timeout_seconds
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ABRouter:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def score(self, body: bytes, headers: RequestHeaders, request_id: str) -> tuple[int, bytes, dict[str, str]]:
        """Route one scoring request; returns status, body and headers, and records it."""
        pinned = headers.get(PIN_HEADER) or None
        started = time.perf_counter()
        deployment: str | None = None
        error: str | None = None
        try:
            deployment, url = self.table.choose(pinned)
            status, payload, content_type = self._forward(url + "/score", body, headers, request_id)
        except RoutingError as refusal:
            status, payload, content_type = refusal.status, _error_body(str(refusal)), "application/json"
            error = str(refusal)
        except TimeoutError:
            status, payload, content_type = 504, _error_body(f"deployment {deployment!r} timed out"), "application/json"
            error = "upstream timeout"
        except OSError as failure:  # refused, reset: the deployment is down
            reason = getattr(failure, "reason", failure)
            status, payload = 502, _error_body(f"deployment {deployment!r} unreachable: {reason}")
            content_type, error = "application/json", f"upstream unreachable: {reason}"
        latency_ms = (time.perf_counter() - started) * 1000
        if status >= 400 and error is None:
            error = payload[:300].decode("utf-8", errors="replace")
        served = ServedRequest(time=datetime.now(UTC), endpoint=self.endpoint, request_id=request_id,
                               deployment=deployment, pinned=pinned is not None, status=status,
                               latency_ms=round(latency_ms, 3), error=error)
        if self.telemetry is not None:
            self.telemetry.record(served)
        if self.production is not None and self.use_case:
            self.production.record(ProductionLine(**served.model_dump(), use_case=self.use_case,
                                                  inputs=loggable(_document(body), self.mask_fields),
                                                  outputs=loggable(_document(payload), self.mask_fields)))
        answer_headers = {"Content-Type": content_type, REQUEST_ID_HEADER: request_id}
        if deployment is not None:
            answer_headers.update({SERVED_BY_HEADER: deployment, PIN_HEADER: deployment})
        return status, payload, answer_headers

    def _forward(self, url: str, body: bytes, headers: RequestHeaders,
                 request_id: str) -> tuple[int, bytes, str]:
        forwarded = {name: value for name in _FORWARDED if (value := headers.get(name))}
        forwarded.setdefault("Content-Type", "application/json")
        forwarded[REQUEST_ID_HEADER] = request_id
        request = urllib.request.Request(url, data=body, headers=forwarded, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.upstream_timeout_seconds) as response:
                return response.status, response.read(), response.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as answer:  # the deployment answered with an error: pass it through
            with answer:
                return answer.code, answer.read(), answer.headers.get("Content-Type", "application/json")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        router = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                if path == "/health":
                    self._json(200, {"status": "Healthy", "endpoint": router.endpoint})
                elif path == "/traffic":
                    self._json(200, router.table.traffic())
                elif path == "/deployments":
                    self._json(200, router.table.deployments())
                else:
                    self._json(404, {"error": f"no route GET {path}"})

            def do_POST(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                if path != "/score":
                    self._json(404, {"error": f"no route POST {path}"})
                    return
                body = self._body()
                if body is None:
                    return
                given = self.headers.get(REQUEST_ID_HEADER) or ""
                request_id = given if _REQUEST_ID.match(given) else str(uuid.uuid4())
                status, payload, headers = router.score(body, self.headers, request_id)
                self._send(status, payload, headers)

            def do_PUT(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                body = self._body()
                if body is None:
                    return
                try:
                    document = json.loads(body or b"{}")
                    if not isinstance(document, dict):
                        raise RoutingError(400, "body must be a JSON object")
                    if path == "/traffic":
                        self._json(200, router.table.set_traffic(document))
                    elif match := _DEPLOYMENT_PATH.match(path):
                        router.table.register(match.group(1), str(document.get("url", "")))
                        self._json(200, router.table.deployments())
                    else:
                        self._json(404, {"error": f"no route PUT {path}"})
                except json.JSONDecodeError as bad:
                    self._json(400, {"error": f"not JSON: {bad}"})
                except RoutingError as refusal:
                    self._json(refusal.status, {"error": str(refusal)})

            def do_DELETE(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                match = _DEPLOYMENT_PATH.match(path)
                if not match:
                    self._json(404, {"error": f"no route DELETE {path}"})
                    return
                try:
                    router.table.unregister(match.group(1))
                except RoutingError as refusal:
                    self._json(refusal.status, {"error": str(refusal)})
                    return
                self._json(200, router.table.deployments())

            def _body(self) -> bytes | None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._json(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
                    self.close_connection = True
                    return None
                return self.rfile.read(length)

            def _json(self, status: int, document: Any) -> None:
                self._send(status, json.dumps(document).encode(), {"Content-Type": "application/json"})

            def _send(self, status: int, payload: bytes, headers: Mapping[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

        return Handler


def _error_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message}}).encode()


def _document(body: bytes) -> Any:
    """A body as logged: its JSON, or its text when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localstack.serving.ab_router", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--telemetry", type=Path, required=True, help="JSONL file the requests are appended to")
    parser.add_argument("--seed", type=int, default=None, help="seed of the traffic draw (tests)")
    parser.add_argument("--upstream-timeout", type=float, default=UPSTREAM_TIMEOUT_SECONDS,
                        help="seconds a deployment may take to answer (the endpoint's request timeout)")
    parser.add_argument("--use-case", default=None,
                        help=f"the endpoint's use case: with storage in ${PRODUCTION_LOG_ENV}, the production log")
    parser.add_argument("--mask-field", action="append", default=[], help="a field the production log masks")
    args = parser.parse_args(argv)
    connection = os.environ.get(PRODUCTION_LOG_ENV)
    production = (BlobProductionWriter.from_connection_string(connection).start()
                  if connection and args.use_case else None)
    router = ABRouter(args.endpoint, JsonlTelemetry(args.telemetry), port=args.port, seed=args.seed,
                      upstream_timeout_seconds=args.upstream_timeout, use_case=args.use_case, production=production,
                      mask_fields=args.mask_field)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"router {args.endpoint} on {router.url}", flush=True)
    try:
        router.serve_forever()
    finally:
        router._server.server_close()
        if production is not None:
            production.close()


if __name__ == "__main__":
    main()
