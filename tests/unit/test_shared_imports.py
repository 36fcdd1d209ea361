"""shared/ is the app: it never imports the local stack (localstack/), which the Function package does not ship.
The local target is loaded by name from a setting (shared/deployment/targets.py), never imported."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.append((node.lineno, str(node.args[0].value)))  # importlib.import_module("localstack...")
    return found


def test_no_module_under_shared_imports_localstack() -> None:
    offenders = []
    modules = sorted(SHARED.rglob("*.py"))
    assert len(modules) > 50
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offenders += [f"{path.relative_to(ROOT)}:{line}: {name}" for line, name in _imported_modules(tree)
                      if name == "localstack" or name.startswith("localstack.")]
    assert offenders == []


def test_the_domain_never_imports_the_reports() -> None:
    """The gate scores with shared.experiments.scoring; reports draw from it, never the other way round."""
    offenders = []
    for path in sorted((SHARED / "experiments").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offenders += [f"{path.relative_to(ROOT)}:{line}: {name}" for line, name in _imported_modules(tree)
                      if name == "shared.reports" or name.startswith("shared.reports.")]
    assert (SHARED / "experiments" / "gate.py").is_file()
    assert offenders == []


def test_use_cases_live_in_one_layer() -> None:
    """shared/services/ is the service layer; a feature package holds models, ports and adapters, no service.py."""
    elsewhere = [str(path.relative_to(ROOT)) for path in SHARED.rglob("service*.py")
                 if path.parent != SHARED / "services" and path.name != "servicebus.py"]
    assert (SHARED / "services" / "approvals.py").is_file()
    assert elsewhere == []


def test_the_check_sees_every_form_of_import() -> None:
    source = ("import localstack.stack\nfrom localstack.deployment import x\ndef f():\n"
              "    from localstack.serving.ab_router import read_telemetry\n"
              "    importlib.import_module('localstack.deployment')\n")
    names = [name for _, name in _imported_modules(ast.parse(source))]
    assert names == ["localstack.stack", "localstack.deployment", "localstack.serving.ab_router",
                     "localstack.deployment"]


def test_importing_every_shared_module_never_loads_localstack() -> None:
    """In a fresh interpreter: import every module under shared/ (and the Function entry point), then look."""
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for p in SHARED.rglob("*.py"))
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r} + ['function_app']:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'localstack' or m.startswith('localstack.'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
