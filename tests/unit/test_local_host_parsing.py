"""The local host's parsing of bindings: NCRONTAB schedules, HTTP route templates, blob path patterns."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from localstack.host.blob_trigger import BlobPath
from localstack.host.http_trigger import Route
from localstack.host.loader import FunctionSpec, HostConfigError
from localstack.host.timer_trigger import Schedule

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/5 * * * * *", datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)),
        ("0 */5 * * * *", datetime(2026, 11, 25, 12, 5, 0, tzinfo=UTC)),
        ("0 30 9 * * 1-5", datetime(2026, 11, 26, 9, 30, 0, tzinfo=UTC)),
        ("0 0 0 1 1 *", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
        ("0 0 12 * * sun", datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)),
        ("0 0 0 29 feb *", datetime(2028, 2, 29, 0, 0, 0, tzinfo=UTC)),
        ("0 0 0 13 * fri", datetime(2027, 8, 13, 0, 0, 0, tzinfo=UTC)),  # both must match, as in NCRONTAB
        ("00:10:00", datetime(2026, 11, 25, 12, 10, 0, tzinfo=UTC)),
    ],
)
def test_next_occurrence(expression: str, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(T0) == expected


def declared_schedules() -> dict[str, str]:
    """The timer schedules the app ships with: local settings and Terraform's app settings."""
    settings = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    terraform = (ROOT / "infra" / "functionapp.tf").read_text()
    declared = {f"local {name}": value for name, value in settings.items() if name.endswith("_SCHEDULE")}
    pairs = re.findall(r'"(\w+_SCHEDULE)"\s*=\s*"([^"]+)"', terraform)
    declared |= {f"terraform {name}": value for name, value in pairs}
    return declared


def test_the_apps_declared_schedules_fire_when_azure_would() -> None:
    schedules = declared_schedules()
    def at(*minutes_seconds: tuple[int, int]) -> list[datetime]:
        return [datetime(2026, 11, 25, 12, minute, second, tzinfo=UTC) for minute, second in minutes_seconds]

    every_minute = at((1, 0), (2, 0), (3, 0))
    expected = {"HEARTBEAT_SCHEDULE": at((5, 0), (10, 0), (15, 0)), "APPROVAL_EXPIRY_SCHEDULE": every_minute,
                # the production monitor: every 30 s on the local stack (demos and tests), every minute in Azure
                "local MONITORING_SCHEDULE": at((0, 30), (1, 0), (1, 30)), "MONITORING_SCHEDULE": every_minute}
    assert set(schedules) == {f"{where} {name}" for where in ("local", "terraform")
                              for name in ("HEARTBEAT_SCHEDULE", "APPROVAL_EXPIRY_SCHEDULE", "MONITORING_SCHEDULE")}
    for where, expression in schedules.items():
        schedule, fired, moment = Schedule.parse(expression), [], T0 + timedelta(seconds=7)
        for _ in range(3):
            moment = schedule.next_after(moment)
            fired.append(moment)
        assert fired == expected.get(where, expected[where.split()[1]]), where


@pytest.mark.parametrize("expression", ["* * * * *", "* * * * * * 2030", "61 * * * * *", "0 0 0 31 2 *"])
def test_bad_or_impossible_schedules_are_config_errors(expression: str) -> None:
    with pytest.raises(HostConfigError):
        Schedule.parse(expression).next_after(T0)


def http_spec(route: str, auth: str = "function") -> FunctionSpec:
    trigger = {"type": "httpTrigger", "name": "req", "route": route, "methods": ["GET"], "authLevel": auth}
    return FunctionSpec("f", "httpTrigger", trigger, "req", lambda req: None)


def test_route_template_binds_parameters_under_the_prefix() -> None:
    route = Route.from_spec(http_spec("runs/{correlation_id}/events"), "api", "function")
    assert route.match("/api/runs/abc-1/events") == {"correlation_id": "abc-1"}
    assert route.match("/api/runs/abc/other") is None
    assert route.match("/runs/abc/events") is None


def test_route_values_are_percent_decoded_but_an_encoded_slash_stays() -> None:
    route = Route.from_spec(http_spec("ab-report/{use_case}/{endpoint}"), "api", "function")
    assert route.match("/api/ab-report/%2E%2E/caf%C3%A9%20x") == {"use_case": "..", "endpoint": "café x"}
    assert route.match("/api/ab-report/..%2F..%2fetc/x") == {"use_case": "..%2F..%2Fetc", "endpoint": "x"}
    assert route.match("/api/ab-report/a/b/c") is None


def test_route_constraints_and_optional_parameters() -> None:
    typed = Route.from_spec(http_spec("items/{id:int}"), "api", "function")
    assert typed.match("/api/items/42") == {"id": "42"}
    assert typed.match("/api/items/x") is None
    optional = Route.from_spec(http_spec("items/{id?}"), "api", "function")
    assert optional.match("/api/items") == {}
    assert optional.match("/api/items/7") == {"id": "7"}


def test_auth_level_defaults_to_the_apps() -> None:
    spec = http_spec("x")
    del spec.trigger["authLevel"]
    assert Route.from_spec(spec, "api", "function").auth_level == "function"


def test_blob_path_binds_name_including_folders() -> None:
    path = BlobPath.parse("datasets/{name}")
    assert path.container == "datasets"
    assert path.match("math_coding/data.jsonl") == {"name": "math_coding/data.jsonl"}
    with pytest.raises(HostConfigError):
        BlobPath.parse("{container}/x")


def test_blob_path_with_literal_suffix() -> None:
    path = BlobPath.parse("datasets/{use_case}/{file}.jsonl")
    assert path.match("ner/train.jsonl") == {"use_case": "ner", "file": "train"}
    assert path.match("ner/readme.md") is None
