"""Handler failures a retry cannot fix, told apart from the ones it can.

The message bus asks `permanent_reason(error)` about whatever a handler raises. A permanent failure ends the run on
its first delivery: the stage's failure event (`handlers.FAILURE_EVENTS`: experiment.failed, deployment.rolled_back,
...) or, for a stage that has none, a dead-letter record journaled under the run's correlation id — and the message
is completed. Anything else (storage, network, the bus, a lost race) propagates, so the broker retries it.
"""

from __future__ import annotations

from shared.experiments.config import ExperimentConfigError
from shared.experiments.datasets import DatasetError
from shared.experiments.gate import GateConfigError
from shared.experiments.mappings import MappingError
from shared.experiments.variants import FlowVariantsError
from shared.redaction import redact_text
from shared.registry.port import InvalidName


class PermanentFailure(Exception):
    """Raise (or subclass) for a failure that would fail the same way on every retry."""


# Raised by modules that know nothing of the bus; each means bad configuration, data or names — input a person has
# to change, not a fault that goes away (a missing use case folder is an ExperimentConfigError).
_PERMANENT: tuple[type[Exception], ...] = (
    PermanentFailure, ExperimentConfigError, DatasetError, MappingError, FlowVariantsError, GateConfigError,
    InvalidName,
)


def permanent_reason(error: BaseException) -> str | None:
    """`ErrorType: message` (secrets redacted) for a permanent failure; None for one a retry may fix."""
    if not isinstance(error, _PERMANENT):
        return None
    return redact_text(f"{type(error).__name__}: {error}")[:2000]
