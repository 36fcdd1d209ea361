"""The production monitor against real storage (Azurite) and the real local deployer's records: a deployment that
breaks its thresholds is reported once per window, whatever the timer's rate; a firing already evaluated publishes
nothing; without auto_rollback nothing asks to move traffic, and too few requests give no verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from localstack.deployment.local_deployer import LocalDeployer
from localstack.deployment.local_state import LocalDeploymentState, LocalEndpointState, endpoint_state_name
from localstack.serving.production_writer import BlobProductionWriter
from localstack.stack import LocalStack
from shared.blob_layout import DEPLOYMENTS
from shared.monitoring.production_log import ProductionLine
from shared.ports import BlobStore
from shared.services.deployments import DeploymentWorkspace
from shared.services.monitoring import monitor_production, traffic_statistics_for
from shared.settings import Settings
from shared.smoke.tester import SmokeTester
from tests.bus_driver import QueueBus
from tests.conftest import ManualClock
from tests.e2e.production import monitored_copy

pytestmark = pytest.mark.azurite
MONITORING = """
deployment:
  endpoint_name: {endpoint}
monitoring:
  schedule: "0 * * * * *"
  window_minutes: 5
  min_requests: 5
  max_error_rate: 0.2
  latency_p95_ms: 1000
"""


@pytest.fixture
def flows(tmp_path: Path, unique: str) -> Path:
    return monitored_copy(tmp_path / "flows", "watched", MONITORING.format(endpoint=f"ep-{unique}"))


def test_a_breach_is_reported_once_per_window_and_never_twice_for_a_firing(
        storage_stack: LocalStack, blob_store: BlobStore, flows: Path, tmp_path: Path, unique: str) -> None:
    endpoint, start = f"ep-{unique}", datetime(2026, 5, 6, 7, 0, 30, tzinfo=UTC)
    fired = start.replace(second=0)  # the schedule's last firing: the window ends there
    clock = ManualClock(start)
    # The endpoint as the local deployer records it; its router is not running, so the recorded split is the answer.
    deployments = {name: LocalDeploymentState(name=name, flow_name="watched", flow_version=version, port=9, pid=None,
                                              flow_dir=str(tmp_path), log_file="", started_at=start)
                   for name, version in (("blue", "1"), ("green", "2"))}
    state = LocalEndpointState(use_case="watched", endpoint=endpoint, router_port=9, router_pid=None,
                               telemetry_file=str(tmp_path / "t.jsonl"), traffic={"blue": 50, "green": 50},
                               deployments=deployments, updated_at=start)
    blob_store.write(DEPLOYMENTS, endpoint_state_name("watched", endpoint), state.model_dump_json().encode())
    deployer = LocalDeployer(blob_store, clock, work_dir=tmp_path / "work", connections_for=lambda use_case: [])
    workspace = DeploymentWorkspace(flows_root=flows, work_root=tmp_path / "work", deployer_for=lambda _: deployer,
                                    tester=SmokeTester(blob_store, clock), app_settings={}, local_stack=False)
    writer = BlobProductionWriter(BlobServiceClient.from_connection_string(storage_stack.storage_connection_string))
    for second in range(20):  # blue: 10 fast and fine; green: 3 of 10 fail, and slow
        for deployment, status, latency in (("blue", 200, 50.0), ("green", 500 if second % 3 == 0 else 200, 1500.0)):
            writer.record(ProductionLine(time=fired - timedelta(seconds=second + 1), use_case="watched",
                                         endpoint=endpoint, request_id=f"{deployment}-{second}",
                                         deployment=deployment, status=status, latency_ms=latency))
    writer.flush()
    bus = QueueBus()

    def tick() -> list[str]:
        settings = Settings(environment="local")
        published = monitor_production(blob_store, bus, clock, workspace, settings,
                                       traffic_statistics_for(blob_store, settings))
        return [event.type for event in published]

    assert tick() == ["deployment.degraded"]
    [degraded] = bus.queue
    assert (degraded.payload.deployment, degraded.payload.rollback) == ("green", "disabled")
    assert degraded.payload.breaches == ["error rate 35.0% (7/20) > 20.0%", "latency p95 1500 ms > 1000 ms"]
    assert degraded.payload.window.end == fired
    assert tick() == []  # the same firing again
    clock.advance(minutes=2)
    assert tick() == []  # a new firing, but green was reported less than a window ago
    clock.advance(minutes=4)
    assert tick() == []  # a whole window later its lines have aged out of it: no verdict on no requests
    assert len(bus.queue) == 1
