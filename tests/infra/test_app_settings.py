"""Every app setting a binding refers to (%NAME%) is set in Azure (Terraform) and on the local stack."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, re, function_app
names = set()
for function in function_app.app.get_functions():
    for value in function.get_trigger().get_dict_repr().values():
        names.update(re.findall(r"%([A-Za-z0-9_]+)%", str(value)))
print(json.dumps(sorted(names)))
"""


def binding_settings() -> set[str]:
    output = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, check=True, capture_output=True, text=True)
    return set(json.loads(output.stdout))


def test_binding_settings_exist_in_terraform_and_locally() -> None:
    referenced = binding_settings()
    assert "EVENTS_QUEUE" in referenced  # the probe really reads the bindings
    terraform = set(re.findall(r'^\s*"([A-Za-z0-9_]+)"\s*=', (ROOT / "infra" / "functionapp.tf").read_text(), re.M))
    local = set(json.loads((ROOT / "local.settings.example.json").read_text())["Values"])
    assert referenced - terraform == set()
    assert referenced - local == set()
