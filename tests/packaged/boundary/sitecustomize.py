"""Azure, answered at the SDK boundary — for the packaged-artifact test's host process only.

Python imports `sitecustomize` at start-up from the path; tests/packaged puts this folder on the PYTHONPATH of the
host process it starts (never in the Function package). With GENAIOPS_FAKE_AZURE naming a JSON file it:

- swaps azure-identity's credentials for a fake token credential (the managed identity);
- points Blob clients built from `https://<account>.blob.core.windows.net` at Azurite (with its published key:
  Azurite takes no Entra ID tokens over http) and Service Bus clients built from `<ns>.servicebus.windows.net` at
  the local broker (no TLS, as for the Service Bus emulator);
- answers every MLClient's endpoint, deployment, model, data and connection operations from one in-memory
  workspace (tests/fakes/azure_sdk.py);
- answers Azure Resource Manager for azure-mgmt-monitor (the endpoints' diagnostic settings), journaling each
  request beside the workspace's calls;
- answers Log Analytics queries of AmlOnlineEndpointTrafficLog (tests/fakes/log_analytics.py runs the KQL) over the
  requests that workspace's endpoints served and the rows a test seeded in its state folder (`seed_rows`);
- sends the Azure OpenAI client's calls for the fake endpoint to the scripted LLM.

The app's own code runs unchanged: only SDK classes are wrapped.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CONFIG_SETTING = "GENAIOPS_FAKE_AZURE"


def _wrap_init(cls: type, rewrite: Any) -> None:
    """cls.__init__ with its arguments passed through `rewrite(args, kwargs) -> (args, kwargs)` first."""
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        args, kwargs = rewrite(args, kwargs)
        original(self, *args, **kwargs)

    cls.__init__ = __init__


def _argument(args: tuple, kwargs: dict, name: str) -> tuple[Any, tuple, dict]:
    """The first positional-or-keyword argument `name`, removed from args/kwargs."""
    if name in kwargs:
        return kwargs.pop(name), args, kwargs
    return args[0], args[1:], kwargs


def install(config: dict[str, Any]) -> None:
    import azure.identity
    import openai
    from azure.ai.ml import MLClient
    from azure.mgmt.monitor import MonitorManagementClient
    from azure.monitor.query import LogsQueryClient, LogsQueryResult
    from azure.servicebus import ServiceBusClient
    from azure.storage.blob import BlobServiceClient
    from azure_sdk import ArmAdapter, AzureMLWorkspace, FakeCredential, arm_transport
    from log_analytics import run_query, seeded_rows

    for name in ("DefaultAzureCredential", "ManagedIdentityCredential", "AzurePipelinesCredential"):
        setattr(azure.identity, name, FakeCredential)

    azurite = config["azurite"]

    def blob(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        url, args, kwargs = _argument(args, kwargs, "account_url")
        if (urlsplit(url).hostname or "").endswith(".blob.core.windows.net"):
            url = azurite["blob_endpoint"]
            kwargs["credential"] = {"account_name": azurite["account"], "account_key": azurite["key"]}
        return (url, *args), kwargs

    def servicebus(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        namespace, args, kwargs = _argument(args, kwargs, "fully_qualified_namespace")
        if namespace.endswith(".servicebus.windows.net"):
            namespace, kwargs["use_tls"] = config["broker"], False
        return (namespace, *args), kwargs

    def azure_openai(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if str(kwargs.get("azure_endpoint", "")).rstrip("/") == config["openai"]["endpoint"].rstrip("/"):
            kwargs["azure_endpoint"] = config["openai"]["target"]
        return args, kwargs

    _wrap_init(BlobServiceClient, blob)
    _wrap_init(ServiceBusClient, servicebus)
    _wrap_init(openai.AzureOpenAI, azure_openai)

    workspace = AzureMLWorkspace(Path(config["state_dir"]))
    original = MLClient.__init__

    @functools.wraps(original)
    def ml_client(self: MLClient, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        workspace.attach(self)

    MLClient.__init__ = ml_client

    arm = ArmAdapter(on_send=lambda method, url, body: workspace._journal(
        f"arm.{method.lower()}", url=url.split("?")[0], body=body))

    def monitor(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        kwargs["transport"] = arm_transport(arm)
        return args, kwargs

    _wrap_init(MonitorManagementClient, monitor)

    signature = inspect.signature(LogsQueryClient.query_workspace)

    def query_workspace(self: LogsQueryClient, *args: Any, **kwargs: Any) -> LogsQueryResult:
        arguments = signature.bind(self, *args, **kwargs).arguments  # a wrong call fails as it would in Azure
        with workspace._lock:
            rows = [*workspace.traffic, *seeded_rows(workspace.state_dir)]
        return run_query(arguments["query"], rows, arguments.get("timespan"))

    LogsQueryClient.query_workspace = query_workspace


if os.environ.get(CONFIG_SETTING):
    install(json.loads(Path(os.environ[CONFIG_SETTING]).read_text(encoding="utf-8")))
