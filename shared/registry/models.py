"""What the registry hands back: one registered version of a dataset or of a flow."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

CONTENT_HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"


class DataVersion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str = Field(description='"1", "2", ... per name')
    content_hash: str | None = Field(
        pattern=CONTENT_HASH_PATTERN,
        description="None only for a version someone registered by hand, without the content_hash tag.",
    )
    source_uri: str = Field(description="Where the data is, as the caller named it (blob://container/path, ...).")
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict, description="As stored, including the content_hash tag.")
    created_at: datetime
    previous_version: str | None = Field(default=None, description="The latest version when this one was made.")


class FlowVersion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str = Field(description='"1", "2", ... per name')
    content_hash: str | None = Field(pattern=CONTENT_HASH_PATTERN)
    properties: dict[str, str] = Field(
        default_factory=dict, description="Metrics, variant, dataset versions, git commit, build id — all strings."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="As stored, including the content_hash tag.")
    created_at: datetime
    artifact_uri: str = Field(
        description="Where the flow's files are: blob://registry/flows/{name}/{version}/files/ locally, "
                    "azureml:{name}:{version} (a model reference a deployment can use) on Azure ML."
    )
    previous_version: str | None = None
