"""Load function_app.py and describe its functions the way the host sees them (bindings, not code)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func

_APP_SETTING = re.compile(r"%([A-Za-z0-9_]+)%")


class HostConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    trigger_type: str          # blobTrigger | serviceBusTrigger | httpTrigger | timerTrigger | ...
    trigger: dict[str, Any]    # the binding, with %AppSetting% references resolved
    arg_name: str
    user_function: Callable[..., Any]


def resolve_app_settings(value: Any) -> Any:
    """Replace %NAME% with the app setting NAME, as the real host does for binding expressions."""
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise HostConfigError(f"binding refers to app setting %{name}% but it is not set")
        return os.environ[name]

    return _APP_SETTING.sub(lookup, value)


def load_local_settings(path: Path) -> dict[str, str]:
    """Values from local.settings.json into the environment (existing variables win, like Core Tools)."""
    if not path.exists():
        return {}
    values = json.loads(path.read_text()).get("Values", {})
    for key, value in values.items():
        os.environ.setdefault(key, str(value))
    return values


def load_function_app(script: Path) -> func.FunctionApp:
    script = script.resolve()
    sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location(script.stem, script)
    if spec is None or spec.loader is None:
        raise HostConfigError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[script.stem] = module
    spec.loader.exec_module(module)
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionApp)]
    if len(apps) != 1:
        raise HostConfigError(f"{script} must define exactly one FunctionApp, found {len(apps)}")
    return apps[0]


def describe_functions(app: func.FunctionApp) -> list[FunctionSpec]:
    specs = []
    for function in app.get_functions():
        name = function.get_function_name() or function.get_user_function().__name__  # the SDK's own default
        trigger = function.get_trigger()
        if trigger is None:
            raise HostConfigError(f"function {name} has no trigger")
        binding = {key: resolve_app_settings(value) for key, value in trigger.get_dict_repr().items()}
        extra = [b.get_dict_repr() for b in function.get_bindings()
                 if b is not trigger and b.get_dict_repr().get("name") != "$return"]
        if extra:
            raise HostConfigError(f"{name}: extra bindings are not supported locally: {extra}")
        specs.append(FunctionSpec(
            name=name, trigger_type=binding["type"], trigger=binding,
            arg_name=binding["name"], user_function=function.get_user_function(),
        ))
    return specs


def load_host_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}
