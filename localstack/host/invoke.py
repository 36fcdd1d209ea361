"""Calling a user function the way the worker does, with host-style log lines around each invocation."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from typing import Any

from localstack.host.loader import FunctionSpec

log = logging.getLogger("localhost.invoke")


def invoke(spec: FunctionSpec, argument: Any, reason: str) -> Any:
    invocation_id = str(uuid.uuid4())
    log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, invocation_id)
    started = time.perf_counter()
    try:
        result = spec.user_function(**{spec.arg_name: argument})
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    except Exception:
        elapsed = (time.perf_counter() - started) * 1000
        log.exception("Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)", spec.name, invocation_id, elapsed)
        raise
    elapsed = (time.perf_counter() - started) * 1000
    log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)", spec.name, invocation_id, elapsed)
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable
