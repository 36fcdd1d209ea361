"""The A/B router as a process of its own, and the admin client the local deployer drives it with."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from localstack.serving.ab_router import PRODUCTION_LOG_ENV, UPSTREAM_TIMEOUT_SECONDS, RoutingError
from localstack.serving.flow_server import ROOT, ServerProcess, ServingError, free_port


class RouterProcess(ServerProcess):
    """The router in its own process: endpoints outlive an app restart, like real endpoints outlive the app."""

    def __init__(self, endpoint: str, telemetry_file: Path, *, port: int | None = None, seed: int | None = None,
                 log_file: Path | None = None, upstream_timeout_seconds: float = UPSTREAM_TIMEOUT_SECONDS,
                 use_case: str | None = None, production_log_connection: str | None = None,
                 mask_fields: Sequence[str] = ()) -> None:
        """`production_log_connection`: the storage the production log goes to (with `use_case`); None: none.
        `mask_fields`: what the production log masks (the use case's `monitoring.mask_fields`)."""
        port = port or free_port()
        command = [sys.executable, "-m", "localstack.serving.ab_router", "--endpoint", endpoint, "--port", str(port),
                   "--telemetry", str(telemetry_file), "--upstream-timeout", str(upstream_timeout_seconds)]
        if seed is not None:
            command += ["--seed", str(seed)]
        # Nothing of the app's environment: the router must not see the app's secrets — only the storage it logs
        # to, passed in its environment (never on the command line, which `ps` shows).
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
                       "PYTHONUNBUFFERED": "1"}
        if use_case and production_log_connection:
            command += ["--use-case", use_case, *(f"--mask-field={name}" for name in mask_fields)]
            environment[PRODUCTION_LOG_ENV] = production_log_connection
        super().__init__(f"router {endpoint}", command, port, env=environment, log_file=log_file)


class RouterClient:
    """The admin API of a router at `url`."""

    def __init__(self, url: str, timeout_seconds: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds

    def register(self, deployment: str, url: str) -> None:
        self._call("PUT", f"/deployments/{deployment}", {"url": url})

    def unregister(self, deployment: str) -> None:
        self._call("DELETE", f"/deployments/{deployment}")

    def deployments(self) -> dict[str, str]:
        return dict(self._call("GET", "/deployments"))

    def traffic(self) -> dict[str, int]:
        return {name: int(share) for name, share in self._call("GET", "/traffic").items()}

    def set_traffic(self, traffic: Mapping[str, int]) -> dict[str, int]:
        return {name: int(share) for name, share in self._call("PUT", "/traffic", dict(traffic)).items()}

    def _call(self, method: str, path: str, document: Any = None) -> Any:
        data = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as refusal:
            with refusal:
                detail = refusal.read().decode("utf-8", errors="replace")
            raise RoutingError(refusal.code, f"router {method} {path}: {detail}") from None
        except OSError as failure:
            raise ServingError(f"router at {self.url} unreachable: {failure}") from None
