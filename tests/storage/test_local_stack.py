"""Starting the local stack twice, or on a taken port, stops at once with a message that says so."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from localstack.stack import LocalStack, Ports, StackError

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(60)]


def test_starting_a_running_service_again_says_it_is_running(storage_stack: LocalStack) -> None:
    with pytest.raises(StackError, match=r"azurite is already running \(pid \d+\)"):
        storage_stack.start_azurite()


def test_a_port_held_by_another_program_is_named(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        stack = LocalStack(state_dir=tmp_path, ports=Ports(**{**Ports.free().__dict__, "broker": taken}),
                           with_model=False)
        with pytest.raises(StackError, match=rf"port\(s\) \[{taken}\] already in use"):
            stack.start_broker()
    assert stack.status() == {"azurite": None, "broker": None, "host": None}
