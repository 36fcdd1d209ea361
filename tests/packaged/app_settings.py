"""The app settings Terraform writes for an environment, resolved without Terraform.

infra/functionapp.tf's `app_settings = merge(local.a, local.b, ...)` is read with python-hcl2 (the helpers of
tests/infra/test_terraform.py); a conditional map (`var.x == "v" ? {...} : {}`) is taken or not by the
environment's tfvars, and every `${...}` is replaced by: a variable (the environment's tfvars, over the inputs the
pipeline passes as TF_VAR_*), `join(sep, var.list)`, or a resource attribute / local from a fixture of what
`terraform apply` would have produced. An expression the fixture does not know fails loudly, so a setting added
to Terraform needs a value here before the packaged app can be tested with it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hcl2

from tests.infra.test_terraform import ENVIRONMENTS, HCL_OPTIONS, block, locals_, resource

_INTERPOLATION = re.compile(r"\$\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_CONDITIONAL = re.compile(r'^\$\{var\.(\w+) == "([^"]*)" \? \{(.*)\} : \{\}\}$', re.S)
_JOIN = re.compile(r'^join\("((?:[^"\\]|\\.)*)", var\.(\w+)\)$')
_ENTRY = re.compile(r'"(\w+)"\s*=\s*"((?:[^"\\]|\\.)*)"')


class UnresolvedSetting(LookupError):
    pass


def tfvars(environment: str) -> dict[str, Any]:
    return hcl2.loads((ENVIRONMENTS / f"{environment}.tfvars").read_text(encoding="utf-8"),
                      serialization_options=HCL_OPTIONS)


def _setting_maps(variables: Mapping[str, Any]) -> dict[str, str]:
    """name -> value expression, for the maps app_settings merges, conditionals decided by `variables`."""
    app = resource("azurerm_function_app_flex_consumption", "this")
    known = locals_()
    settings: dict[str, str] = {}
    for name in re.findall(r"local\.(\w+)", app["app_settings"]):
        value = known[name]
        if isinstance(value, dict):
            settings.update({str(k): str(v) for k, v in value.items()})
            continue
        condition = _CONDITIONAL.match(value)
        if condition is None:
            raise UnresolvedSetting(f"local.{name} is neither a map nor `var.x == \"v\" ? {{...}} : {{}}`: {value}")
        variable, wanted, entries = condition.groups()
        if variables[variable] == wanted:
            settings.update(dict(_ENTRY.findall(entries)))
    # The provider writes APPLICATIONINSIGHTS_CONNECTION_STRING from site_config.
    site_config = block(app, "site_config")
    settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] = site_config["application_insights_connection_string"]
    return settings


def _resolve(expression: str, variables: Mapping[str, Any], outputs: Mapping[str, str]) -> str:
    expression = expression.strip()
    joined = _JOIN.match(expression)
    if joined:
        return json.loads(f'"{joined.group(1)}"').join(variables[joined.group(2)])
    if expression.startswith("var."):
        return str(variables[expression.removeprefix("var.")])
    if expression in outputs:
        return outputs[expression]
    raise UnresolvedSetting(f"no value for ${{{expression}}}: add it to the Terraform outputs fixture")


def app_settings(environment: str, pipeline_inputs: Mapping[str, Any], outputs: Mapping[str, str]) -> dict[str, str]:
    """Exactly the app settings Terraform would write for `environment`, given the pipeline's TF_VAR_* inputs and
    the values of the resources it creates."""
    variables = {**pipeline_inputs, **tfvars(environment)}
    return {name: _INTERPOLATION.sub(lambda found: _resolve(found.group(1), variables, outputs), value)
            for name, value in _setting_maps(variables).items()}


def write_local_settings(path: Path, settings: Mapping[str, str]) -> Path:
    """The settings in local.settings.json form, which the local host reads."""
    path.write_text(json.dumps({"IsEncrypted": False, "Values": dict(settings)}, indent=2), encoding="utf-8")
    return path
