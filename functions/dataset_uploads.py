"""Blob trigger: a dataset lands in the `datasets` container -> dataset.uploaded on the bus."""

from __future__ import annotations

import azure.functions as func

from shared.blob_layout import DATASETS
from shared.bootstrap import get_application
from shared.settings import STORAGE_CONNECTION

blueprint = func.Blueprint()


# EventGrid source: required on Flex Consumption, and faster than polling everywhere else.
@blueprint.blob_trigger(arg_name="blob", path=DATASETS + "/{name}", connection=STORAGE_CONNECTION,
                        source=func.BlobSource.EVENT_GRID)
def dataset_uploaded(blob: func.InputStream) -> None:
    container, _, blob_name = (blob.name or "").partition("/")
    properties = getattr(blob, "blob_properties", None) or {}
    get_application().on_blob_uploaded(container, blob_name, blob.length or 0, str(properties.get("ETag", "")))
