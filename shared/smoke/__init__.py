"""Smoke tests of a deployment through any Deployer's scoring target: readiness, real requests from the use case's
sample request and datasets, output schema and latency checks, a report in blob storage."""

from shared.smoke.tester import (
    SmokeCheck,
    SmokeError,
    SmokeReport,
    SmokeRequest,
    SmokeTester,
    expected_outputs,
    smoke_requests,
    smoke_test_deployment,
)

__all__ = [
    "SmokeCheck", "SmokeError", "SmokeReport", "SmokeRequest", "SmokeTester", "expected_outputs",
    "smoke_requests", "smoke_test_deployment",
]
