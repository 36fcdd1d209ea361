"""The local deployment target for real: flow servers (promptflow's serving app, one process per version) behind
an A/B router, state in Azurite, the scripted LLM behind the flows' `aoai` connection.

Two variant combinations of math_coding are deployed in parallel as `blue` and `green` with a 70/30 split; a seeded
router makes the measured split deterministic. Broken versions (a python node that raises, a connection pointing
at a dead port) fail their smoke test and are rolled back."""

from __future__ import annotations

import http.client
import json
import os
import signal
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from localstack.deployment.local_deployer import LocalDeployer, endpoint_state_name, experiment_connections
from localstack.deployment.telemetry import RouterTelemetry
from localstack.llm.scripted import ScriptedLLM, scripted_llm
from localstack.serving.ab_router import (
    MAX_BODY_BYTES,
    ABRouter,
    JsonlTelemetry,
    RoutingError,
    read_telemetry,
)
from localstack.serving.flow_server import (
    CONNECTIONS_ENV,
    FlowServer,
    ServingError,
    free_port,
    missing_variables,
    pid_alive,
    served_connections,
)
from localstack.serving.router_admin import RouterClient
from shared.adapters.clock import SystemClock
from shared.blob_layout import DEPLOYMENTS, REPORTS, smoke_report_name
from shared.deployment.port import (
    DEPLOYMENT_HEADER,
    DeploymentConfig,
    DeploymentError,
    DeploymentRequest,
    InvalidTraffic,
    ScoringTarget,
    SmokeConfig,
    plan_traffic,
    prior_deployment,
    rollback_traffic,
)
from shared.experiments.config import load_experiment
from shared.experiments.variants import Combination, discover_variants, expand, materialize
from shared.feedback.ab_report import report_endpoint
from shared.feedback.endpoints import KnownEndpoint
from shared.feedback.submissions import FeedbackRejected, FeedbackService, TokenBucket
from shared.ports import BlobStore
from shared.smoke.tester import (
    HttpAnswer,
    SmokeRequest,
    SmokeTester,
    expected_outputs,
    output_problems,
    smoke_test_deployment,
)
from tests.fakes.memory import ManualClock
from tests.feedback_endpoints import Directory, submit

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]
USE_CASE = "math_coding"
USE_CASE_DIR = ROOT / "flows" / USE_CASE
FLOW = USE_CASE_DIR / "flows" / "standard"
SEED = 20260101
REQUESTS = 300


@dataclass
class Endpoint:
    name: str
    deployer: LocalDeployer
    versions: dict[str, Path]
    llm: ScriptedLLM


def post(url: str, body: dict[str, object], headers: dict[str, str] | None = None) -> tuple[int, dict[str, str],
                                                                                        bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as answer:
        with answer:
            return answer.code, {k.lower(): v for k, v in answer.headers.items()}, answer.read()


def request_for(name: str, flow_dir: Path, endpoint: str, version: str, **config: object) -> DeploymentRequest:
    return DeploymentRequest(use_case=USE_CASE, flow_name=USE_CASE, flow_version=version, flow_dir=flow_dir,
                             deployment_name=name,
                             config=DeploymentConfig(endpoint_name=endpoint, request_timeout_ms=30_000, **config))


@pytest.fixture(scope="module")
def endpoint(blob_store: BlobStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """`blue` (direct prompt, last number) and `green` (step-by-step prompt, first number), started in parallel."""
    work = tmp_path_factory.mktemp("local-deployment")
    combinations = expand(discover_variants(FLOW))
    chosen = {"blue": combinations[0],
              "green": Combination(variant={"solve": "variant_1", "extract_answer": "variant_1"})}
    versions = {name: materialize(FLOW, combination, work / "flows" / name) for name, combination in chosen.items()}
    with scripted_llm() as llm:
        deployer = LocalDeployer(
            blob_store, ManualClock(), work_dir=work / "deployer",
            connections_for=experiment_connections(ROOT / "flows", "local"),
            # The key is a secret: it comes from the app's settings, never from experiment.yaml.
            secrets_env={**os.environ, "AOAI_API_KEY": "scripted-key"}, router_seed=SEED,
        )
        name = f"math-{os.urandom(4).hex()}"
        # The base URL is a plain setting, so the deployment's environment_variables may carry it.
        requests = [request_for(deployment, flow_dir, name, str(number),
                                environment_variables={"AOAI_BASE_URL": llm.base_url})
                    for number, (deployment, flow_dir) in enumerate(versions.items(), start=1)]
        try:
            with ThreadPoolExecutor(2) as pool:
                deployed = list(pool.map(deployer.deploy, requests))
            assert [d.traffic.get(d.deployment) for d in deployed] == [0, 0]  # new deployments get no traffic
            handle = Endpoint(name, deployer, versions, llm)
            yield handle
            deployer = handle.deployer
        finally:
            pids = state_pids(blob_store, name)
            deployer.delete_endpoint(name)
            assert not [pid for pid in pids if pid_alive(pid)], "processes left behind"


def _state(blob_store: BlobStore, endpoint: str) -> dict[str, Any]:
    return dict(json.loads(blob_store.read(DEPLOYMENTS, endpoint_state_name(USE_CASE, endpoint))[0]))


def state_pids(blob_store: BlobStore, endpoint: str) -> list[int]:
    try:
        state = _state(blob_store, endpoint)
    except LookupError:
        return []
    return [int(state["router_pid"]), *(int(d["pid"]) for d in state["deployments"].values())]


def test_split_is_honoured_over_many_requests(endpoint: Endpoint) -> None:
    deployer = endpoint.deployer
    assert deployer.begin_set_traffic(endpoint.name, {"blue": 70, "green": 30}).traffic == {"blue": 70, "green": 30}
    target = deployer.scoring_request(endpoint.name)

    def score(n: int) -> tuple[int, dict[str, str], bytes]:
        return post(target.url, {"question": f"What is {n} + {n + 1}?"}, target.http_headers())

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(score, range(REQUESTS)))

    assert {status for status, _, _ in answers} == {200}
    served = Counter(headers["x-served-by"] for _, headers, _ in answers)
    share = served["blue"] / REQUESTS
    print(f"measured split over {REQUESTS} requests: {dict(served)} -> blue {share:.3f}")
    assert abs(share - 0.70) <= 0.04
    assert all(json.loads(body)["answer"] == str(2 * n + 1) for n, (_, _, body) in enumerate(answers))
    request_ids = {headers["x-request-id"] for _, headers, _ in answers}
    assert len(request_ids) == REQUESTS
    # Every request is in the router's telemetry, attributed as the caller was told.
    records = [r for r in read_telemetry(deployer.telemetry_file(endpoint.name)) if r.request_id in request_ids]
    assert Counter(r.deployment for r in records) == served
    assert all(r.status == 200 and not r.pinned and r.latency_ms > 0 for r in records)


def test_ab_report_from_router_telemetry_and_feedback(endpoint: Endpoint, blob_store: BlobStore) -> None:
    """Users rate what they got: blue's answers well, green's poorly; the report tells them apart."""
    requests = read_telemetry(endpoint.deployer.telemetry_file(endpoint.name))
    routed = [r for r in requests if not r.pinned and r.status == 200]
    service, clock = FeedbackService(TokenBucket(rate_per_minute=60_000, burst=1_000)), SystemClock()
    # The router's own log is the live telemetry feedback is checked against.
    known = Directory(KnownEndpoint(USE_CASE, endpoint.name, endpoint.deployer, RouterTelemetry(endpoint.deployer)))
    picked = {name: [r for r in routed if r.deployment == name][:20] for name in ("blue", "green")}
    for name, scores in (("blue", [4, 5, 5, 4]), ("green", [2, 3, 3, 2])):
        for i, record in enumerate(picked[name]):
            body = {"request_id": record.request_id, "deployment": name, "rating": scores[i % 4]}
            submit(service, USE_CASE, endpoint.name, json.dumps(body).encode(), caller="test-user", endpoints=known,
                   blobs=blob_store, clock=clock)
    for wrong, problem in (({"request_id": picked["blue"][0].request_id, "deployment": "green"}, "served by blue"),
                           ({"request_id": "never-sent", "deployment": "blue"}, "served no request 'never-sent'"),
                           ({"request_id": picked["blue"][0].request_id, "deployment": "red"}, "no deployment 'red'")):
        with pytest.raises(FeedbackRejected, match=problem) as refused:
            submit(service, USE_CASE, endpoint.name, json.dumps({**wrong, "rating": 1}).encode(), caller="test-user",
                   endpoints=known, blobs=blob_store, clock=clock)
        assert refused.value.status == 422

    report, written = report_endpoint(blob_store, ManualClock(), USE_CASE, endpoint.name, requests,
                                      traffic=endpoint.deployer.get_traffic(endpoint.name))
    stats = {s.deployment: s for s in report.deployments}
    assert report.baseline == "blue"
    assert stats["blue"].requests + stats["green"].requests == len([r for r in requests if not r.pinned])
    assert (stats["blue"].ratings, stats["blue"].mean_rating) == (20, 4.5)
    assert (stats["green"].ratings, stats["green"].mean_rating) == (20, 2.5)
    (comparison,) = report.comparisons
    assert comparison.rating_significant is True
    assert comparison.error_rate_significant is False  # neither failed a request
    html, _ = blob_store.read(REPORTS, written["html"].split("/", 1)[1])
    assert b"<script" not in html
    csv_text = blob_store.read(REPORTS, written["csv"].split("/", 1)[1])[0].decode()
    assert csv_text.splitlines()[0].startswith("deployment,configured_traffic,requests,share")


def test_pinning_reaches_a_deployment_without_traffic(endpoint: Endpoint) -> None:
    deployer = endpoint.deployer
    deployer.begin_set_traffic(endpoint.name, {"blue": 100, "green": 0})
    pinned = deployer.scoring_request(endpoint.name, "green")
    assert pinned.http_headers() == {DEPLOYMENT_HEADER: "green"}
    answers = [post(pinned.url, {"question": "What is 6 * 7?"}, pinned.http_headers()) for _ in range(5)]
    assert {(status, headers["x-served-by"]) for status, headers, _ in answers} == {(200, "green")}
    status, _, body = post(pinned.url, {"question": "What is 1 + 1?"}, {DEPLOYMENT_HEADER: "nobody"})
    assert status == 404
    assert b"nobody" in body
    status, headers, _ = post(pinned.url, {"question": "What is 1 + 1?"}, {"x-request-id": "client-chosen-id-1"})
    assert status == 200
    assert headers["x-request-id"] == "client-chosen-id-1"
    assert headers["x-served-by"] == "blue"


def test_smoke_test_passes_on_a_good_version(endpoint: Endpoint, blob_store: BlobStore) -> None:
    config = load_experiment(USE_CASE_DIR, "local")
    smoke = SmokeConfig(samples=4, latency_budget_ms=5_000, readiness_timeout_seconds=30)
    report = smoke_test_deployment(endpoint.deployer, SmokeTester(blob_store, ManualClock()), use_case=USE_CASE,
                                   use_case_dir=USE_CASE_DIR, config=config, flow_dir=endpoint.versions["green"],
                                   endpoint=endpoint.name, deployment="green", smoke=smoke)
    assert report.passed, report.failures
    assert next(c.label for c in report.checks) == "sample-request.json"
    assert len(report.checks) == 5
    assert {c.served_by for c in report.checks} == {"green"}
    assert report.expected_outputs == {"answer": "string", "reasoning": "string"}
    stored = json.loads(blob_store.read(REPORTS, smoke_report_name(USE_CASE, endpoint.name, "green"))[0])
    assert stored["passed"] is True
    assert len(stored["latencies_ms"]) == 5


def broken_flow(target: Path) -> Path:
    """A version whose python node raises on every line."""
    broken = materialize(FLOW, Combination(variant={"solve": "variant_0", "extract_answer": "variant_0"}), target)
    (broken / "extract_answer.py").write_text(
        "from promptflow.core import tool\n\n\n@tool\ndef extract_answer(text: str, pick: str = 'last') -> str:\n"
        "    raise RuntimeError('this version is broken on purpose')\n"
    )
    return broken


def test_broken_versions_fail_smoke_and_roll_back(endpoint: Endpoint, blob_store: BlobStore,
                                                   tmp_path: Path) -> None:
    deployer, name = endpoint.deployer, endpoint.name
    config = load_experiment(USE_CASE_DIR, "local")
    dead_llm = f"http://127.0.0.1:{free_port()}/v1"
    requests = [
        request_for("red", broken_flow(tmp_path / "red"), name, "3",
                    environment_variables={"AOAI_BASE_URL": endpoint.llm.base_url}),
        # A good flow whose connection points at a port nobody listens on.
        request_for("gray", endpoint.versions["blue"], name, "4", environment_variables={"AOAI_BASE_URL": dead_llm}),
    ]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(deployer.deploy, requests))
    smoke = SmokeConfig(samples=2, latency_budget_ms=5_000, readiness_timeout_seconds=30)
    for broken in ("red", "gray"):
        report = smoke_test_deployment(deployer, SmokeTester(blob_store, ManualClock()), use_case=USE_CASE,
                                       use_case_dir=USE_CASE_DIR, config=config, flow_dir=FLOW, endpoint=name,
                                       deployment=broken, smoke=smoke)
        assert report.ready
        assert not report.passed
        assert all(check.status != 200 for check in report.checks), broken
        assert any("status 4" in failure or "status 5" in failure for failure in report.failures)

    # The split went live before the failure showed: red took 30 % from blue, the incumbent.
    before = deployer.begin_set_traffic(name, {"blue": 100, "green": 0, "red": 0, "gray": 0}).traffic
    prior = prior_deployment(before, "red")
    live = deployer.begin_set_traffic(name, plan_traffic(before, "red",
                                                         DeploymentConfig(endpoint_name=name).traffic)).traffic
    assert live == {"blue": 70, "green": 0, "red": 30, "gray": 0}
    rolled_back = deployer.begin_set_traffic(name, rollback_traffic(live, "red", prior=prior)).traffic
    assert rolled_back == {"blue": 100, "green": 0, "red": 0, "gray": 0}
    target = deployer.scoring_request(name)
    answers = [post(target.url, {"question": f"What is {n} * 3?"}) for n in range(40)]
    assert {(status, headers["x-served-by"]) for status, headers, _ in answers} == {(200, "blue")}

    red_pid = int(_state(blob_store, name)["deployments"]["red"]["pid"])
    for broken in ("red", "gray"):
        deployer.remove(name, broken)
    assert set(deployer.get_traffic(name)) == {"blue", "green"}
    assert not pid_alive(red_pid)


def test_a_restarted_app_finds_what_runs(endpoint: Endpoint, blob_store: BlobStore, tmp_path: Path) -> None:
    """A new deployer (a restarted Function App) reads the state from blob storage, adopts the processes that
    still answer and restarts one that died — with the environment variables it was deployed with."""
    before = _state(blob_store, endpoint.name)
    green_pid = int(before["deployments"]["green"]["pid"])
    os.killpg(green_pid, signal.SIGKILL)  # green crashed while the app was away
    fresh = LocalDeployer(blob_store, ManualClock(), work_dir=tmp_path,
                          connections_for=experiment_connections(ROOT / "flows", "local"),
                          secrets_env={"AOAI_API_KEY": "scripted-key"})
    traffic = fresh.get_traffic(endpoint.name)
    assert set(traffic) == {"blue", "green"}
    assert sum(traffic.values()) == 100
    for deployment in ("blue", "green"):
        target = fresh.scoring_request(endpoint.name, deployment)
        status, headers, body = post(target.url, {"question": "What is 9 * 9?"}, target.http_headers())
        assert (status, headers["x-served-by"], json.loads(body)["answer"]) == (200, deployment, "81")
    after = _state(blob_store, endpoint.name)
    assert after["router_pid"] == before["router_pid"]
    assert after["deployments"]["blue"]["pid"] == before["deployments"]["blue"]["pid"]
    assert after["deployments"]["green"]["pid"] not in (None, green_pid)
    assert after["deployments"]["green"]["environment_variables"] == {"AOAI_BASE_URL": endpoint.llm.base_url}
    assert fresh.get_traffic("no-such-endpoint") == {}
    endpoint.deployer = fresh  # it owns the restarted process now; the fixture's teardown goes through it


def test_a_redelivered_deploy_changes_nothing(endpoint: Endpoint) -> None:
    before = endpoint.deployer.get_traffic(endpoint.name)
    again = endpoint.deployer.deploy(request_for("blue", endpoint.versions["blue"], endpoint.name, "1",
                                                 environment_variables={"AOAI_BASE_URL": endpoint.llm.base_url}))
    assert again.details["pid"] == str(_state_of(endpoint)["deployments"]["blue"]["pid"])
    assert endpoint.deployer.get_traffic(endpoint.name) == before


def _state_of(endpoint: Endpoint) -> dict[str, Any]:
    return _state(endpoint.deployer.blobs, endpoint.name)


def test_invalid_splits_are_refused(endpoint: Endpoint) -> None:
    before = endpoint.deployer.get_traffic(endpoint.name)
    for bad, message in (({"blue": 60, "green": 30}, "sum to 100"), ({"blue": 50, "purple": 50}, "purple"),
                         ({"blue": 99.5, "green": 0.5}, "integer")):
        with pytest.raises(InvalidTraffic, match=message):
            endpoint.deployer.begin_set_traffic(endpoint.name, bad)  # type: ignore[arg-type]
    assert endpoint.deployer.get_traffic(endpoint.name) == before


def test_remove_refuses_a_deployment_with_traffic(endpoint: Endpoint) -> None:
    traffic = endpoint.deployer.get_traffic(endpoint.name)
    serving = max(traffic, key=lambda name: traffic[name])
    with pytest.raises(DeploymentError, match="still has"):
        endpoint.deployer.remove(endpoint.name, serving)
    endpoint.deployer.remove(endpoint.name, "never-deployed")  # a missing one is not an error


# --- the smoke test's own rules, without servers ---------------------------------------------------------------


def test_output_schema_rules() -> None:
    expected = expected_outputs(FLOW)
    assert expected == {"answer": "string", "reasoning": "string"}
    assert output_problems({"answer": "4", "reasoning": "2+2"}, expected) == []
    assert output_problems({"answer": 4, "reasoning": "2+2", "extra": 1}, expected) == [
        "unexpected output 'extra'", "output 'answer' should be string, got int"]
    assert output_problems({"reasoning": "x"}, expected) == ["output 'answer' missing"]
    assert output_problems(["4"], expected) == ["answer is a list, not a JSON object of outputs"]
    assert output_problems({"n": True}, {"n": "int"}) == ["output 'n' should be int, got bool"]
    assert output_problems({"n": 1}, {"n": "double"}) == []


class FakeTime:
    """monotonic() and sleep() for the tester: sleeping moves the time, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_readiness_is_retried_with_backoff_and_bounded(blob_store: BlobStore) -> None:
    good = HttpAnswer(status=200, body=b'{"answer": "4", "reasoning": "4"}')
    answers = iter([HttpAnswer(status=None, error="refused"), HttpAnswer(status=503)])
    time = FakeTime()
    tester = SmokeTester(blob_store, ManualClock(), transport=lambda *_: next(answers, good),
                         monotonic=time.monotonic, sleep=time.sleep)
    target = ScoringTarget(url="http://127.0.0.1:9/score")
    report = tester.run(target, [SmokeRequest(label="s", inputs={})], {"answer": "string", "reasoning": "string"},
                        SmokeConfig(readiness_timeout_seconds=60), use_case=USE_CASE, endpoint="unit-endpoint",
                        deployment="unit")
    assert report.passed
    assert report.readiness_attempts == 3
    assert time.sleeps == [0.5, 1.0]

    time = FakeTime()
    never = SmokeTester(blob_store, ManualClock(), transport=lambda *_: HttpAnswer(status=None, error="refused"),
                        monotonic=time.monotonic, sleep=time.sleep)
    report = never.run(target, [SmokeRequest(label="s", inputs={})], {}, SmokeConfig(readiness_timeout_seconds=20),
                       use_case=USE_CASE, endpoint="unit-endpoint", deployment="unit")
    assert not report.ready
    assert not report.passed
    assert report.checks == []
    assert time.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 2.5]  # doubling, capped at 5 s, cut at the deadline
    assert "not ready after 8 attempt(s)" in report.failures[0]


# --- the router's own rules, in process, with nothing behind it ------------------------------------------------


def test_router_rules(tmp_path: Path) -> None:
    router = ABRouter("rules", JsonlTelemetry(tmp_path / "telemetry.jsonl"), seed=1).start()
    try:
        admin = RouterClient(router.url)
        dead = f"http://127.0.0.1:{free_port()}"
        admin.register("blue", dead)
        admin.register("green", dead)
        assert admin.traffic() == {"blue": 0, "green": 0}
        status, _, body = post(router.url + "/score", {"question": "1 + 1"})
        assert (status, b"no deployment has traffic" in body) == (503, True)
        for bad, message in (({"blue": 70, "green": 20}, "sum to 100"), ({"purple": 100}, "unknown deployment"),
                             ({"blue": 101, "green": -1}, "integer 0..100"), ({"blue": 99.5, "green": 0.5}, "integer")):
            with pytest.raises(RoutingError, match=message):
                admin.set_traffic(bad)  # type: ignore[arg-type]
        assert admin.set_traffic({"blue": 100}) == {"blue": 100, "green": 0}
        with pytest.raises(RoutingError, match="still has 100% traffic"):
            admin.unregister("blue")
        status, headers, _ = post(router.url + "/score", {"question": "1 + 1"}, {"x-request-id": "bad id with spaces"})
        assert (status, headers["x-served-by"]) == (502, "blue")  # the deployment is down: a gateway error
        assert headers["x-request-id"] != "bad id with spaces"  # not a usable id: the router makes one
        # An oversized body is refused on its Content-Length, before a byte of it is read.
        connection = http.client.HTTPConnection("127.0.0.1", int(router.url.rsplit(":", 1)[1]), timeout=10)
        connection.putrequest("POST", "/score")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()
        assert connection.getresponse().status == 413
        connection.close()
        admin.unregister("green")
        assert admin.deployments() == {"blue": dead}
    finally:
        router.stop()
    records = read_telemetry(tmp_path / "telemetry.jsonl")
    assert [(r.deployment, r.status) for r in records] == [(None, 503), ("blue", 502)]
    assert records[1].error is not None
    assert records[1].error.startswith("upstream unreachable")


# --- how connections reach a served flow, without starting one -----------------------------------------------


def test_connections_reach_the_server_as_environment_references() -> None:
    """The child gets declarations with promptflow `${env:...}` references; the values stay in its environment."""
    declarations = served_connections(load_experiment(USE_CASE_DIR, "local").connections)
    assert declarations == [{"name": "aoai", "type": "OpenAIConnection",
                             "value": {"base_url": "${env:AOAI_BASE_URL}", "api_key": "${env:AOAI_API_KEY}"}}]
    assert missing_variables(declarations, {"AOAI_BASE_URL": "http://127.0.0.1:1/v1"}) == ["AOAI_API_KEY"]
    with pytest.raises(ServingError, match="AOAI_API_KEY"):
        FlowServer(FLOW, connections=load_experiment(USE_CASE_DIR, "local").connections,
                   environment={"AOAI_BASE_URL": "http://127.0.0.1:1/v1"})
    server = FlowServer(FLOW, connections=load_experiment(USE_CASE_DIR, "local").connections,
                        environment={"AOAI_BASE_URL": "u", "AOAI_API_KEY": "sk-distinctive-7f3a",
                                     "GenAIOpsStorage": "x"})
    assert json.loads(server.env[CONNECTIONS_ENV]) == declarations
    assert "GenAIOpsStorage" not in server.env  # the app's own credentials are not the flow's business
    assert "sk-distinctive-7f3a" not in " ".join(server.command)  # never on a command line (ps shows those)


def test_the_production_record_is_not_an_endpoint(blob_store: BlobStore, tmp_path: Path) -> None:
    deployer = LocalDeployer(blob_store, ManualClock(), work_dir=tmp_path,
                             connections_for=experiment_connections(ROOT / "flows", "local"))
    with pytest.raises(DeploymentError, match="reserved"):
        deployer.deploy(request_for("blue", FLOW, "production", "1"))
