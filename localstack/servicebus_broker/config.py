"""Broker settings and the matching Service Bus connection string."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_KEY_NAME = "RootManageSharedAccessKey"
DEFAULT_KEY = "local-dev-key"  # not a secret: the broker accepts any token
STANDARD_TIER_MAX_MESSAGE_SIZE = 256 * 1024


@dataclass(frozen=True)
class BrokerConfig:
    """How to run the broker. ``port=0`` picks a free port (read it back from ``Broker.port``)."""

    host: str = "127.0.0.1"
    port: int = 5672
    queues: tuple[str, ...] = ()
    max_delivery_count: int = 10
    lock_duration: float = 30.0  # seconds, like the Service Bus default (PT30S)
    data_dir: str | None = None
    max_message_size: int = STANDARD_TIER_MAX_MESSAGE_SIZE
    lock_check_interval: float = 0.1  # how often expired locks are looked for, in seconds

    def __post_init__(self) -> None:
        if self.max_delivery_count < 1:
            raise ValueError("max_delivery_count must be at least 1")
        if self.lock_duration <= 0:
            raise ValueError("lock_duration must be positive")


def connection_string(host: str, port: int, key: str = DEFAULT_KEY, key_name: str = DEFAULT_KEY_NAME) -> str:
    """A connection string the azure-servicebus SDK accepts for this broker (plain AMQP, no TLS)."""
    return f"Endpoint=sb://{host}:{port};SharedAccessKeyName={key_name};SharedAccessKey={key};UseDevelopmentEmulator=true"
