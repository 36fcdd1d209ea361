"""The whole local stack — Azurite, the Service Bus-compatible broker and the local host running
function_app.py — on free ports, exactly as `make demo` starts it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from localstack.llm.scripted import ScriptedLLM, grading_responder, scripted_llm
from localstack.stack import LocalStack, Ports

E2E_MAX_DELIVERY_COUNT = 3


@pytest.fixture(scope="session")
def llm() -> Iterator[ScriptedLLM]:
    """The LLM behind the flows' `aoai` connection: scripted so metric values are known (stands in for Azure
    OpenAI)."""
    with scripted_llm() as server:
        yield server


@pytest.fixture(scope="session")
def grader() -> Iterator[ScriptedLLM]:
    """As `llm`, and also the post-production judge (flows/math_coding/flows/judge): 5 for a right answer, else 1."""
    with scripted_llm(grading_responder) as server:
        yield server


@contextmanager
def running_stack(state_dir: Path, llm: ScriptedLLM, **settings: str) -> Iterator[LocalStack]:
    """The local stack on free ports, its LLM the scripted one, as the e2e modules need it; stopped after."""
    stack = LocalStack(state_dir=state_dir, ports=Ports.free(), max_delivery_count=E2E_MAX_DELIVERY_COUNT,
                       lock_duration_seconds=10, with_model=False,
                       extra_settings={"AOAI_BASE_URL": llm.base_url, "AOAI_API_KEY": "not-a-real-key", **settings})
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("stack"), llm, HEARTBEAT_SCHEDULE="*/2 * * * * *",
                       APPROVERS="alice@contoso.com,Bob@Contoso.com", APPROVAL_EXPIRY_SCHEDULE="*/1 * * * * *",
                       LOCAL_ROUTER_SEED="20261125") as started:
        yield started


@pytest.fixture(scope="session")
def storage(stack: LocalStack) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(stack.storage_connection_string)


@pytest.fixture(scope="session")
def http(stack: LocalStack) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = "genaiops-e2e"
    return session


def wait_for(probe: Callable[[], Any], timeout: float = 30, interval: float = 0.25, what: str = "condition") -> Any:
    """Poll until probe() returns something truthy; fail with a clear message on time-out."""
    import time

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as error:  # noqa: BLE001 - keep polling; the last error is reported on time-out
            last_error, value = error, None
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})")
