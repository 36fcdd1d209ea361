"""Every log line is masked, including promptflow's own loggers, handlers and formatters."""

import io
import logging
import uuid

import pytest

from shared.observability import JsonFormatter, install_masking
from shared.redaction import REDACTED, register_secret


@pytest.fixture
def secret() -> str:
    install_masking({})
    value = f"canary{uuid.uuid4().hex}"
    register_secret(value)
    return value


def capture(logger: logging.Logger, formatter: logging.Formatter | None = None) -> io.StringIO:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter or logging.Formatter("%(name)s %(message)s"))
    logger.addHandler(handler)
    return stream


def test_promptflow_execution_loggers_outside_the_logging_tree_are_masked(secret: str) -> None:
    from promptflow._utils.logger_utils import CredentialScrubberFormatter, flow_logger

    # flow_logger is a bare logging.Logger: no parent, its own handlers; a root filter would never see it.
    assert flow_logger.parent is None
    stream = capture(flow_logger, CredentialScrubberFormatter(fmt="%(message)s"))
    try:
        flow_logger.error("Node llm fails: Incorrect API key provided: %s.", secret)
    finally:
        flow_logger.removeHandler(flow_logger.handlers[-1])
    assert secret not in stream.getvalue()
    assert f"provided: {REDACTED}." in stream.getvalue()


def test_a_logger_created_later_with_its_own_handler_is_masked(secret: str) -> None:
    logger = logging.getLogger(f"late.{uuid.uuid4().hex}")
    logger.propagate = False
    stream = capture(logger)
    logger.warning("calling with headers %s", {"api-key": secret})
    assert secret not in stream.getvalue()


def test_tracebacks_and_stacks_are_masked(secret: str) -> None:
    logger = logging.getLogger(f"tb.{uuid.uuid4().hex}")
    logger.propagate = False
    stream = capture(logger)
    try:
        raise RuntimeError(f"401 Incorrect API key provided: {secret}")
    except RuntimeError:
        logger.exception("line failed")
    logger.error("where: %s", secret, stack_info=True)
    text = stream.getvalue()
    assert "RuntimeError: 401 Incorrect API key provided: ***" in text
    assert secret not in text


def test_the_json_lines_carry_masked_messages(secret: str) -> None:
    logger = logging.getLogger(f"json.{uuid.uuid4().hex}")
    logger.propagate = False
    stream = capture(logger, JsonFormatter())
    logger.warning("Authorization: Bearer %s", secret)
    assert secret not in stream.getvalue()
    assert "Bearer ***" in stream.getvalue()


def test_installing_twice_wraps_the_factory_once(secret: str) -> None:
    factory = logging.getLogRecordFactory()
    install_masking({})
    assert logging.getLogRecordFactory() is factory


def test_what_a_library_prints_is_masked(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    install_masking({})  # wraps the streams pytest put in place for this test
    print(f"Exception occurs: AuthenticationError: Incorrect API key provided: {secret}.", file=sys.stderr)
    print(f"token {secret}")
    captured = capsys.readouterr()
    assert secret not in captured.err + captured.out
    assert f"provided: {REDACTED}." in captured.err
