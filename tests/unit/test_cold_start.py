"""Importing function_app.py (the cold start) must not pull in the heavy SDKs; they load on first use."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("promptflow", "azure.ai.ml", "azure.storage.blob", "azure.servicebus", "azure.identity", "openai")


def test_function_app_import_is_lazy() -> None:
    probe = f"import sys, function_app; print([m for m in {HEAVY!r} if m in sys.modules])"
    output = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
    assert output.stdout.strip() == "[]"


def test_function_app_registers_every_trigger_family() -> None:
    probe = "import function_app; print(sorted({f.get_trigger().get_dict_repr()['type'] " \
            "for f in function_app.app.get_functions()}))"
    output = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
    assert output.stdout.strip() == "['blobTrigger', 'httpTrigger', 'serviceBusTrigger', 'timerTrigger']"
