"""Every HTTP route under hostile input (issue 12), over real HTTP against the local host: generated methods, paths
(traversal, very long, unicode, encoded slashes and NULs in the segments), headers (keys right, wrong or missing,
odd Accept and Content-Type, forged identity headers) and bodies (broken JSON, wrong types, 5,000-digit numbers,
deep nesting, oversized, binary). No answer is a 5xx, and every answer a function gives (the route matched, the
key was right, no HTML page asked for) is JSON, with an "error" when it is a 4xx.

Every hostile body also goes to every route once (two content types); a chunked body must arrive whole; and raw
requests the `requests` library cannot send (a bad Content-Length or chunk size, an absolute URL) go through a
socket and must get an answer, not a dropped connection.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localstack.host.keys import read_host_keys
from localstack.stack import LocalStack
from shared.approvals.page import wants_html

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

EXAMPLES = 1_100
KNOWN_USE_CASE, KNOWN_ENDPOINT = "math_coding", "math-coding-local"


@dataclass(frozen=True)
class RouteTemplate:
    path: str  # segments in braces are generated
    methods: frozenset[str]
    keyed: bool  # needs a function key (else anonymous)
    known: tuple[str, ...] = ()  # well-formed values for its {parameters}, so the deeper checks are reached too
    host_only: bool = False  # answered by the host itself

    def fill(self, segments: list[str]) -> str:
        """The path with its {parameters} replaced, in order, by the encoded segments."""
        values = iter(segments)
        return "/".join(encode_segment(next(values)) if part.startswith("{") else part
                        for part in self.path.split("/"))


KNOWN_PAIR = (KNOWN_USE_CASE, KNOWN_ENDPOINT)
APPROVAL_ID = "apr-0123456789abcdef"  # well-formed, never created
ROUTES = [
    RouteTemplate("/api/feedback/{use_case}/{endpoint}", frozenset({"POST"}), keyed=True, known=KNOWN_PAIR),
    RouteTemplate("/api/ab-report/{use_case}/{endpoint}", frozenset({"GET"}), keyed=True, known=KNOWN_PAIR),
    RouteTemplate("/api/candidates/{use_case}", frozenset({"POST"}), keyed=True, known=(KNOWN_USE_CASE,)),
    RouteTemplate("/api/runs/{correlation_id}/events", frozenset({"GET"}), keyed=True, known=("ghost",)),
    RouteTemplate("/api/approvals/{approval_id}", frozenset({"GET"}), keyed=False, known=(APPROVAL_ID,)),
    RouteTemplate("/api/approvals/{approval_id}/approve", frozenset({"POST"}), keyed=False, known=(APPROVAL_ID,)),
    RouteTemplate("/api/approvals/{approval_id}/reject", frozenset({"POST"}), keyed=False, known=(APPROVAL_ID,)),
    RouteTemplate("/api/health", frozenset({"GET"}), keyed=False),
    # App Service authentication as the host emulates it: its own answers, not a function's.
    RouteTemplate("/.auth/login/local", frozenset({"GET"}), keyed=False, host_only=True),
]


@dataclass
class Fuzzed:
    method: str
    route: RouteTemplate | None
    segments: list[str]
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    auth: str  # "header", "query", "wrong", "none"

    def function_answers(self) -> bool:
        """The host hands this request to a function (as opposed to answering 404/401 itself)."""
        return (self.route is not None and not self.route.host_only and self.method in self.route.methods
                and (not self.route.keyed or self.auth in ("header", "query")))

    def may_answer_html(self) -> bool:
        """Approval routes answer a browser with the page (errors included) or a sign-in redirect."""
        return self.route is not None and self.route.path.startswith("/api/approvals/") and wants_html(
            self.headers.get("Accept"), self.params.get("format"))


# --- strategies ---------------------------------------------------------------------------------------------------

TRAVERSAL = ["..", ".", "../..", "..\\..", "../../etc/passwd", "%2e%2e", "..%2F..%2Fetc", "%00", "/", "\\", "~",
             "$(id)", "${jndi:ldap://x}", "<script>alert(1)</script>", "' OR 1=1 --", "CON", "nul", ".git",
             "math_coding/..", "../math_coding", "math_coding%00", "\x00", "\r\nX-Injected: 1", "*", "?", "#"]
KNOWN = [KNOWN_USE_CASE, KNOWN_ENDPOINT, "named_entity_recognition", "named-entity-recognition-local", "ghost",
         "v1", "blue"]

segment_text = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(TRAVERSAL),
    st.text(min_size=1, max_size=40),  # any unicode; lone surrogates go out as their (invalid UTF-8) bytes
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12),
    st.integers(min_value=64, max_value=6_000).map(lambda n: "a" * n),  # past NAME_MAX and any name rule
    st.builds(lambda known, junk: known + junk, st.sampled_from(KNOWN), st.sampled_from(TRAVERSAL)),
)


def encode_segment(text: str) -> str:
    """Percent-encoded, slashes and dots too: the segment stays one segment, and no client resolves a `..` away
    before it reaches the host (the host decodes %2E, as the Functions host does)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="").replace(".", "%2E")


HOSTILE_BODIES = [
    b"{", b"[" * 5_000, b'{"comment": ' * 3_000, b'{"rating": ' + b"9" * 5_000 + b"}", b"-" + b"1" * 5_000,
    b'{"a": NaN}', b'{"rating": Infinity}', b"\xff\xfe{", b"\x00" * 64, b'{"comment": "\\ud800"}', b"null", b"[]",
    b'"text"', b"comment=hello&x=%FF", b"comment=" + b"%E2%82" * 10, b'{"request_id": "r", "deployment": "blue"}',
    b'{"request_id": "r", "deployment": "blue", "rating": 4}', b'{"comment": {"nested": [1, 2, {"x": null}]}}',
    b'{"request_id": ["r"], "deployment": {"$ne": 1}, "thumbs": true}', b"\xef\xbb\xbf{}",
    b'{"comment": "' + b"x" * 40_000 + b'"}',  # past feedback's 32 KiB
]
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=12)
feedback_like = st.fixed_dictionaries(
    {},
    optional={"request_id": st.one_of(st.text(max_size=200), st.integers(), st.none(), json_values),
              "deployment": st.one_of(st.sampled_from(["blue", "v1", "v-1", "../x", ""]), json_values),
              "rating": st.one_of(st.integers(-10, 10), st.floats(allow_nan=False), st.text(max_size=5), json_values),
              "thumbs": st.one_of(st.sampled_from(["up", "down", "sideways"]), json_values),
              "comment": st.one_of(st.text(max_size=300), st.integers(min_value=10**30), json_values),
              "extra": json_values},
)

bodies = st.one_of(
    st.just(b""),
    feedback_like.map(lambda doc: json.dumps(doc).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),  # lone surrogates as bytes
    st.sampled_from(HOSTILE_BODIES),
    st.integers(min_value=33 * 1024, max_value=1024 * 1024).map(lambda n: b'{"comment": "' + b"x" * n + b'"}'),
)

header_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                       max_size=60).map(str.strip)
extra_headers = st.dictionaries(
    st.sampled_from(["Accept", "Content-Type", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-CLIENT-PRINCIPAL",
                     "X-MS-CLIENT-PRINCIPAL-ID", "Authorization", "Cookie", "Origin", "Referer", "Sec-Fetch-Site",
                     "X-Forwarded-Host", "X-Forwarded-Proto", "If-Match", "Accept-Language", "X-Request-Id"]),
    st.one_of(header_value, st.sampled_from(["text/html", "application/json", "*/*", "Bearer x.y.z", "Bearer ",
                                             "application/x-www-form-urlencoded", "null", "cross-site"])),
    max_size=4,
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])


@st.composite
def fuzzed_requests(draw: st.DrawFn) -> Fuzzed:
    route = draw(st.sampled_from([*ROUTES, None]))  # None: a path no route declares
    method = draw(st.one_of(st.sampled_from(sorted(route.methods)), methods) if route else methods)
    if route is None:
        segments = draw(st.lists(segment_text, min_size=0, max_size=4))
        path = "/api/" + "/".join(map(encode_segment, segments))
    else:
        segments = [draw(st.one_of(st.just(value), segment_text)) for value in route.known]
        path = route.fill(segments)
    auth = draw(st.sampled_from(["header", "query", "wrong", "none"]))
    params = draw(st.dictionaries(st.sampled_from(["format", "x", "user", "post_login_redirect_uri", "redirect"]),
                                  st.one_of(st.sampled_from(["json", "html", "", "alice@contoso.com", "/api/health",
                                                             "//evil.example", "/\u20ac\u00e9"]), header_value,
                                            st.text(max_size=20)), max_size=3))
    headers = draw(extra_headers)
    # A fresh client address per request: with the key in the query, that is the feedback rate limit's caller.
    headers["X-Forwarded-For"] = f"198.51.100.{draw(st.integers(1, 254))}:{draw(st.integers(1024, 65535))}"
    body = draw(bodies) if method not in ("GET", "HEAD") or draw(st.booleans()) else b""
    return Fuzzed(method, route, segments, path, params, headers, body, auth)


# --- the suite ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key(stack: LocalStack) -> str:
    return read_host_keys(stack.storage_connection_string)["default"]


def send(session: requests.Session, base_url: str, key: str, request: Fuzzed) -> requests.Response:
    headers, params = dict(request.headers), dict(request.params)
    if request.auth == "header":
        headers["x-functions-key"] = key
    elif request.auth == "query":
        params["code"] = key
    elif request.auth == "wrong":
        headers["x-functions-key"] = key[:-1] + ("A" if key[-1] != "A" else "B")
    return session.request(request.method, base_url + request.path, headers=headers, params=params,
                           data=request.body or None, timeout=30, allow_redirects=False)


def problems(request: Fuzzed, response: requests.Response) -> list[str]:
    """What is wrong with the answer: a 5xx; a JSON content type over something else; a function's 4xx that is
    not a JSON object with an "error" (a page is fine where the approval routes serve one)."""
    found = [f"{response.status_code}: {response.text[:300]}"] if response.status_code >= 500 else []
    is_json = response.headers.get("Content-Type", "").startswith("application/json")
    document = None
    if is_json and request.method != "HEAD":
        try:
            document = response.json()
        except ValueError:
            found.append(f"Content-Type JSON but the body is not: {response.text[:200]!r}")
    error_answer = response.status_code >= 400 and request.function_answers() and not request.may_answer_html()
    if error_answer and not (isinstance(document, dict) and "error" in document):
        found.append(f"a function answered {response.status_code} without a JSON error: "
                     f"{response.headers.get('Content-Type')!r} {response.text[:200]!r}")
    return found


def test_no_route_answers_5xx_and_functions_answer_json(stack: LocalStack, key: str) -> None:
    session = requests.Session()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    started = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(request=fuzzed_requests())
    def one(request: Fuzzed) -> None:
        response = send(session, stack.base_url, key, request)
        statuses[response.status_code] += 1
        found = problems(request, response)
        if found:
            failures.append(f"{request.method} {request.path[:300]} {request.params} -> {'; '.join(found)}")
        assert not found, failures[-1]

    one()
    elapsed = time.monotonic() - started
    sent = sum(statuses.values())
    print(f"\nroute fuzz: {sent} requests in {elapsed:.1f} s, statuses {dict(sorted(statuses.items()))}")
    assert sent >= 1_000
    assert not [status for status in statuses if status >= 500]
    assert {400, 401, 404} <= set(statuses)  # it reached the host's checks and the functions' own
    assert session.get(f"{stack.base_url}/api/health", timeout=10).status_code == 200  # and the host still answers


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_every_route_takes_every_hostile_body(stack: LocalStack, key: str, content_type: str) -> None:
    """The generated suite draws these bodies at random; here each goes to each route, key given, no browser."""
    session, statuses = requests.Session(), Counter[int]()
    for route in ROUTES:
        for body in HOSTILE_BODIES:
            request = Fuzzed(sorted(route.methods)[0], route, list(route.known), route.fill(list(route.known)), {},
                             {"Content-Type": content_type}, body, "header")
            response = send(session, stack.base_url, key, request)
            statuses[response.status_code] += 1
            assert not problems(request, response), (request.method, request.path, body[:40], response.text[:300])
    assert {400, 413} <= set(statuses)  # feedback refused the bodies itself (or rate-limited them: 429)


@pytest.mark.parametrize(("path", "error"), [
    ("/api/ab-report/no_such_use_case/math-coding-local", "no use case 'no_such_use_case'"),
    ("/api/ab-report/..%2F..%2Fetc/passwd", "no use case '..%2F..%2Fetc'"),
    ("/api/ab-report/%2E%2E/math-coding-local", "no use case '..'"),
    ("/api/ab-report/" + "a" * 3_000 + "/x", "no use case 'aaaa"),
    ("/api/ab-report/math_coding/math-coding-dev", "its endpoint is math-coding-local"),
    ("/api/runs/" + "r" * 200 + "/events", "no events for run"),
])
def test_unknown_names_in_the_url_are_404_with_a_json_error(stack: LocalStack, key: str, path: str,
                                                            error: str) -> None:
    answer = requests.get(stack.base_url + path, headers={"x-functions-key": key}, timeout=10)
    assert answer.status_code == 404
    assert answer.headers["Content-Type"].startswith("application/json")
    assert error in answer.json()["error"]
    assert len(answer.json()["error"]) < 300  # a long segment is not echoed whole


@pytest.mark.parametrize("segments", [("no_such_use_case", "math-coding-local"), ("math_coding", "elsewhere")])
def test_feedback_for_an_unknown_use_case_or_endpoint_is_404(stack: LocalStack, key: str,
                                                            segments: tuple[str, str]) -> None:
    answer = requests.post(f"{stack.base_url}/api/feedback/{segments[0]}/{segments[1]}",
                           headers={"x-functions-key": key}, timeout=10,
                           json={"request_id": "r-1", "deployment": "blue", "rating": 5})
    assert answer.status_code == 404, answer.text
    assert "no use case" in answer.json()["error"] or "has no endpoint 'elsewhere'" in answer.json()["error"]


def test_a_chunked_body_reaches_the_function_whole(stack: LocalStack, key: str) -> None:
    chunks = iter([b'{"request_id": "r-1", ', b'"deployment": "blue", ', b'"rating": 5}'])  # sent chunked
    answer = requests.post(f"{stack.base_url}/api/feedback/{KNOWN_USE_CASE}/{KNOWN_ENDPOINT}", data=chunks,
                           params={"code": key}, headers={"X-Forwarded-For": "192.0.2.77"}, timeout=10)
    assert answer.request.headers["Transfer-Encoding"] == "chunked"
    # Parsed and valid: refused only because nothing (or no `blue`) is deployed there.
    assert answer.status_code in (404, 422), answer.text
    assert "deploy" in answer.json()["error"]


RAW_REQUESTS = [
    b"POST /api/feedback/math_coding/math-coding-local HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
    b"POST /api/feedback/math_coding/math-coding-local HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
    b"POST /api/feedback/math_coding/math-coding-local HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n{}",
    b"GET http://evil.example/api/health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/health/../health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /api/approvals/a/approve HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"POST /api/approvals/a/approve HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n{}",
    b"GET /api/ab-report/\xc3\xa9\xff/x HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/runs/%%%/events HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/" + b"a/" * 2_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /.auth/login/local?user=alice%40contoso.com&post_login_redirect_uri=/%E2%82%AC HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("raw", RAW_REQUESTS, ids=lambda raw: raw[:40].decode("latin-1"))
def test_odd_requests_get_an_answer_not_a_dropped_connection(stack: LocalStack, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", int(stack.base_url.rsplit(":", 1)[1])), timeout=10) as connection:
        connection.sendall(raw)
        answer = connection.makefile("rb")
        status_line = answer.readline()
        head = b"".join(iter(answer.readline, b"\r\n"))
    assert status_line.startswith(b"HTTP/1."), status_line
    status = int(status_line.split()[1])
    if b"/.auth/" in raw:  # signed in and sent back to the page, its path percent-encoded in the header
        assert status == 302, status_line
        assert b"Location: /%E2%82%AC" in head
    else:
        assert 400 <= status < 500, status_line
