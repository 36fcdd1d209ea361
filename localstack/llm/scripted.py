"""A scripted OpenAI-compatible chat endpoint on 127.0.0.1, for deterministic tests and benchmarks.

It answers `POST /v1/chat/completions` and the Azure OpenAI route
`POST /openai/deployments/{deployment}/chat/completions?api-version=...` (any deployment name; `azure_endpoint` is
what an AzureOpenAIConnection's `api_base` points at), both as plain JSON and as server-sent events when
`stream: true` (promptflow's `pf.test` streams, `pf.run` does not). The answer comes from a responder function of
the messages (an exception becomes a 400 answer; `InvalidApiKey` a 401 that echoes the caller's key, as OpenAI's
does); an optional fixed delay makes latency predictable for benchmarks. `GET /stats` reports calls and peak
concurrency.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Messages = list[dict[str, Any]]
Responder = Callable[[Messages], str]

_AZURE_ROUTE = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
_ARITHMETIC = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/xx])\s*(-?\d+(?:\.\d+)?)")


def arithmetic_responder(messages: Messages) -> str:
    """Solves the last `a op b` in the last user message; a stand-in for a model that is good at maths."""
    text = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    found = _ARITHMETIC.findall(text)
    if not found:
        return "I don't know."
    left, op, right = found[-1]
    a, b = float(left), float(right)
    value = {"+": a + b, "-": a - b, "*": a * b, "x": a * b, "/": a / b if b else float("nan")}[op]
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


_GRADED = re.compile(r"Question:(.*)\nProposed answer:(.*)", re.DOTALL)


def grading_responder(messages: Messages) -> str:
    """`arithmetic_responder`, and as the post-production judge (flows/math_coding/flows/judge) a strict grader:
    5 when the proposed answer is the arithmetic's, else 1."""
    text = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    graded = _GRADED.search(text)
    if graded is None:
        return arithmetic_responder(messages)
    question, answer = graded.groups()
    right = arithmetic_responder([{"role": "user", "content": question}])
    return "5" if answer.strip() == right else "1"


class InvalidApiKey(Exception):
    """Raised by a responder to refuse the call as OpenAI refuses a wrong key: 401, the key echoed back."""


def _validate(request: dict[str, Any]) -> None:
    """The parameter checks the OpenAI API makes, so a misconfigured flow fails here as it would there."""
    temperature = request.get("temperature", 1)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise ValueError(f"temperature must be between 0 and 2, got {temperature!r}")
    max_tokens = request.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class ScriptedLLM:
    def __init__(self, responder: Responder = arithmetic_responder, delay_seconds: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.responder = responder
        self.delay_seconds = delay_seconds
        self.calls = 0
        self.peak_concurrency = 0
        self.credentials: set[str] = set()  # how callers authenticated: "api-key", "bearer <token>"
        self.azure_calls: set[tuple[str, str]] = set()  # (deployment, api-version) asked on the Azure route
        self._active = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def azure_endpoint(self) -> str:
        """The Azure OpenAI `api_base`: the client appends /openai/deployments/{deployment}/..."""
        return self.base_url.removesuffix("/v1")

    def start(self) -> ScriptedLLM:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset_stats(self) -> None:
        with self._lock:
            self.calls = self.peak_concurrency = 0

    def complete(self, request: dict[str, Any]) -> str:
        _validate(request)
        with self._lock:
            self.calls += 1
            self._active += 1
            self.peak_concurrency = max(self.peak_concurrency, self._active)
        try:
            if self.delay_seconds:
                time.sleep(self.delay_seconds)
            return self.responder(request.get("messages") or [{"role": "user", "content": request.get("prompt", "")}])
        finally:
            with self._lock:
                self._active -= 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        llm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/stats"):
                    self._json(200, {"calls": llm.calls, "peak_concurrency": llm.peak_concurrency})
                elif self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                if not url.path.endswith("/chat/completions"):
                    self._json(404, {"error": {"message": f"unsupported path {self.path}"}})
                    return
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if azure := _AZURE_ROUTE.match(url.path):
                    version = parse_qs(url.query).get("api-version", [""])[0]
                    if not version:  # the Azure OpenAI API refuses a request without one as well
                        self._json(400, {"error": {"message": "api-version query parameter is required"}})
                        return
                    llm.azure_calls.add((azure.group(1), version))
                if self.headers.get("api-key"):
                    llm.credentials.add("api-key")
                if (self.headers.get("Authorization") or "").startswith("Bearer "):
                    llm.credentials.add("bearer " + self.headers["Authorization"].removeprefix("Bearer "))
                try:
                    answer = llm.complete(request)
                except InvalidApiKey:
                    # Echoed whole, the worst case: what the app does with it is what the tests look at.
                    presented = self.headers.get("api-key") or self.headers.get("Authorization") or ""
                    self._json(401, {"error": {
                        "message": f"Incorrect API key provided: {presented.removeprefix('Bearer ')}. You can find "
                                   "your API key at https://platform.openai.com/account/api-keys.",
                        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
                    return
                except Exception as refusal:  # noqa: BLE001 - a responder's exception is the API's 400 answer
                    # 400 is not retried by the OpenAI client nor by promptflow: the line fails at once.
                    self._json(400, {"error": {"message": str(refusal), "type": "invalid_request_error"}})
                    return
                model = request.get("model", "scripted")
                if request.get("stream"):
                    self._stream(answer, model)
                else:
                    self._json(200, _completion(answer, model, request))

            def _json(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, answer: str, model: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for chunk in _chunks(answer, model):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

        return Handler


def _completion(answer: str, model: str, request: dict[str, Any]) -> dict[str, Any]:
    prompt_tokens = sum(_tokens(str(m.get("content", ""))) for m in request.get("messages") or [])
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": _tokens(answer),
                  "total_tokens": prompt_tokens + _tokens(answer)},
    }


def _chunks(answer: str, model: str) -> Iterator[dict[str, Any]]:
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    deltas = [{"role": "assistant", "content": ""}, *({"content": word} for word in re.findall(r"\S+\s*", answer))]
    for delta in deltas:
        yield {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    yield {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


@contextmanager
def scripted_llm(responder: Responder = arithmetic_responder, delay_seconds: float = 0.0) -> Iterator[ScriptedLLM]:
    server = ScriptedLLM(responder, delay_seconds).start()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m localstack.llm.scripted", description=__doc__)
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    server = ScriptedLLM(delay_seconds=args.delay, port=args.port)
    print(f"scripted LLM on {server.base_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
