"""Markers follow folders (tests/conftest.py): a folder's tests all carry its marker, and the services a test's
fixtures start are marked too, so `-m "not azurite and not broker"` really runs without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def collected(folders: list[str], expression: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", expression, *folders],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: every test deselected
    return [line for line in done.stdout.splitlines() if "::" in line]


FOLDERS = ["tests/localstack", "tests/storage", "tests/flows"]


def test_every_test_of_a_folder_carries_its_marker() -> None:
    # tests/storage is all `azurite`; the other two folders' own markers must leave nothing out.
    assert collected(FOLDERS, "not (localstack or azurite or flows)") == []


def test_services_are_marked_wherever_their_fixtures_are_used() -> None:
    files = {line.split("::")[0] for line in collected(FOLDERS, "(broker or azurite)")}
    assert {name for name in files if not name.startswith("tests/storage/")} == {
        "tests/localstack/test_servicebus_broker.py", "tests/localstack/test_servicebus_scheduled.py",
        "tests/localstack/test_publisher_not_before.py", "tests/localstack/test_bus_trigger_slots.py",
        "tests/flows/test_experiment_service.py", "tests/flows/test_local_deployment.py"}


def test_every_folder_has_its_place_in_the_run_order() -> None:
    from tests.conftest import FOLDER_MARKERS, SLOWEST_FIRST

    assert sorted(SLOWEST_FIRST) == sorted(FOLDER_MARKERS)
