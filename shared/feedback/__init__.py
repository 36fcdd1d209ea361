"""User feedback on deployed flows (validated, rate-limited, stored per endpoint and day) and the A/B report
comparing an endpoint's deployments from router telemetry and that feedback."""

from shared.feedback.ab_report import ABReport, ServedRequest, build_ab_report, report_endpoint, write_ab_report
from shared.feedback.service import (
    Feedback,
    FeedbackRecord,
    FeedbackRejected,
    FeedbackService,
    TokenBucket,
    caller_id,
    load_feedback,
)

__all__ = [
    "ABReport", "Feedback", "FeedbackRecord", "FeedbackRejected", "FeedbackService", "ServedRequest", "TokenBucket",
    "build_ab_report", "caller_id", "load_feedback", "report_endpoint", "write_ab_report",
]
