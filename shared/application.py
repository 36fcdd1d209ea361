"""The application: the entry points the trigger adapters in functions/ call, over injected ports.
Nothing here imports azure.functions; shared/bootstrap.py builds it with the real adapters."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from shared.adapters.blob_experiment_store import BlobExperimentStore
from shared.approvals.models import ApprovalRequest, DecisionConflict
from shared.audit import EventJournal, JournalingPublisher
from shared.blob_layout import HEARTBEAT_NAME, SYSTEM
from shared.bootstrap import handler_dependencies
from shared.dead_letters import DeadLetterStore
from shared.events.codec import MalformedEvent, decode
from shared.events.commands import DecideApproval, ExpireApprovals, SubmitFeedback
from shared.experiments.remote_runner import RemoteFlowRunner
from shared.experiments.runner import FlowRunner
from shared.feedback.submissions import FeedbackRejected, FeedbackService, TokenBucket, caller_hash
from shared.idempotency import AlreadyInProgress, IdempotencyStore, PayloadMismatch
from shared.messagebus import MessageBus
from shared.observability import correlation
from shared.ports import BlobNotFound, BlobStore, Clock, EventPublisher
from shared.registry.port import Registry
from shared.services.approvals import get_approval
from shared.services.deployments import DeploymentWorkspace
from shared.services.experiments import ExperimentWorkspace
from shared.services.intake import UnusableBlobName, dataset_uploaded_event, refuse_blob_name
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.services.candidate_export import CandidateExport

log = logging.getLogger("genaiops.app")


@dataclass(frozen=True)
class MessageOutcome:
    status: Literal["handled", "replayed", "dead_lettered"]
    event_type: str | None = None
    published: int = 0


def _body_correlation_id(body: Any) -> str | None:
    """The envelope's correlation id of a body that parsed as JSON but is no event (e.g. a mistyped type)."""
    value = body.get("correlation_id") if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None


class Application:
    def __init__(self, settings: Settings, blobs: BlobStore, bus: EventPublisher, clock: Clock,
                 runner: FlowRunner, registry: Registry, deployments: DeploymentWorkspace,
                 remote_runner: RemoteFlowRunner | None = None) -> None:
        self.settings = settings
        self.blobs = blobs
        self.clock = clock
        self.journal = EventJournal(blobs)
        self.publisher = JournalingPublisher(bus, self.journal)
        workspace = ExperimentWorkspace(flows_root=settings.flows_dir, work_root=settings.work_dir, runner=runner,
                                        secrets_env=settings.app_settings, store=BlobExperimentStore(blobs),
                                        local_stack=settings.local_stack, remote=remote_runner)
        self.registry = registry
        self.deployments = deployments
        dependencies = handler_dependencies(settings, blobs, clock, workspace, registry, deployments)
        self.approvals, self.endpoints = dependencies.approvals, dependencies.endpoints
        self.idempotency = IdempotencyStore(blobs, clock, timedelta(seconds=settings.idempotency_lease_seconds))
        self.bus = MessageBus(publisher=self.publisher, idempotency=self.idempotency,
                              dependencies=dependencies.by_name())
        self.dead_letters = DeadLetterStore(blobs, clock)
        # One per instance: the rate limit lives in this object's memory.
        self.feedback = FeedbackService(TokenBucket(settings.feedback_rate_per_minute, settings.feedback_burst))

    def on_blob_uploaded(self, container: str, blob_name: str, size: int, etag: str) -> str | None:
        """Blob trigger entry: publish dataset.uploaded. Returns the event id, None for non-dataset blobs."""
        try:
            event = dataset_uploaded_event(container, blob_name, size, etag)
        except UnusableBlobName as problem:  # retrying cannot fix a name: report it once, do not poison the blob
            refuse_blob_name(container, blob_name, size, etag, str(problem), self.blobs, self.clock)
            log.warning("refused %s/%s: %s", container, blob_name, problem)
            return None
        if event is None:
            log.info("ignoring %s/%s: not a dataset file", container, blob_name)
            return None
        with correlation(event.correlation_id):
            self.publisher.publish([event])
            log.info("dataset.uploaded %s for %s/%s", event.id, container, blob_name)
        return event.id

    def on_bus_message(self, body: bytes, *, message_id: str, delivery_count: int | None,
                       properties: dict[str, Any], sequence_number: int | None = None,
                       content_type: str | None = None, correlation_id: str | None = None,
                       subject: str | None = None) -> MessageOutcome:
        """Service Bus trigger entry. Malformed messages, handler failures a retry cannot fix at a stage without a
        failure event, and a reused id with another payload are dead-lettered here with their reason (one record per
        message, whatever its bytes, journaled under the run's correlation id); any other exception propagates so
        the host abandons the message and the broker retries it. `properties` are the message's application
        properties; the broker's content type, correlation id, subject and sequence number go into the record."""
        def dead_letter(reason: str, description: str, run: str | None = None) -> None:
            letter = self.dead_letters.record(
                queue=self.settings.events_queue, message_id=message_id, body=body, reason=reason,
                description=description, delivery_count=delivery_count, properties=properties,
                sequence_number=sequence_number, content_type=content_type, correlation_id=correlation_id,
                subject=subject)
            run = run or letter.correlation_id or _body_correlation_id(letter.body)
            if run:
                self.journal.record_dead_letter(run, letter)
            log.warning("dead-lettered message %s: %s: %s", ascii(message_id)[:200], reason, letter.description[:500])

        try:
            event = decode(body)
        except MalformedEvent as bad:
            dead_letter(bad.reason, bad.description)
            return MessageOutcome("dead_lettered")
        with correlation(event.correlation_id):
            self.journal.record(event)  # events posted straight to the bus by others are journaled too
            result = self.bus.handle(event, delivery_count=delivery_count, sequence_number=sequence_number,
                                     dead_letter=lambda reason, text: dead_letter(reason, text, event.correlation_id))
        if result.failure is not None and not result.published:
            return MessageOutcome("dead_lettered", event.type)
        return MessageOutcome("replayed" if result.replayed else "handled", event.type, len(result.published))

    # --- commands from HTTP and timers: through the bus, keyed by their content ------------------------------

    def decide_approval(self, command: DecideApproval) -> ApprovalRequest:
        """The approval as it stands after the decision (also when this very form was already handled)."""
        try:
            self.bus.handle(command)
        except AlreadyInProgress:  # the same form, submitted twice at once: the other submission is deciding
            raise DecisionConflict("this decision is being recorded; reload the page") from None
        return get_approval(command.approval_id, self.blobs)

    def expire_approvals(self) -> None:
        """Timer entry: pending approvals past their time become approval.expired."""
        self.bus.handle(ExpireApprovals(tick=self.clock.now()))

    def submit_feedback(self, use_case: str, endpoint: str, body: bytes, caller: str,
                        idempotency_key: str | None = None) -> str:
        """HTTP entry: the stored feedback's id; FeedbackRejected with the status to answer. A retried request
        carrying the same `idempotency_key` (the Idempotency-Key header) is answered with the first one's id."""
        feedback = self.feedback.admit(use_case, endpoint, body, caller, self.endpoints)
        try:
            command = SubmitFeedback(use_case=use_case, endpoint=endpoint, caller=caller_hash(caller),
                                     submission_id=idempotency_key or uuid.uuid4().hex, feedback=feedback)
            self.bus.handle(command)
        except ValidationError:
            raise FeedbackRejected(400, "Idempotency-Key must be 1-128 letters, digits or ._:-") from None
        except AlreadyInProgress:
            raise FeedbackRejected(409, "the same request is being stored; retry", retry_after=1) from None
        except PayloadMismatch:
            raise FeedbackRejected(422, "this Idempotency-Key was used for another submission") from None
        return command.record_id()

    def export_candidates(self, use_case: str, body: bytes, idempotency_key: str | None = None) -> CandidateExport:
        """HTTP entry: the use case's badly rated production lines to datasets-candidates/; ExportRejected with the
        status to answer. A retried request with the same `idempotency_key` gets the first one's answer."""
        from shared.services.candidate_export import export_requested
        from shared.services.monitoring import production_log_for

        log_for = production_log_for(self.blobs, self.settings.azureml_data_collector_container_url)
        return export_requested(use_case, body, idempotency_key, blobs=self.blobs, idempotency=self.idempotency,
                                settings=self.settings, now=self.clock.now(), log_for=log_for)

    def record_heartbeat(self) -> None:
        """Timer entry: proves the schedule runs (the health route reports the last tick)."""
        self.blobs.write(SYSTEM, HEARTBEAT_NAME, f'{{"last_tick": "{self.clock.now().isoformat()}"}}'.encode())

    def monitor_production(self) -> int:
        """Timer entry: the production monitor (shared/services/monitoring.py) and the requests for post-production
        evaluations whose schedule fired (shared/services/production_evaluation.py); returns the events published."""
        from shared.services.monitoring import monitor_production, traffic_statistics_for
        from shared.services.production_evaluation import request_evaluations

        monitored = monitor_production(self.blobs, self.publisher, self.clock, self.deployments, self.settings,
                                       traffic_statistics_for(self.blobs, self.settings))
        requested = request_evaluations(self.blobs, self.publisher, self.clock, self.settings.flows_dir,
                                        self.settings.environment)
        return len(monitored) + len(requested)

    def health(self) -> dict[str, Any]:
        try:
            last_tick = self.blobs.read(SYSTEM, HEARTBEAT_NAME)[0].decode()
            storage = "ok"
        except BlobNotFound:
            last_tick, storage = None, "ok"
        except Exception as exc:  # noqa: BLE001 - health reports any failure instead of raising
            last_tick, storage = None, f"error: {type(exc).__name__}"
        return {"status": "ok" if storage == "ok" else "degraded", "environment": self.settings.environment,
                "storage": storage, "timer": last_tick}
