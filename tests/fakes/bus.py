"""The message bus over in-memory ports, for the fast handler tier: real handlers and services, storage in memory,
a recording publisher, a clock the test moves, a flow runner whose model cannot be reached. `Ports` holds what a
test may look at or replace (dataclasses.replace) before building the bus from it."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.adapters.blob_experiment_store import BlobExperimentStore
from shared.bootstrap import build_deployments, handler_dependencies
from shared.events.commands import Message
from shared.experiments.results import RunResult
from shared.experiments.runner import AggregateOutcome, ConnectionSpec, ExecutionLimits, RunSpec
from shared.feedback.endpoints import EndpointDirectory
from shared.idempotency import IdempotencyStore
from shared.messagebus import HandleResult, MessageBus
from shared.notifications import Notifier
from shared.registry.blob_registry import BlobRegistry
from shared.registry.port import Registry
from shared.services.approvals import ApprovalSettings
from shared.services.deployments import DeploymentWorkspace
from shared.services.experiments import ExperimentWorkspace
from shared.settings import Settings
from tests.fakes.memory import ManualClock, MemoryBlobStore, RecordingPublisher

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ports:
    settings: Settings
    blobs: MemoryBlobStore
    publisher: RecordingPublisher
    clock: ManualClock
    experiments: ExperimentWorkspace
    registry: Registry
    approvals: ApprovalSettings
    notifier: Notifier
    deployments: DeploymentWorkspace
    endpoints: EndpointDirectory

    def bus(self) -> MessageBus:
        """Built as the application builds it; idempotency records live in `blobs`, so a second bus replays."""
        dependencies = {field.name: getattr(self, field.name) for field in fields(self) if field.name != "publisher"}
        return MessageBus(publisher=self.publisher, idempotency=IdempotencyStore(self.blobs, self.clock),
                          dependencies=dependencies)

    def handle(self, message: Message, letters: list[tuple[str, str]] | None = None,
               delivery_count: int = 1) -> HandleResult:
        """One delivery through the bus; dead letters go to `letters` (none expected when it is not given)."""
        def dead_letter(reason: str, text: str) -> None:
            if letters is None:
                raise AssertionError(f"dead-lettered: {reason}: {text}")
            letters.append((reason, text))

        return self.bus().handle(message, delivery_count=delivery_count, dead_letter=dead_letter)


def in_memory_ports(tmp_path: Path, clock: ManualClock | None = None, **overrides: Any) -> Ports:
    """The math_coding use case copied into `tmp_path`, local environment, every other port real over memory."""
    shutil.copytree(ROOT / "flows" / "math_coding", tmp_path / "flows" / "math_coding")
    settings = Settings.model_validate({"GENAIOPS_ENV": "local", "GENAIOPS_FLOWS_DIR": str(tmp_path / "flows"),
                                        "GENAIOPS_WORK_DIR": str(tmp_path / "work")})
    blobs, clock = MemoryBlobStore(), clock or ManualClock()
    # The model's connection resolves (to nowhere): every run fails to start, as with an unreachable endpoint.
    workspace = ExperimentWorkspace(flows_root=settings.flows_dir, work_root=settings.work_dir,
                                    runner=UnreachableModel(), store=BlobExperimentStore(blobs),
                                    secrets_env={"AOAI_BASE_URL": "https://aoai.invalid", "AOAI_API_KEY": "not-a-key"},
                                    local_stack=settings.local_stack)
    dependencies = handler_dependencies(settings, blobs, clock, workspace, BlobRegistry(blobs, clock),
                                        build_deployments(settings, blobs, clock))
    ports = Ports(publisher=RecordingPublisher(), **dependencies.by_name())
    return replace(ports, **overrides)


class UnreachableModel:
    """A FlowRunner whose every run fails to start (an LLM nobody can reach), as the real runner reports that."""

    def run_all(self, specs: Sequence[RunSpec], connections: Sequence[ConnectionSpec], limits: ExecutionLimits,
                **_: object) -> list[RunResult]:
        return [RunResult(run_id=spec.run_id, kind=spec.kind, flow=spec.flow, dataset=spec.dataset,
                          variant=spec.variant, status="failed", error="the model endpoint is unreachable",
                          started_at=datetime.now(UTC), duration_seconds=0) for spec in specs]

    def aggregate(self, *_: object, **__: object) -> AggregateOutcome:
        return {}, "the model endpoint is unreachable"
