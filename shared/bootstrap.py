"""Composition root: the real adapters, built from settings once per process on first use — not at import,
so importing function_app.py (the cold start) stays cheap. Heavy SDKs load here, lazily."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.application import Application


@lru_cache(maxsize=1)
def get_application() -> Application:
    from shared.adapters.azure_blob import AzureBlobStore, blob_service_client
    from shared.adapters.clock import SystemClock
    from shared.adapters.promptflow_runner import PromptflowRunner
    from shared.adapters.servicebus import ServiceBusPublisher, servicebus_client
    from shared.application import Application
    from shared.observability import configure_telemetry
    from shared.settings import get_settings

    settings = get_settings()
    configure_telemetry()
    blobs = AzureBlobStore(blob_service_client(settings))
    bus = ServiceBusPublisher(servicebus_client(settings), settings.events_queue)
    return Application(settings, blobs, bus, SystemClock(), PromptflowRunner())
