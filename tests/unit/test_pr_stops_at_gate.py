"""Pull-request experiments end at the gate: nothing is registered, approved or deployed from the pr environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.events import GatePassed
from shared.services.registration import register_chosen_flow


class Untouchable:
    """A store / registry that fails the test if anything is asked of it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} was called for a pr experiment")


def gate_passed(environment: str) -> GatePassed:
    return GatePassed.create({
        "use_case": "math_coding", "experiment_id": "e1", "environment": environment, "primary_metric": "accuracy",
        "best_variant": {"solve": "variant_0"}, "best_value": 1.0, "checks": [],
        "report_uri": "reports/math_coding/e1/summary.html"}, correlation_id="pr-42")


def test_a_pr_experiment_that_passes_its_gate_registers_nothing(tmp_path: Path) -> None:
    assert register_chosen_flow(gate_passed("pr"), Untouchable(), Untouchable(), flows_root=tmp_path,
                                work_root=tmp_path, local=False) == []


def test_dev_goes_on_to_registration(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="result was called"):
        register_chosen_flow(gate_passed("dev"), Untouchable(), Untouchable(), flows_root=tmp_path,
                             work_root=tmp_path, local=False)
