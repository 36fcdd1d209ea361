"""The Docker build context, for real: promptflow's `pf flow build --format docker` on the math_coding flow with a
variant materialized. No Docker here, so the image is not built; instead the context is checked the way Docker and
the container would use it — the Dockerfile parses instruction by instruction and copies only what exists, the
flow loads from the context, and the container's own start steps (create the connection from its YAML, start
promptflow's serving app in /flow) answer /health and /score, with the connection's key and endpoint taken from
environment variables and the LLM a scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from localstack.llm.scripted import ScriptedLLM, scripted_llm
from shared.deployment.container_build import (
    ContainerBuildError,
    ContainerContext,
    build_container_context,
    image_reference,
)
from shared.deployment.port import WorkspaceConnection
from shared.experiments.variants import discover_variants, expand, materialize

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "flows" / "math_coding" / "flows" / "standard"
SENTINEL_KEY = "sk-sentinel-must-not-leak-0123456789"
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}
AOAI = WorkspaceConnection(name="aoai", connection_type="AzureOpenAIConnection",
                           values={"api_version": "2024-02-01", "api_type": "azure"},
                           settings={"api_base": "AOAI_API_BASE", "api_key": "AOAI_API_KEY"})


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    combination = expand(discover_variants(FLOW))[0]
    return materialize(FLOW, combination, tmp_path_factory.mktemp("variant") / "standard")


@pytest.fixture(scope="module")
def context(materialized: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerContext]:
    # A real secret in this process's environment must not find its way into the context.
    previous = os.environ.get("AOAI_API_KEY")
    os.environ["AOAI_API_KEY"] = SENTINEL_KEY
    try:
        yield build_container_context(materialized, flow_name="math_coding", version="3",
                                      image_repository="acrgenaiops.azurecr.io/flows",
                                      output_dir=tmp_path_factory.mktemp("build") / "context", connections=[AOAI])
    finally:
        if previous is None:
            os.environ.pop("AOAI_API_KEY", None)
        else:
            os.environ["AOAI_API_KEY"] = previous


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: comments and blank lines skipped, continuations joined."""
    parsed: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical, pending = pending + line, ""
        keyword, _, arguments = logical.partition(" ")
        parsed.append((keyword, arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return parsed


def test_the_context_has_the_dockerfile_the_flow_and_its_serving_scripts(context: ContainerContext) -> None:
    root = context.context_dir
    for relative in ("Dockerfile", "start.sh", "settings.json", "build.json", "runit/promptflow-serve/run",
                     "connections/aoai.yaml", "flow/flow.dag.yaml", "flow/extract_answer.py",
                     "flow/requirements.txt", "flow/.promptflow/flow.tools.json"):
        assert (root / relative).is_file(), relative
    assert context.flow_dir == root / "flow"
    assert {p.name for p in context.flow_dir.glob("*.jinja2")} == {"solve_direct.jinja2", "solve_stepwise.jinja2"}


def test_the_dockerfile_parses_as_valid_instructions(context: ContainerContext) -> None:
    parsed = instructions(context.context_dir / "Dockerfile")
    keywords = [keyword for keyword, _ in parsed]
    assert keywords[0] == "FROM"
    assert set(keywords) <= INSTRUCTIONS, set(keywords) - INSTRUCTIONS
    assert all(keyword.isupper() for keyword in keywords)
    assert ("EXPOSE", "8080") in parsed
    cmd = [json.loads(arguments) for keyword, arguments in parsed if keyword == "CMD"]
    assert cmd == [["bash", "./start.sh"]]


def test_everything_the_dockerfile_copies_is_in_the_context(context: ContainerContext) -> None:
    copies = [arguments.split() for keyword, arguments in instructions(context.context_dir / "Dockerfile")
              if keyword == "COPY"]
    assert copies
    for *sources, _destination in copies:
        for source in sources:
            assert (context.context_dir / source).exists(), source


def test_the_image_is_named_after_the_flow_and_version(context: ContainerContext) -> None:
    assert context.image == "acrgenaiops.azurecr.io/flows:math_coding-3"
    build = json.loads((context.context_dir / "build.json").read_text())
    assert build["image"] == context.image
    assert build["required_settings"] == context.required_settings == ["AOAI_API_BASE", "AOAI_API_KEY"]


def test_the_variant_is_baked_in(context: ContainerContext) -> None:
    dag = yaml.safe_load((context.flow_dir / "flow.dag.yaml").read_text())
    assert "node_variants" not in dag
    assert all("use_variants" not in node for node in dag["nodes"])
    solve = next(node for node in dag["nodes"] if node["name"] == "solve")
    assert solve["source"]["path"] == "solve_direct.jinja2"  # variant_0, the default combination


def test_no_secret_reaches_the_context_only_environment_references(context: ContainerContext) -> None:
    connection = yaml.safe_load((context.context_dir / "connections" / "aoai.yaml").read_text())
    assert connection["api_key"] == "${env:AOAI_API_KEY}"
    assert connection["api_base"] == "${env:AOAI_API_BASE}"  # per environment, from app settings
    assert connection["api_version"] == "2024-02-01"
    assert json.loads((context.context_dir / "settings.json").read_text()) == {"AOAI_API_KEY": ""}
    for path in context.context_dir.rglob("*"):
        if path.is_file():
            assert SENTINEL_KEY.encode() not in path.read_bytes(), path


def test_promptflow_is_pinned_to_the_version_the_flow_was_evaluated_with(context: ContainerContext) -> None:
    from importlib.metadata import version

    requirements = (context.flow_dir / "requirements.txt").read_text().splitlines()
    assert requirements == ["promptflow-tools==1.6.1", f"promptflow=={version('promptflow')}"]
    assert context.promptflow_version == version("promptflow")


def test_the_flow_loads_from_the_context(context: ContainerContext) -> None:
    from promptflow.client import load_flow
    from promptflow.executor import FlowExecutor

    flow = load_flow(context.flow_dir)
    assert Path(flow.path).name == "flow.dag.yaml"
    dummy = {"aoai": {"type": "AzureOpenAIConnection",
                      "value": {"api_key": "dummy", "api_base": "http://127.0.0.1:9", "api_type": "azure",
                                "api_version": "2024-02-01"}}}
    executor = FlowExecutor.create(context.flow_dir / "flow.dag.yaml", dummy, context.flow_dir, raise_ex=True)
    assert {node.name for node in executor._flow.nodes} == {"solve", "extract_answer"}


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with scripted_llm() as server:
        yield server


def test_the_containers_start_steps_serve_the_flow_with_settings_from_the_environment(
        context: ContainerContext, llm: ScriptedLLM, tmp_path: Path) -> None:
    """What runit's `run` does in the container: `pf connection create --file /connections/...`, then promptflow's
    serving app in /flow. A throwaway HOME keeps the connection store out of the user's."""
    host, port = llm.base_url.removeprefix("http://").removesuffix("/v1").split(":")
    env = {**os.environ, "HOME": str(tmp_path), "USERPROFILE": str(tmp_path), "XDG_DATA_HOME": str(tmp_path),
           "PF_HOME_DIRECTORY": str(tmp_path / ".promptflow"), "NO_PROXY": "127.0.0.1,localhost",
           "AOAI_API_KEY": "key-from-app-settings", "AOAI_API_BASE": f"http://{host}:{port}",
           "PF_DISABLE_TRACING": "true", "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"}
    pf = Path(sys.executable).parent / "pf"
    created = subprocess.run([str(pf), "connection", "create", "--file",
                              str(context.context_dir / "connections" / "aoai.yaml")],
                             env=env, capture_output=True, text=True, timeout=120, check=False)
    assert created.returncode == 0, created.stderr[-2000:]

    serve = (
        "import json\n"
        "from promptflow.core._serving.app import create_app\n"
        "client = create_app().test_client()\n"
        "health = client.get('/health')\n"
        "score = client.post('/score', json={'question': 'What is 12 * 7?'})\n"
        "print(json.dumps({'health': health.status_code, 'score': score.status_code,"
        " 'body': score.get_json()}))\n"
    )
    served = subprocess.run([sys.executable, "-c", serve], env=env, cwd=context.flow_dir, capture_output=True,
                            text=True, timeout=120, check=False)
    assert served.returncode == 0, served.stderr[-2000:]
    answer = json.loads(served.stdout.strip().splitlines()[-1])
    assert answer["health"] == 200
    assert answer["score"] == 200, answer
    assert answer["body"]["answer"] == "84"
    assert llm.calls >= 1


def test_a_rebuild_replaces_the_context_and_needs_only_the_connections_the_flow_uses(materialized: Path,
                                                                                    tmp_path: Path) -> None:
    output = tmp_path / "context"
    output.mkdir()
    (output / "stale.txt").write_text("from an earlier build")
    unused = WorkspaceConnection(name="other_llm", connection_type="OpenAIConnection",
                                 settings={"api_key": "OTHER_LLM_API_KEY"})
    built = build_container_context(materialized, flow_name="math_coding", version="4",
                                    image_repository="acrgenaiops.azurecr.io/flows", output_dir=output,
                                    connections=[AOAI, unused])
    assert not (output / "stale.txt").exists()
    assert built.image.endswith(":math_coding-4")
    assert [path.name for path in (output / "connections").iterdir()] == ["aoai.yaml"]
    assert built.required_settings == ["AOAI_API_BASE", "AOAI_API_KEY"]


def test_a_connection_the_flow_uses_but_the_experiment_does_not_declare_fails_the_build(
        materialized: Path, tmp_path: Path) -> None:
    with pytest.raises(ContainerBuildError, match="aoai"):
        build_container_context(materialized, flow_name="math_coding", version="3",
                                image_repository="acrgenaiops.azurecr.io/flows", output_dir=tmp_path / "c")


def test_inputs_that_cannot_work_are_refused_before_building(materialized: Path) -> None:
    literal_key = WorkspaceConnection(name="aoai", connection_type="AzureOpenAIConnection",
                                      values={"api_key": SENTINEL_KEY})
    with pytest.raises(ContainerBuildError, match="secret must come from a setting"):
        build_container_context(materialized, flow_name="math_coding", version="3",
                                output_dir=materialized.parent / "c", connections=[literal_key])
    with pytest.raises(ContainerBuildError, match="overlaps"):
        build_container_context(materialized, flow_name="math_coding", version="3",
                                image_repository="acrgenaiops.azurecr.io/flows", output_dir=materialized / "out",
                                connections=[AOAI])
    with pytest.raises(ContainerBuildError, match="image tag"):
        image_reference("acrgenaiops.azurecr.io/flows", "math coding", "3")
