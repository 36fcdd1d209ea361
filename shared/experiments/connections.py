"""experiment.yaml connections: their fields, where `${placeholder}` values and setting overrides come from, and the
executor's connection specs built from them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from shared.experiments.fields import ExperimentConfigError, MissingSecretError, check_name, type_name
from shared.experiments.runner import ConnectionSpec
from shared.redaction import register_secrets

if TYPE_CHECKING:
    from shared.experiments.experiment_model import ExperimentConfig

ConnectionType = Literal["AzureOpenAIConnection", "OpenAIConnection", "CustomConnection"]

_PLACEHOLDER = re.compile(r"^\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}$")
_SECRET_FIELD = re.compile(r"(key|secret|password|passwd|token|credential|connection[_-]?string)s?$", re.I)
_CONNECTION_TYPES = {kind.lower(): kind for kind in get_args(ConnectionType)}


def is_secret_field(field: str) -> bool:
    """Whether a connection field holds a secret (the runner keeps these as SecretStr, never logs them)."""
    return bool(_SECRET_FIELD.search(field))


def secret_variable(connection_name: str, placeholder: str) -> str:
    """The setting `${placeholder}` in a connection reads, `<CONNECTION>_<PLACEHOLDER>` upper-cased; with a field name,
    the setting that overrides that field (`api_base` in `aoai` -> AOAI_API_BASE)."""
    return re.sub(r"[^A-Za-z0-9]", "_", f"{connection_name}_{placeholder}").upper()


def field_variable(connection_name: str, field: str, written: str, env: Mapping[str, str]) -> str | None:
    """The setting a field's value comes from where the flow runs: the field's own `<CONNECTION>_<FIELD>` when `env`
    has it (it overrides what is written, as in resolve_connection), else a `${placeholder}`'s; None: the literal."""
    own = secret_variable(connection_name, field)
    if own in env:
        return own
    match = _PLACEHOLDER.match(written)
    return secret_variable(connection_name, match.group(1)) if match else None


class ConnectionConfig(BaseModel):
    """A promptflow connection. Fields other than name and connection_type (api_base, api_version, api_key, ...) are
    kept as written; every secret-looking field must be a `${...}` placeholder (see resolve_connection)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    connection_type: ConnectionType | None = Field(
        default=None, description="None: a connection that already exists where the flow runs (name only)."
    )

    @model_validator(mode="before")
    @classmethod
    def _fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        kind = data.get("connection_type")
        if isinstance(kind, str):
            data["connection_type"] = _CONNECTION_TYPES.get(kind.lower(), kind)  # the template compares lower-cased
        problems: list[str] = []
        for field, value in data.items():
            if field in ("name", "connection_type"):
                continue
            if not isinstance(value, str | int | float | bool):
                problems.append(f"{field}: must be a single value (got a {type_name(value)})")
                continue
            data[field] = str(value).lower() if isinstance(value, bool) else str(value)
            if is_secret_field(str(field)) and not _PLACEHOLDER.match(data[field]):
                variable = secret_variable(str(data.get("name", "<name>")), str(field))
                problems.append(
                    f"{field} holds a literal value, but experiment.yaml must not contain secrets; write "
                    f"'{field}: ${{{field}}}' and set {variable} in the environment (or Key Vault)"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return check_name(value)

    @property
    def fields(self) -> dict[str, str]:
        """The connection's own fields as written (placeholders unresolved)."""
        return dict(self.model_extra or {})


class SecretSource(Protocol):
    """Where placeholder values come from: the environment, Key Vault, ... (first source with a value wins)."""

    def get(self, name: str) -> str | None: ...


class EnvSecretSource:
    """App settings as the composition root hands them (shared/application.py: the process environment)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str) -> str | None:
        return self._env.get(name)

    def __repr__(self) -> str:
        return "EnvSecretSource()"  # never the values


def resolve_connection(
    conn: ConnectionConfig, env: Mapping[str, str] | None = None, sources: Sequence[SecretSource] = ()
) -> dict[str, str]:
    """The connection's fields as the executor gets them.

    A setting named after the field (`api_base` in connection `aoai` -> AOAI_API_BASE) wins over what the file
    says, a literal or a placeholder, so one experiment.yaml runs against any endpoint in every environment.
    Otherwise `${api_key}` in `aoai` reads AOAI_API_KEY (the template's case-preserved `aoai_api_key` is tried
    next, so migrated pipelines keep working) and a literal stays as written. Lookup order: `env` (the app
    settings the caller was given; nothing is read from the process environment here), then `sources`. The
    result holds secrets: hand it to the executor, never log or store it."""
    chain: list[SecretSource] = [EnvSecretSource(env)] if env is not None else []
    chain.extend(sources)

    def lookup(names: Sequence[str]) -> str | None:
        return next((v for source in chain for name in names if (v := source.get(name)) is not None), None)

    resolved: dict[str, str] = {}
    missing: list[str] = []
    for field, value in conn.fields.items():
        match = _PLACEHOLDER.match(value)
        names = [secret_variable(conn.name, field)]
        if match is not None:
            names += [secret_variable(conn.name, match.group(1)), f"{conn.name}_{match.group(1)}"]
        found = lookup(list(dict.fromkeys(names)))
        if found is not None:
            resolved[field] = found
        elif match is None:
            resolved[field] = value
        else:
            missing.append(f"{field} (${{{match.group(1)}}}) -> {secret_variable(conn.name, match.group(1))}")
    if missing:
        raise MissingSecretError(
            f"connection {conn.name!r}: no value for {'; '.join(missing)}; set the environment variable(s) "
            "(or the Key Vault secret(s)) named there"
        )
    return resolved


def connection_specs(config: ExperimentConfig, env: Mapping[str, str]) -> list[ConnectionSpec]:
    specs = []
    for connection in config.connections:
        if connection.connection_type is None:
            raise ExperimentConfigError(
                f"connection {connection.name!r} names no connection_type: the executor needs its type and fields "
                "(connections stored in a promptflow connection store are not used inside the Function)"
            )
        fields = resolve_connection(connection, env)
        secrets = {k: SecretStr(v) for k, v in fields.items() if is_secret_field(k)}
        register_secrets(secrets.values())  # masked in logs, events and reports from here on, wherever they echo
        specs.append(ConnectionSpec(
            name=connection.name, type=connection.connection_type,
            values={k: v for k, v in fields.items() if not is_secret_field(k)}, secrets=secrets,
        ))
    return specs
