"""The approval page in headless Chromium, driven like a person would: open the link from the notification (no
function key), get sent to the local host's `/.auth/login/local`, sign in, type a comment, click Approve — then
see the decision on the page and in storage. Chromium is driven over the DevTools protocol with a small stdlib
WebSocket client (no extra packages).

Needs the Debian `chromium` package (scripts/install-chromium.sh); skipped with the reason when it is absent.
Set REPORT_SCREENSHOT_DIR to keep the screenshots (e.g. as CI artifacts).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.storage.blob import BlobServiceClient

from localstack.host.app_service_auth import local_session_token
from localstack.host.keys import read_host_keys
from localstack.stack import LocalStack, Ports
from shared.adapters.azure_blob import AzureBlobStore
from shared.adapters.clock import SystemClock
from shared.approvals import ApprovalSubject
from shared.blob_layout import APPROVALS
from shared.events import ApprovalRequested, FlowRegistered
from shared.notifications import LogNotifier
from shared.services.approvals import ApprovalSettings, request_approval
from shared.settings import Settings

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
WIDTH, HEIGHT = 1280, 1000
APPROVER = "alice@contoso.com"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(150),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: run scripts/install-chromium.sh"),
]


# --- a minimal DevTools client: RFC 6455 text frames over a socket, JSON commands matched by id ---------------

class DevTools:
    def __init__(self, ws_url: str, timeout: float = 30) -> None:
        target = urlsplit(ws_url)
        self._sock = socket.create_connection((target.hostname, target.port), timeout=timeout)
        self._buffer = b""
        self._next_id = 0
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall((f"GET {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\nUpgrade: websocket\r\n"
                            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                           .encode())
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._sock.recv(4096)
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self._send(json.dumps({"id": self._next_id, "method": method, "params": params}).encode())
        while True:  # events arrive in between; only our answer matters
            message = json.loads(self._receive())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):  # navigation in progress: the context is being replaced
                if value := self.evaluate(expression):
                    return value
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what or expression}")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre (pressed + released), not element.click()."""
        box = self.evaluate(f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
                            "el.scrollIntoView(); const r = el.getBoundingClientRect();"
                            "return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()")
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=box["x"], y=box["y"])
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)

    def type_into(self, selector: str, text: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        if os.environ.get("REPORT_SCREENSHOT_DIR"):
            shutil.copy(path, Path(os.environ["REPORT_SCREENSHOT_DIR"]) / path.name)
        return path

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send(b"", opcode=0x8)
        self._sock.close()

    def _send(self, payload: bytes, opcode: int = 0x1) -> None:
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)  # clients must mask every frame
        self._sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self._sock.recv(max(65536, count - len(self._buffer)))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def _receive(self) -> str:
        parts: list[bytes] = []
        while True:
            first, second = self._exactly(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._exactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._exactly(8))
            payload = self._exactly(length)  # servers never mask
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the connection")
            if opcode == 0x9:
                self._send(payload, opcode=0xA)
                continue
            parts.append(payload)
            if first & 0x80:
                return b"".join(parts).decode()


@contextlib.contextmanager
def chromium(tmp_path: Path) -> Iterator[DevTools]:
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))  # a fresh profile per launch
    process = subprocess.Popen([
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
        "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}",
        "--remote-debugging-port=0", "about:blank",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    devtools = None
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().count("\n") >= 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        port = int(active.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            pages = [t for t in json.load(answer) if t["type"] == "page"]
        devtools = DevTools(pages[0]["webSocketDebuggerUrl"])
        devtools.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                      mobile=False)
        yield devtools
    finally:
        if devtools is not None:
            devtools.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the stack and an approval to decide -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(state_dir=tmp_path_factory.mktemp("approval-stack"), ports=Ports.free(), with_model=False,
                       extra_settings={"APPROVERS": APPROVER, "APPROVAL_EXPIRY_SCHEDULE": "0 */1 * * * *"})
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def create_approval(stack: LocalStack, storage: BlobServiceClient) -> ApprovalRequested:
    cause = FlowRegistered.create({"use_case": "math_coding", "experiment_id": "exp-20261125-1", "name": "math_coding",
                                   "version": "12", "content_hash": "sha256:" + "3" * 64, "variant": {},
                                   "metrics": {}, "created": True}, correlation_id=f"browser-{uuid.uuid4().hex[:8]}")
    subject = ApprovalSubject(
        use_case="math_coding", flow_name="math_coding", flow_version="12",
        metrics={"accuracy": 0.9, "error_rate": 0.05, "latency_p95_seconds": 1.84, "tokens_per_line": 212.5},
        gate_summary=["accuracy >= 0.8 passed: actual 0.9 (deployed v11: 0.85)",
                      "error_rate <= 0.1 passed: actual 0.05",
                      "best combination: solve=variant_1, extract_answer=variant_0"],
        report_uri="reports/math_coding/exp-20261125-1/summary.html",
    )
    return request_approval(cause, subject, blobs=AzureBlobStore(storage), clock=SystemClock(),
                            settings=Settings(public_base_url=stack.base_url),
                            config=ApprovalSettings(approvers=[APPROVER, "bob@contoso.com"],
                                                    app_service_auth_enabled=True),
                            notifier=LogNotifier())


def test_approver_approves_with_a_comment_in_the_browser(stack: LocalStack, tmp_path: Path) -> None:
    storage = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    event = create_approval(stack, storage)
    key = read_host_keys(stack.storage_connection_string)["default"]
    comment = "Accuracy up 5 points over v11; error rate within budget."

    def stored() -> dict:
        return json.loads(storage.get_blob_client(APPROVALS, f"{event.payload.approval_id}.json")
                          .download_blob().readall())

    with chromium(tmp_path) as browser:
        # The link in the notification, as is: no function key. Not signed in yet, so App Service authentication
        # (emulated by the local host) asks who we are and sends us back to the page.
        assert "code=" not in event.payload.approval_url
        browser.call("Page.navigate", url=event.payload.approval_url)
        browser.wait_for("document.readyState === 'complete' && !!document.getElementById('user')",
                         what="the sign-in page")
        assert browser.evaluate("location.pathname") == "/.auth/login/local"
        browser.type_into("#user", APPROVER)
        browser.click("button[type=submit]")
        browser.wait_for("document.readyState === 'complete' && !!document.getElementById('approve')",
                         what="the approval page with its buttons")
        assert browser.evaluate("document.documentElement.outerHTML.includes(" + json.dumps(key) + ")") is False
        assert browser.evaluate("document.getElementById('viewer').textContent").strip().startswith(
            f"Signed in as {APPROVER}")
        assert browser.evaluate("document.querySelectorAll('#metrics tbody tr').length") == 4
        assert browser.evaluate("document.querySelectorAll('#gate li.pass').length") == 2
        assert browser.wait_for("/left$/.test(document.getElementById('countdown').textContent)",
                                what="the countdown to tick")
        browser.screenshot(tmp_path / "approval-pending.png")

        browser.type_into("#comment", comment)
        browser.click("#approve")
        browser.wait_for("document.getElementById('decision').dataset.status === 'granted'",
                         what="the decision on the page")
        assert browser.evaluate("document.getElementById('status-badge').textContent") == "Approved"
        assert browser.evaluate("document.querySelector('.outcome .who b').textContent") == APPROVER
        assert browser.evaluate("document.querySelector('.outcome .comment').textContent") == comment
        assert browser.evaluate("document.getElementById('approve')") is None  # no second decision from here
        assert browser.evaluate("document.getElementById('error').textContent") == ""
        assert browser.evaluate("[...document.querySelectorAll('#history .action')].map(a => a.textContent)") == [
            "requested", "granted"]
        shot = browser.screenshot(tmp_path / "approval-granted.png")

        # A reload shows the stored decision, rendered by the server this time.
        browser.call("Page.reload")
        browser.wait_for("document.readyState === 'complete' && "
                         "document.getElementById('decision')?.dataset.status === 'granted'", what="reloaded page")

    record = stored()
    assert (record["status"], record["decided_by"], record["comment"]) == ("granted", APPROVER, comment)
    assert record["event_published"]
    assert shot.stat().st_size > 30_000, "a blank page compresses to a few KB"


def test_someone_signed_in_who_is_not_an_approver_sees_why_they_cannot_decide(stack: LocalStack,
                                                                              tmp_path: Path) -> None:
    """(A signed-out visitor never sees the page now: the link sends them to sign in, as the test above shows.)"""
    storage = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    event = create_approval(stack, storage)
    token = local_session_token(stack.storage_connection_string, "mallory@contoso.com")
    with chromium(tmp_path) as browser:
        browser.call("Network.enable")
        browser.call("Network.setCookie", name="AppServiceAuthSession", value=token, url=stack.base_url)
        browser.call("Page.navigate", url=event.payload.approval_url)
        browser.wait_for("document.readyState === 'complete' && !!document.getElementById('approve')",
                         what="the page (a browser's Accept header prefers HTML)")
        assert "not an approver" in browser.evaluate("document.getElementById('viewer').textContent")
        browser.click("#reject")
        message = browser.wait_for("document.getElementById('error').textContent", what="the error message")
        assert "not an approver" in message
        assert browser.evaluate("document.getElementById('reject').disabled") is False
    assert json.loads(storage.get_blob_client(APPROVALS, f"{event.payload.approval_id}.json")
                      .download_blob().readall())["status"] == "pending"
