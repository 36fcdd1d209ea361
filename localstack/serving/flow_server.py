"""Serve one flow version on a 127.0.0.1 port with promptflow's own serving app, in a subprocess.

One process per deployment, like one Azure ML deployment: each version gets its own Python process (its own tool
code and module state), and stopping it means killing its process group. The child runs
`promptflow.core._serving.app.create_app` (the app behind `pf flow serve`: POST /score, GET /health, /swagger.json)
under waitress, the WSGI server promptflow-devkit ships for the same purpose.

Connections come from environment variables, never from a promptflow connection store or keyring. The parent hands
the child *declarations* in GENAIOPS_SERVING_CONNECTIONS: the experiment.yaml connection with every `${placeholder}`
(and every field a `<CONNECTION>_<FIELD>` setting overrides) turned into promptflow's own `${env:VAR}` reference
(`${api_key}` in connection `aoai` -> `${env:AOAI_API_KEY}`, the project's secret naming), and the values only in
the child's environment. promptflow resolves the references when the executor starts, so a missing variable stops
the server at start-up, not at the first request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from localstack.stack import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
CONNECTIONS_ENV = "GENAIOPS_SERVING_CONNECTIONS"
_ENV_REFERENCE = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
# What a served flow must not inherit: the app's own storage/bus credentials and telemetry sink.
_WITHHELD = ("GenAIOpsStorage", "AzureWebJobsStorage", "ServiceBusConnection", "APPLICATIONINSIGHTS_CONNECTION_STRING")


class ServingError(RuntimeError):
    """A server that could not start, did not become ready, or was given an unusable configuration."""


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def pid_alive(pid: int) -> bool:
    """Whether the process runs; a zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust the signal
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


# --- the process, from the parent's side -------------------------------------------------------------------------


class ServerProcess:
    """A child server in its own session (so stopping it takes every process it started), ready when `health_path`
    answers 200. Also wraps a server started by an earlier app instance (`adopt`), known only by pid and port."""

    def __init__(self, name: str, command: list[str], port: int, *, env: Mapping[str, str], log_file: Path | None,
                 health_path: str = "/health", cwd: Path = ROOT) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.env = dict(env)
        self.log_file = log_file
        self.health_path = health_path
        self.cwd = cwd
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def adopt(cls, name: str, pid: int, port: int, health_path: str = "/health") -> ServerProcess | None:
        """The server an earlier app instance started, if its process lives and answers; None otherwise."""
        server = cls(name, [], port, env={}, log_file=None, health_path=health_path)
        if not pid_alive(pid) or not http_ok(server.url + health_path):
            return None
        server.pid = pid
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Spawn without waiting (start several, then `wait_ready` each: their start-ups overlap)."""
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab") if self.log_file is not None else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if not isinstance(log, int):  # DEVNULL is a constant, not a file
                log.close()  # the child holds its own descriptor
        self.pid = self._process.pid
        return self

    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def ready(self) -> bool:
        return self.running() and http_ok(self.url + self.health_path, timeout=1.0)

    def wait_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if not self.running():
                code = self._process.returncode if self._process is not None else "?"
                raise ServingError(f"{self.name} exited with code {code} before it was ready:\n{self.log_tail()}")
            if http_ok(self.url + self.health_path, timeout=1.0):
                return
            time.sleep(0.2)
        self.stop()
        raise ServingError(f"{self.name} was not ready on {self.url} within {timeout_seconds:g} s:\n{self.log_tail()}")

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM the whole process group, SIGKILL after the grace period; reap our own child (no zombies)."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        if self._process is not None:
            try:
                self._process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self._process.wait()
        else:
            deadline = time.monotonic() + grace_seconds
            while pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        self.pid = None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_file is None or not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


# --- connections -------------------------------------------------------------------------------------------------


def served_connections(connections: Sequence[Any], env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """experiment.yaml connections (shared.experiments.config.ConnectionConfig) -> declarations for the child:
    `{"name", "type", "value"}` with placeholders, and fields a setting in `env` overrides (AOAI_API_BASE for a
    literal api_base), as `${env:VAR}` references. Holds no secret values."""
    from shared.experiments.connections import field_variable

    declarations = []
    for connection in connections:
        if connection.connection_type is None:
            raise ServingError(
                f"connection {connection.name!r} names no connection_type: a served flow builds its connections "
                "from their declaration in experiment.yaml (there is no connection store to look it up in)"
            )
        value = {}
        for field, written in connection.fields.items():
            variable = field_variable(connection.name, field, written, env or {})
            value[field] = written if variable is None else f"${{env:{variable}}}"
        declarations.append({"name": connection.name, "type": str(connection.connection_type), "value": value})
    return declarations


def missing_variables(declarations: Sequence[Mapping[str, Any]], env: Mapping[str, str]) -> list[str]:
    """The `${env:VAR}` references no variable in `env` answers, e.g. ['AOAI_API_KEY']."""
    wanted = {m.group(1) for d in declarations for v in d["value"].values() if (m := _ENV_REFERENCE.match(str(v)))}
    return sorted(name for name in wanted if name not in env)


def _build_connections(declarations: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The child's connection provider: promptflow connection objects from the declarations (references kept;
    the serving app resolves them from the environment)."""
    import promptflow.connections as pf_connections

    built = []
    for declaration in declarations:
        kind = getattr(pf_connections, declaration["type"], None)
        if kind is None:
            raise ServingError(f"connection {declaration['name']!r}: unknown type {declaration['type']!r}")
        value = dict(declaration["value"])
        if declaration["type"] == "CustomConnection":
            from shared.experiments.config import is_secret_field

            connection = kind(name=declaration["name"], secrets={k: v for k, v in value.items() if is_secret_field(k)},
                              configs={k: v for k, v in value.items() if not is_secret_field(k)})
        else:
            connection = kind(name=declaration["name"], **value)
        # promptflow 1.18's invoker calls `to_execution_connection_dict()` on what a callable provider returns, a
        # name its connection classes only have with a leading underscore.
        connection.to_execution_connection_dict = connection._to_execution_connection_dict
        built.append(connection)
    return built


# --- the flow server ---------------------------------------------------------------------------------------------


class FlowServer(ServerProcess):
    """One flow folder served on 127.0.0.1:`port`."""

    def __init__(self, flow_dir: Path, *, name: str = "flow-server", port: int | None = None,
                 connections: Sequence[Any] = (), environment: Mapping[str, str] | None = None,
                 log_file: Path | None = None, threads: int = 8) -> None:
        self.flow_dir = Path(flow_dir).resolve()
        base = {k: v for k, v in (os.environ if environment is None else environment).items() if k not in _WITHHELD}
        declarations = served_connections(connections, base)
        env = {**base, CONNECTIONS_ENV: json.dumps(declarations), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        missing = missing_variables(declarations, env)
        if missing:
            raise ServingError(f"{name}: connection variable(s) not set: {', '.join(missing)} (set them in the "
                               "app settings or the deployment's environment_variables)")
        port = port or free_port()
        command = [sys.executable, "-m", "localstack.serving.flow_server", "--flow-dir", str(self.flow_dir),
                   "--port", str(port), "--threads", str(threads)]
        super().__init__(name, command, port, env=env, log_file=log_file)

    @property
    def scoring_url(self) -> str:
        return self.url + "/score"


def start_all(servers: Sequence[ServerProcess], timeout_seconds: float) -> None:
    """Start every server, then wait for each: the few seconds of importing promptflow overlap. All or nothing."""
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready(timeout_seconds)
    except BaseException:
        for server in servers:
            server.stop()
        raise


# --- the child ---------------------------------------------------------------------------------------------------


def _serve(flow_dir: Path, port: int, threads: int, connections: Callable[[], list[Any]]) -> None:
    from shared.adapters.promptflow_runner import quiet_promptflow

    quiet_promptflow()
    os.environ["PROMPTFLOW_PROJECT_PATH"] = str(flow_dir)  # where the serving app's default extension looks
    os.chdir(flow_dir)  # tools open files relative to the flow, as under `pf flow serve`

    import waitress
    from flask import Flask
    from promptflow.core._serving.app import create_app

    app = create_app(connection_provider=connections)  # the flask engine: a WSGI app waitress serves
    if not isinstance(app, Flask):
        raise TypeError(f"promptflow's serving app is a {type(app).__name__}, not the Flask app waitress serves")
    waitress.serve(app, host="127.0.0.1", port=port, threads=threads, ident="genaiops-flow-server",
                   _quiet=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localstack.serving.flow_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flow-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    declarations = json.loads(os.environ.get(CONNECTIONS_ENV) or "[]")
    # SIGTERM -> SystemExit, so waitress closes its sockets on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _serve(args.flow_dir.resolve(), args.port, args.threads, lambda: _build_connections(declarations))


if __name__ == "__main__":
    main()
