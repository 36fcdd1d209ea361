"""User feedback on deployed flows (validated, rate-limited, stored per endpoint and day) and the A/B report
comparing an endpoint's deployments from their request telemetry (the RequestTelemetry port) and that feedback."""

from shared.feedback.ab_report import ABReport, build_ab_report, report_endpoint, write_ab_report
from shared.feedback.submissions import (
    Feedback,
    FeedbackRecord,
    FeedbackRejected,
    FeedbackService,
    TokenBucket,
    caller_id,
    load_feedback,
)
from shared.feedback.telemetry import RequestTelemetry, ServedRequest, ServedRequests, TelemetryError

__all__ = [
    "ABReport", "Feedback", "FeedbackRecord", "FeedbackRejected", "FeedbackService", "RequestTelemetry",
    "ServedRequest", "ServedRequests", "TelemetryError", "TokenBucket", "build_ab_report", "caller_id",
    "load_feedback", "report_endpoint", "write_ab_report",
]
