"""The Docker build context of a flow: what target `container` deploys (container_deployer.py: Azure ML builds it
into the workspace's registry and serves it on a managed online endpoint), and what any other Docker host can run.

promptflow's own `pf flow build --format docker` writes it: the flow (variants resolved, tools metadata
generated), a Dockerfile, the runit/start scripts that serve the flow with gunicorn on port 8080 (/score,
/health), one YAML file per connection the flow uses, and settings.json listing the environment variables the
container needs. We return that folder and, when asked for one, the image reference `<repository>:<flow>-<version>`.

No secret reaches the context. `pf flow build` exports connections from a promptflow connection store; we give
it a private, throwaway store (a temporary HOME and PF_HOME_DIRECTORY, in a child process because promptflow
reads them once, at import) holding the flow's connections with every field that comes from a setting written as
an environment reference `${env:<SETTING>}` — the same setting names the experiments read (AOAI_API_KEY,
AOAI_API_BASE, ...). promptflow's serving resolves those references when the container starts, and also lets
`<CONNECTION>_<FIELD>` override any connection field, so the deployment's environment configures the image.

The image's promptflow is pinned to the version here (the one the flow was evaluated with): the generated
Dockerfile installs the flow's requirements and then an unpinned `promptflow`, so the pin goes into the context's
copy of the flow's requirements. Its base image is the flow's `environment.image` (flow.dag.yaml) when set — pin
it there — else promptflow's default.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from shared.deployment.port import DeploymentError, WorkspaceConnection
from shared.experiments.config import is_secret_field
from shared.redaction import redact_text

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAMES_PROMPTFLOW = re.compile(r"^\s*promptflow\s*(\[[^\]]*\])?\s*([<>=!~;@]|$)", re.IGNORECASE)
BUILD_TIMEOUT_SECONDS = 300


class ContainerBuildError(DeploymentError):
    pass


class ContainerContext(BaseModel):
    model_config = ConfigDict(frozen=True)

    context_dir: Path = Field(description="docker build <context_dir>: Dockerfile at its root")
    image: str | None = Field(description="<repository>:<flow>-<version>, when a repository was given")
    flow_dir: Path = Field(description="The flow inside the context (served from /flow in the image)")
    required_settings: list[str] = Field(description="Environment variables the container needs (names only)")
    promptflow_version: str


def image_reference(image_repository: str, flow_name: str, version: str) -> str:
    tag = f"{flow_name}-{version}"
    if not _TAG.match(tag):
        raise ContainerBuildError(f"{tag!r} is not a valid image tag (letters, digits, '_', '.', '-'; at most 128)")
    return f"{image_repository}:{tag}"


def build_container_context(flow_dir: Path, *, flow_name: str, version: str, output_dir: Path,
                            connections: Sequence[WorkspaceConnection] = (), image_repository: str | None = None,
                            variant: str | None = None,
                            timeout_seconds: float = BUILD_TIMEOUT_SECONDS) -> ContainerContext:
    """Write the Docker build context of `flow_dir` into `output_dir` (replaced if it exists).

    `connections` are the experiment's, as a deployment sees them (fields from settings name the setting: no value
    is read); every connection the flow uses must be among them. `variant` ("node.variant_id") is only for a flow
    whose variants are not baked in yet.
    """
    flow_dir, output_dir = Path(flow_dir).resolve(), Path(output_dir).resolve()
    if output_dir == flow_dir or flow_dir in output_dir.parents or output_dir in flow_dir.parents:
        raise ContainerBuildError(f"output {output_dir} overlaps the flow {flow_dir}; write it somewhere else")
    image = image_reference(image_repository, flow_name, version) if image_repository else None
    specs, variables = _connection_specs(connections)
    if output_dir.exists():
        shutil.rmtree(output_dir)  # a redelivered event builds from scratch
    output_dir.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="genaiops-pf-home-") as home:
        _run_build(Path(home), {"flow": str(flow_dir), "output": str(output_dir), "variant": variant,
                                "connections": specs}, timeout_seconds)

    if not (output_dir / "Dockerfile").is_file():
        raise ContainerBuildError(f"pf flow build wrote no Dockerfile into {output_dir}")
    settings = json.loads((output_dir / "settings.json").read_text(encoding="utf-8"))
    pf_version = installed_version("promptflow")
    _pin_promptflow(output_dir / "flow", pf_version)
    # Only the connections the flow uses were exported; their references are what the container needs.
    used = {path.stem for path in (output_dir / "connections").glob("*.yaml")}
    required = sorted(set(settings).union(*(variables.get(name, ()) for name in used)))
    (output_dir / "build.json").write_text(json.dumps({
        "image": image, "flow": flow_name, "version": version, "promptflow": pf_version,
        "required_settings": required,
    }, indent=2) + "\n", encoding="utf-8")
    return ContainerContext(context_dir=output_dir, image=image, flow_dir=output_dir / "flow",
                            required_settings=required, promptflow_version=pf_version)


def _connection_specs(
        connections: Sequence[WorkspaceConnection]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Connections for the throwaway store, every field that comes from a setting as `${env:SETTING}`; and the
    SETTINGs per connection."""
    specs: list[dict[str, Any]] = []
    variables: dict[str, list[str]] = {}
    for connection in connections:
        literal_secrets = sorted(field for field in connection.values if is_secret_field(field))
        if literal_secrets:
            raise ContainerBuildError(f"connection {connection.name!r}: {', '.join(literal_secrets)} written as a "
                                      "value; a secret must come from a setting")
        values: dict[str, str] = dict(connection.values)
        secrets: dict[str, str] = {}
        for field, setting in connection.settings.items():
            variables.setdefault(connection.name, []).append(setting)
            (secrets if is_secret_field(field) else values)[field] = f"${{env:{setting}}}"
        specs.append({"name": connection.name, "type": connection.connection_type, "values": values,
                      "secrets": secrets})
    return specs, variables


def _run_build(home: Path, job: dict[str, Any], timeout_seconds: float) -> None:
    # promptflow wants its store inside the user's home (the Dockerfile template takes its path relative to it),
    # so the child gets a throwaway home as a whole.
    pf_home = home / ".promptflow"
    pf_home.mkdir()
    # Telemetry off: `pf config set telemetry.enabled=false` writes exactly this file.
    (pf_home / "pf.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}}), encoding="utf-8")
    env = {
        **os.environ,
        "HOME": str(home),
        "USERPROFILE": str(home),
        "PF_HOME_DIRECTORY": str(pf_home),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PF_DISABLE_TRACING": "true",
        "PF_LOGGING_LEVEL": "WARNING",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    }
    try:
        done = subprocess.run(  # our own interpreter and module; the job goes on stdin
            [sys.executable, "-m", "shared.deployment.container_build"], input=json.dumps(job), env=env,
            cwd=str(home), capture_output=True, text=True, timeout=timeout_seconds, check=False,
        )
    except subprocess.TimeoutExpired:
        raise ContainerBuildError(f"pf flow build did not finish in {timeout_seconds:.0f} s") from None
    if done.returncode != 0:
        tail = redact_text((done.stderr or done.stdout or "").strip())[-3000:]
        raise ContainerBuildError(f"pf flow build failed (exit {done.returncode}):\n{tail}")


def _pin_promptflow(flow_dir: Path, pf_version: str) -> None:
    dag = flow_dir / "flow.dag.yaml"
    name = "requirements.txt"
    if dag.is_file():
        environment = (yaml.safe_load(dag.read_text(encoding="utf-8")) or {}).get("environment") or {}
        name = str(environment.get("python_requirements_txt") or name)
    requirements = flow_dir / name
    if not requirements.is_file():
        return  # the Dockerfile then installs promptflow=={the build's version} itself
    text = requirements.read_text(encoding="utf-8")
    if any(_NAMES_PROMPTFLOW.match(line) for line in text.splitlines()):
        return  # the flow pins it itself
    separator = "" if not text or text.endswith("\n") else "\n"
    requirements.write_text(f"{text}{separator}promptflow=={pf_version}\n", encoding="utf-8")


def _build_in_this_process() -> None:
    """The child: create the connections in the throwaway store, then `pf flow build --format docker`."""
    job = json.load(sys.stdin)
    from cryptography.fernet import Fernet
    from promptflow import connections as pf_connections
    from promptflow._sdk._utilities.general_utils import use_customized_encryption_key
    from promptflow.client import PFClient

    client = PFClient()
    # A throwaway key: the store is deleted after the build, and no OS keyring is needed (none in a Function).
    with use_customized_encryption_key(Fernet.generate_key().decode()):
        for spec in job["connections"]:
            kind = getattr(pf_connections, spec["type"])
            if spec["type"] == "CustomConnection":
                connection = kind(name=spec["name"], configs=spec["values"], secrets=spec["secrets"])
            else:
                connection = kind(name=spec["name"], **spec["values"], **spec["secrets"])
            client.connections.create_or_update(connection)
        client.flows.build(flow=job["flow"], output=job["output"], format="docker", variant=job["variant"])


if __name__ == "__main__":
    _build_in_this_process()
