"""Structured logs that carry the correlation id on every line, and App Insights when it is configured.

Without APPLICATIONINSIGHTS_CONNECTION_STRING nothing is exported and nothing tries the network — the
local stack and CI stay silent. With it, the Azure Monitor OpenTelemetry distro is configured once.
Every record is masked for secrets (shared.redaction) as it is created, whichever library logs it.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import pythonjsonlogger.json
from pydantic import SecretStr

from shared.redaction import redact_text, register_environment

_correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")
_configured = False
_masking_lock = threading.Lock()


@contextlib.contextmanager
def correlation(correlation_id: str) -> Iterator[None]:
    token = _correlation_id.set(correlation_id)
    try:
        yield
    finally:
        _correlation_id.reset(token)


class CorrelationFilter(logging.Filter):
    """Stamps the current correlation id on every record (App Insights shows it as a custom dimension)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _correlation_id.get()
        return True


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """One JSON object per line (python-json-logger): time, level, logger, correlation id, message — masked again
    here for records built without the masking factory (LogRecord(...) directly)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(correlation_id)s %(message)s",
                         rename_fields={"asctime": "ts", "levelname": "level", "name": "logger", "message": "msg",
                                        "exc_info": "exc"})

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        if log_data.get("correlation_id") is None:  # a handler without CorrelationFilter
            log_data["correlation_id"] = _correlation_id.get()
        return {key: redact_text(value) if key in ("msg", "exc") and isinstance(value, str) else value
                for key, value in log_data.items()}


def _mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message, traceback and stack masked, before any handler or formatter sees it."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is reported by the handler as usual
        return record
    masked = redact_text(message)
    if masked != message:
        record.msg, record.args = masked, ()
    if record.exc_info and not record.exc_text:
        # Formatters reuse exc_text when it is set, so the traceback is rendered (and masked) once, here.
        record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    return record


class MaskingStream:
    """sys.stdout / sys.stderr with secrets masked: some libraries print instead of logging (promptflow's LLM tools
    print "Exception occurs: ..." with the provider's answer, a 401 echoing the key included). Masks per write, so
    a secret split over two writes would pass; print() writes its text in one."""

    masks_secrets = True

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(redact_text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, isatty...: the real stream's
        return getattr(self._inner, name)


class _MaskingFactory:
    """A log record factory that masks what the previous one built; `masks_secrets` keeps it from stacking."""

    masks_secrets = True

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self._previous = previous

    def __call__(self, *args: object, **kwargs: object) -> logging.LogRecord:
        return _mask_record(self._previous(*args, **kwargs))


def install_masking(app_settings: Mapping[str, str]) -> None:
    """Mask secrets in every log record of this process, from any logger and for any handler, and in what it
    prints.

    A record factory rather than a formatter or filter: promptflow builds its execution loggers with
    `logging.Logger(name)` (outside the logging tree, so root filters never see them) and gives them their own
    stdout handlers and formatters; every logger, however built, creates its records through the factory. The
    previous factory is kept and called first, so OpenTelemetry's (installed before or after) still works.
    Also registers the secret ones among `app_settings`, so their values are masked wherever they show up."""
    register_environment(app_settings)
    with _masking_lock:
        previous = logging.getLogRecordFactory()
        if not getattr(previous, "masks_secrets", False):
            logging.setLogRecordFactory(_MaskingFactory(previous))
        # Replaced before promptflow keeps a reference to them (its node log writers wrap what they find here).
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not getattr(stream, "masks_secrets", False):
                setattr(sys, name, MaskingStream(stream))


def configure_logging(app_settings: Mapping[str, str], level: int = logging.INFO, *, json_lines: bool = True) -> None:
    """Called by processes we own (local host, CLI), with the settings whose secrets to mask. Inside Azure the
    worker owns the handlers; we only add the correlation filter to them."""
    install_masking(app_settings)
    root = logging.getLogger()
    if json_lines and not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    # Handler-level, so records propagated from child loggers get the id too.
    for handler in root.handlers:
        if not any(isinstance(f, CorrelationFilter) for f in handler.filters):
            handler.addFilter(CorrelationFilter())
    root.setLevel(level)
    # The Azure SDKs log every HTTP request at INFO; keep ours readable.
    for noisy in ("azure", "azure.core.pipeline.policies.http_logging_policy", "uamqp", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def configure_telemetry(connection_string: SecretStr | None) -> bool:
    """Wire OpenTelemetry to App Insights once, only when a connection string is set (Settings'
    APPLICATIONINSIGHTS_CONNECTION_STRING). Returns whether it did."""
    global _configured  # noqa: PLW0603 - once per process, like the distro itself
    if _configured or connection_string is None or not connection_string.get_secret_value():
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(connection_string=connection_string.get_secret_value(), logger_name="genaiops")
    _configured = True
    return True
