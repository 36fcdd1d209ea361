"""EndpointDirectory stand-ins for feedback tests that are not about deployment targets: endpoints given by the test,
with their deployments and the requests their router logged, in memory. The real directory over flows/ is tested in
tests/unit/test_known_endpoints.py; the real local deployer and router log in tests/flows/test_local_deployment.py."""

from __future__ import annotations

import uuid
from datetime import datetime

from shared.deployment.port import EndpointNotFound
from shared.events.commands import SubmitFeedback
from shared.feedback.endpoints import EndpointDirectory, KnownEndpoint
from shared.feedback.submissions import FeedbackService, caller_hash
from shared.feedback.telemetry import ServedRequest, ServedRequests, in_window
from shared.handlers import on_submit_feedback
from shared.ports import BlobStore, Clock


class InMemoryEndpoint:
    """The deployer's `get_traffic` and a live telemetry (what a local router logged) of one endpoint."""

    live = True

    def __init__(self, traffic: dict[str, int], served: list[ServedRequest] | None = None) -> None:
        self.traffic = traffic
        self.served = served or []

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        return dict(self.traffic)

    def served_requests(self, endpoint: str, start: datetime, end: datetime, *,
                        deployment: str | None = None) -> ServedRequests:
        return ServedRequests(requests=in_window(self.served, start, end, deployment))


class Directory:
    """Knows the endpoints it is given and nothing else."""

    def __init__(self, *known: KnownEndpoint) -> None:
        self.known = {(k.use_case, k.endpoint): k for k in known}

    def find(self, use_case: str, endpoint: str) -> KnownEndpoint:
        try:
            return self.known[(use_case, endpoint)]
        except KeyError:
            raise EndpointNotFound(f"no endpoint {use_case}/{endpoint}") from None

    @classmethod
    def of(cls, use_case: str, endpoint: str, traffic: dict[str, int],
           served: list[ServedRequest] | None = None, *, live: bool = True) -> Directory:
        """One endpoint; `live=False` gives it no telemetry to check request ids against."""
        target = InMemoryEndpoint(traffic, served)
        return cls(KnownEndpoint(use_case, endpoint, target, target if live else None))  # type: ignore[arg-type]


def submit(limits: FeedbackService, use_case: str, endpoint: str, body: bytes, *, caller: str,
           endpoints: EndpointDirectory, blobs: BlobStore, clock: Clock, submission_id: str | None = None) -> str:
    """What the application does with one POST: admission (limits, lookup, parsing), then the feedback command's
    handler (checks against the endpoint, storage). Returns the stored id."""
    feedback = limits.admit(use_case, endpoint, body, caller, endpoints)
    command = SubmitFeedback(use_case=use_case, endpoint=endpoint, caller=caller_hash(caller),
                             submission_id=submission_id or uuid.uuid4().hex, feedback=feedback)
    on_submit_feedback(command, blobs=blobs, clock=clock, endpoints=endpoints)
    return command.record_id()
