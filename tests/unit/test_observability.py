from __future__ import annotations

import json
import logging

from pydantic import SecretStr

from shared.observability import CorrelationFilter, JsonFormatter, configure_telemetry, correlation


def render(message: str, *args: object) -> dict:
    record = logging.LogRecord("genaiops.test", logging.INFO, __file__, 1, message, args, None)
    CorrelationFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_every_line_carries_the_current_correlation_id() -> None:
    with correlation("build-42"):
        assert render("inside")["correlation_id"] == "build-42"
    assert render("outside")["correlation_id"] == "-"


def test_secrets_in_log_messages_are_masked() -> None:
    line = render("connecting with %s", "Endpoint=sb://x;SharedAccessKey=s3cr3t")
    assert "s3cr3t" not in line["msg"]


def test_no_exporter_without_an_app_insights_connection_string() -> None:
    assert configure_telemetry(None) is False
    assert configure_telemetry(SecretStr("")) is False
