"""The ProductionLog of Azure ML online endpoints: what their data collector writes (the deployer enables
`model_inputs` and `model_outputs`, shared/deployment/azureml_entities.py DATA_COLLECTIONS) to the workspace's
default blob datastore (its container URL: the app setting AZUREML_DATA_COLLECTOR_CONTAINER_URL), read with
azure-storage-blob. Post-production evaluation judges these lines.

Layout and format as documented in
https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data#store-collected-data-in-blob-storage
— `modelDataCollector/{endpoint}/{deployment}/{collection}/{yyyy}/{MM}/{dd}/{HH}/{instance_id}.jsonl` (the hourly
rolling rate, the default), each line a CloudEvent whose `data` holds what was collected and whose `correlationid`
ties a request's inputs to its outputs. Prompt flow's serving app collects one single-row DataFrame per request
(promptflow.core._serving.monitor.data_collector), so `data` is a list of records; the collector may batch requests
sent close together into one event (one correlationid, several rows): the rows at the same position of the inputs
and outputs events are one request.
The collector records payloads, not HTTP status or latency: a request whose outputs were collected counts as
served (status 200), one with inputs only has no status; error rate and latency in Azure come from the endpoint's
traffic log (shared/monitoring/azure_traffic.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.feedback.telemetry import TelemetryError
from shared.monitoring.production_log import ProductionLine, days, loggable

COLLECTOR_ROOT = "modelDataCollector"
INPUTS, OUTPUTS = "model_inputs", "model_outputs"


class AzureMLProductionLog:
    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    @classmethod
    def from_container_url(cls, url: str | None) -> AzureMLProductionLog | None:
        """The reader over the workspace's default datastore container (e.g.
        https://<account>.blob.core.windows.net/azureml-blobstore-<workspace id>) with the app's identity; None
        when it is not configured."""
        if not url:
            return None
        from shared.adapters.credentials import azure_credential

        return cls(ContainerClient.from_container_url(url, credential=azure_credential()))

    def lines(self, use_case: str, endpoint: str, start: datetime, end: datetime) -> list[ProductionLine]:
        """TelemetryError when the storage cannot be read (no access, unreachable)."""
        try:
            events = list(self._events(endpoint, start, end))
        except AzureError as failure:
            raise TelemetryError(f"the data collector's output of {endpoint} cannot be read: "
                                 f"{type(failure).__name__}") from None
        requests: dict[tuple[str, str], dict[str, Any]] = {}
        for deployment, collection, event in events:
            correlation = str(event.get("correlationid") or event.get("xrequestid") or event.get("id"))
            rows = _rows(event.get("data"))
            for index, row in enumerate(rows):
                request_id = correlation if len(rows) == 1 else f"{correlation}#{index}"
                seen = requests.setdefault((deployment, request_id), {"time": _time(event.get("time"))})
                seen[collection] = row
        found = [ProductionLine(time=seen["time"], use_case=use_case, endpoint=endpoint, request_id=request_id,
                                deployment=deployment, status=200 if OUTPUTS in seen else None,
                                inputs=loggable(seen.get(INPUTS)), outputs=loggable(seen.get(OUTPUTS)))
                 for (deployment, request_id), seen in requests.items()]
        return sorted((line for line in found if start <= line.time <= end), key=lambda line: line.time)

    def _events(self, endpoint: str, start: datetime, end: datetime) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(deployment, collection, event) of every collected line in the hours the window touches."""
        wanted_days = {f"{day:%Y/%m/%d}" for day in days(start, end)}
        first_hour, last_hour = start.strftime("%Y/%m/%d/%H"), end.strftime("%Y/%m/%d/%H")
        try:
            names = [blob.name for blob in self.container.list_blobs(name_starts_with=f"{COLLECTOR_ROOT}/{endpoint}/")]
        except ResourceNotFoundError:
            return
        for name in names:
            parts = name.split("/")
            # modelDataCollector / endpoint / deployment / collection / yyyy / MM / dd / HH / file
            if len(parts) != 9 or parts[3] not in (INPUTS, OUTPUTS) or "/".join(parts[4:7]) not in wanted_days:
                continue
            if not first_hour <= "/".join(parts[4:8]) <= last_hour:
                continue
            try:
                data = self.container.download_blob(name).readall()
            except ResourceNotFoundError:  # rolled away meanwhile
                continue
            for raw in data.splitlines():
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    yield parts[2], parts[3], event


def _rows(data: Any) -> list[Any]:
    """The requests an event holds: each record of a collected DataFrame (a list of objects); anything else
    (a payload-logging body) is one request."""
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return list(data)
    return [data]


def _time(value: Any) -> datetime:
    """A CloudEvent's time: ISO 8601, or epoch seconds as some collector versions write it."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
