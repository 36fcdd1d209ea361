"""Where the console's connections come from: the environment first, then a local.settings.json (the local stack's
`.localstack/local.settings.json` unless --settings names another), so a newcomer exports nothing by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_SETTINGS = Path(".localstack") / "local.settings.json"
SETTINGS_ENV = "GENAIOPS_SETTINGS"


def settings_path(explicit: Path | None) -> Path | None:
    """The settings file to read: --settings, then $GENAIOPS_SETTINGS, then the local stack's, if it exists."""
    if explicit is not None:
        if not explicit.is_file():
            raise FileNotFoundError(f"settings file {explicit} does not exist")
        return explicit
    named = os.environ.get(SETTINGS_ENV)
    if named:
        return Path(named)
    return DEFAULT_SETTINGS if DEFAULT_SETTINGS.is_file() else None


def load_settings(path: Path | None) -> dict[str, str]:
    """Put the file's values into this process's environment, never over a value already set (so CI variables
    win). A console command is one short process with one job: its environment is its own."""
    if path is None:
        return {}
    values = {str(key): str(value) for key, value in json.loads(path.read_text())["Values"].items()}
    for key, value in values.items():
        os.environ.setdefault(key, value)
    return values
