"""Every blob name comes from shared/blob_layout.py: the names it gives (what existing blobs are stored under)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.blob_layout import (
    audit_dead_letter_name,
    audit_name,
    decision_name,
    deployment_reports_prefix,
    experiment_prefix,
    feedback_name,
    feedback_prefix,
    registry_flow_files_prefix,
    registry_pointer_name,
    registry_version_name,
    smoke_report_name,
)

AT = datetime(2026, 11, 25, 12, 0, 1, 2345, tzinfo=UTC)


def test_experiment_report_and_decision_names() -> None:
    assert experiment_prefix("math_coding", "exp-1") == "math_coding/exp-1/"
    assert decision_name("math_coding", "exp-1") == "math_coding/exp-1/decision.json"
    assert experiment_prefix("../etc", "a/b") == "etc/a_b/"  # ids never leave their folder


def test_deployment_reports_smoke_and_feedback_names() -> None:
    assert deployment_reports_prefix("math_coding", "math-dev") == "math_coding/deployments/math-dev/"
    assert smoke_report_name("math_coding", "math-dev", "green") == "math_coding/deployments/math-dev/green/smoke.json"
    assert smoke_report_name("m", "e/../x", "d?") == "m/deployments/e_.._x/d/smoke.json"
    assert feedback_prefix("math_coding", "math-dev") == "math_coding/math-dev/"
    assert feedback_name("math_coding", "math-dev", AT, "f 1") == "math_coding/math-dev/2026-11-25/f_1.json"


def test_audit_names_sort_by_time_within_the_run() -> None:
    event = audit_name("run/1", AT, "gate.passed", "e:1")
    letter = audit_dead_letter_name("run/1", AT, "ab" * 32, None)
    assert event == "run_1/20261125T120001002345Z-gate.passed-e_1.json"
    assert letter == f"run_1/20261125T120001002345Z-deadletter-{'ab' * 32}-unsequenced.json"
    assert audit_dead_letter_name("run/1", AT, "k", 7).endswith("-deadletter-k-7.json")


def test_registry_names() -> None:
    assert registry_pointer_name("data", "math_coding-math_test") == "data/math_coding-math_test/latest.json"
    assert registry_version_name("flows", "math", "3") == "flows/math/versions/3.json"
    assert registry_flow_files_prefix("math", "3") == "flows/math/3/files/"
