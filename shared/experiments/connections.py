"""experiment.yaml connections -> the executor's connection specs, secrets resolved from the environment."""

from __future__ import annotations

from collections.abc import Mapping

from shared.experiments.config import ExperimentConfig, ExperimentConfigError, is_secret_field, resolve_connection
from shared.experiments.runner import ConnectionSpec
from shared.redaction import register_secrets


def connection_specs(config: ExperimentConfig, env: Mapping[str, str] | None = None) -> list[ConnectionSpec]:
    specs = []
    for connection in config.connections:
        if connection.connection_type is None:
            raise ExperimentConfigError(
                f"connection {connection.name!r} names no connection_type: the executor needs its type and fields "
                "(connections stored in a promptflow connection store are not used inside the Function)"
            )
        fields = resolve_connection(connection, env)
        secrets = {k: v for k, v in fields.items() if is_secret_field(k)}
        register_secrets(secrets.values())  # masked in logs, events and reports from here on, wherever they echo
        specs.append(ConnectionSpec(
            name=connection.name, type=connection.connection_type,
            values={k: v for k, v in fields.items() if not is_secret_field(k)}, secrets=secrets,
        ))
    return specs
