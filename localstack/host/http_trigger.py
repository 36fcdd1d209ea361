"""HTTP triggers on 127.0.0.1: the routes the app declares, under host.json's routePrefix, with auth levels
(anonymous / function / admin keys via `x-functions-key` or `?code=`) as the real host applies them."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import azure.functions as func

from localstack.host.app_service_auth import LocalAppServiceAuth
from localstack.host.invoke import invoke
from localstack.host.keys import HostKeys
from localstack.host.loader import FunctionSpec

log = logging.getLogger("localhost.http")
MAX_BODY_BYTES = 100 * 1024 * 1024  # the Functions host's default request size limit
_ENCODED_SLASH = re.compile("%2F", re.IGNORECASE)
_PRINTABLE_ASCII = "".join(map(chr, range(0x20, 0x7F)))
_CONSTRAINTS = {"int": r"-?\d+", "alpha": r"[A-Za-z]+", "guid": r"[0-9A-Fa-f-]{36}", "bool": r"(?i:true|false)"}


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


@dataclass(frozen=True)
class Route:
    spec: FunctionSpec
    pattern: re.Pattern[str]
    methods: frozenset[str]
    auth_level: str

    @classmethod
    def from_spec(cls, spec: FunctionSpec, prefix: str, default_auth: str) -> Route:
        template = spec.trigger.get("route") or spec.name
        regex = ""
        for literal, param in re.findall(r"([^{]*)(?:\{([^}]*)\})?", template.strip("/")):
            regex += re.escape(literal)
            if param:
                regex += cls._param_regex(param, regex)
        prefix_path = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        methods = frozenset(_enum_value(m).upper() for m in spec.trigger.get("methods") or []) or frozenset(
            {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
        auth = _enum_value(spec.trigger.get("authLevel") or default_auth).lower()
        return cls(spec, re.compile(f"^/{prefix_path}{regex}/?$"), methods, auth)

    @staticmethod
    def _param_regex(param: str, preceding: str) -> str:
        name, _, constraint = param.lstrip("*").partition(":")
        optional = name.endswith("?")
        name = name.rstrip("?")
        body = ".+" if param.startswith("*") else _CONSTRAINTS.get(constraint.rstrip("?"), r"[^/]+")
        group = f"(?P<{name}>{body})"
        if optional and preceding.endswith("/"):
            return f"?{group}?"  # lets "items/" and "items" both match when the parameter is absent
        return f"{group}?" if optional else group

    def match(self, path: str) -> dict[str, str] | None:
        """The route values of a raw (still percent-encoded) path, decoded as the Functions host decodes them."""
        found = self.pattern.match(path)
        return None if found is None else {k: _decoded(v) for k, v in found.groupdict().items() if v is not None}


def _decoded(value: str) -> str:
    """Percent-decoded, except an encoded slash: ASP.NET Core keeps %2F as it is, so it never splits a segment."""
    return "%2F".join(unquote(part) for part in _ENCODED_SLASH.split(value))


class _Refused(Exception):
    """A request whose body cannot be read: answered by the host itself, before any function."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _latin1(value: str) -> str:
    """A header value http.server can send (it writes Latin-1): a sign-in redirect back to `/€` keeps its path,
    percent-encoded, instead of failing mid-answer."""
    return quote(value, safe=_PRINTABLE_ASCII) if not value.isascii() else value


class HttpTriggerServer:
    def __init__(self, specs: list[FunctionSpec], keys: HostKeys, host_config: dict[str, Any],
                 host: str, port: int, default_auth: str = "function") -> None:
        prefix = host_config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
        self.routes = [Route.from_spec(spec, prefix, default_auth) for spec in specs]
        self._keys = keys
        self._auth = LocalAppServiceAuth.from_environment()  # App Service authentication in front of the routes
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def run(self, stop: threading.Event) -> None:
        for route in self.routes:
            log.info("http %s %s -> %s (%s)", ",".join(sorted(route.methods)), route.pattern.pattern,
                     route.spec.name, route.auth_level)
        threading.Thread(target=lambda: (stop.wait(), self._server.shutdown()), daemon=True).start()
        self._server.serve_forever(poll_interval=0.2)
        self._server.server_close()

    def dispatch(self, method: str, raw_url: str, headers: dict[str, str], body: bytes) -> func.HttpResponse:
        url = urlsplit(raw_url)
        if (answer := self._auth.handle(method, url, headers)) is not None:
            return answer
        headers = self._auth.authenticate(headers)
        matches = [(route, params) for route in self.routes if (params := route.match(url.path)) is not None]
        allowed = [(route, params) for route, params in matches if method in route.methods]
        if not allowed:
            return func.HttpResponse(status_code=404)
        route, params = allowed[0]
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if route.auth_level != "anonymous":
            key = headers.get("x-functions-key") or query.get("code")
            if not self._keys.allows(key, admin_only=route.auth_level == "admin"):
                return func.HttpResponse("Unauthorized: a valid function key is required", status_code=401)
        request = func.HttpRequest(method=method, url=raw_url, headers=headers, params=query,
                                   route_params=params, body=body)
        result = invoke(route.spec, request, reason=f"HTTP {method} {url.path}")
        if isinstance(result, func.HttpResponse):
            return result
        return func.HttpResponse(b"" if result is None else str(result), status_code=200)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                try:
                    body = self._body()
                except _Refused as refused:  # the rest of the body is left unread: the connection closes
                    self.close_connection = True
                    self._send(func.HttpResponse(refused.message, status_code=refused.status))
                    return
                headers = {name.lower(): value for name, value in self.headers.items()}
                base = f"http://{self.headers.get('Host') or '127.0.0.1'}"
                try:
                    response = server.dispatch(self.command, base + self.path, headers, body)
                except Exception:  # noqa: BLE001 - the function failed: 500, like the real host
                    response = func.HttpResponse("Internal Server Error", status_code=500)
                self._send(response)

            def _body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    return self._chunked_body()
                declared = (self.headers.get("Content-Length") or "0").strip()
                if not re.fullmatch("[0-9]{1,18}", declared):  # a body of unknown size is never read
                    raise _Refused(400, "Bad Request: invalid Content-Length")
                if int(declared) > MAX_BODY_BYTES:
                    raise _Refused(413, "Request body too large")
                return self.rfile.read(int(declared)) if int(declared) else b""

            def _chunked_body(self) -> bytes:
                """Transfer-Encoding: chunked (RFC 9112 section 7.1), as the real host accepts it; trailers ignored."""
                body = bytearray()
                while True:
                    size = self.rfile.readline(1024).split(b";", 1)[0].strip()
                    if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size):
                        raise _Refused(400, "Bad Request: invalid chunk size")
                    if int(size, 16) == 0:
                        while self.rfile.readline(8192).strip():
                            pass
                        return bytes(body)
                    if len(body) + int(size, 16) > MAX_BODY_BYTES:
                        raise _Refused(413, "Request body too large")
                    body += self.rfile.read(int(size, 16))
                    self.rfile.readline(8)  # the chunk's closing CRLF

            def _send(self, response: func.HttpResponse) -> None:
                payload = response.get_body() or b""
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, _latin1(value))
                if response.mimetype and "content-type" not in {k.lower() for k, _ in response.headers.items()}:
                    self.send_header("Content-Type", f"{response.mimetype}; charset={response.charset or 'utf-8'}")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                log.debug("%s %s", self.address_string(), format % args)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        return Handler
