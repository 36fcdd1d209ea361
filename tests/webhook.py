"""A real HTTP server on 127.0.0.1 standing in for a Teams/Slack-style incoming webhook: it keeps each JSON body
posted to it and answers with scripted status codes (200 once the script runs out)."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any


class Webhook:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[dict[str, Any]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                status = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # The path carries a token, as real webhook URLs do: tests check it is never logged.
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0/B0/secret-token"

    def __enter__(self) -> Webhook:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
