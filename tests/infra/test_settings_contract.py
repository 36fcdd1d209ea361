"""The app settings Terraform writes are exactly the settings the app reads, in both directions.

What the app reads is collected from the code at test time, so a setting added to the code is picked up
without touching this file:

- every `validation_alias` of every pydantic `BaseSettings` class in shared/ (shared/settings.py, ...);
- every `%NAME%` in the bindings of function_app.py (the functions/ blueprints), and each binding's
  `connection` name, which the runtime reads as `<connection>__*` (identity-based) settings;
- the secrets the flows' connections read: `<CONNECTION>_<FIELD>` for each `${field}` placeholder in
  flows/*/experiment.yaml and experiment.{pr,dev,prod}.yaml (shared/experiments/config.py `secret_variable`);
- names read with os.environ / os.getenv in shared/, and module-level `*_SETTING` name constants there.

What Terraform writes is infra/functionapp.tf's app_settings (parsed with python-hcl2), plus
APPLICATIONINSIGHTS_CONNECTION_STRING, which the provider writes from site_config.

The only exceptions are the commented allow-lists below.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import re
from pathlib import Path

import yaml

from tests.infra.test_app_settings import binding_settings
from tests.infra.test_terraform import function_app_settings

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"

# Read by the Functions host / platform, not by the app's code.
HOST_SETTINGS = frozenset(
    {
        # Host storage, identity-based (AzureWebJobsStorage = "" is the provider work-around, functionapp.tf).
        "AzureWebJobsStorage",
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        # Entra ID authentication of the host's own Application Insights telemetry.
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    }
)

# Read by the code, deliberately not written by Terraform: optional, with a default that is right in Azure.
OPTIONAL_WITH_DEFAULTS = frozenset(
    {
        "APP_SETTINGS",  # Settings.app_settings: no setting of its own, the snapshot of all of them
        "GENAIOPS_FLOWS_DIR",  # default: flows/ shipped inside the package
        "GENAIOPS_WORK_DIR",  # default: a directory under the instance's temp dir
        "FEEDBACK_RATE_PER_MINUTE",  # default 30
        "FEEDBACK_BURST",  # default 10
        "IDEMPOTENCY_LEASE_SECONDS",  # default 600
        "AZUREML_PF_INSTANCE_TYPE",  # unset: serverless compute, Azure ML picks the VM size
        "AZUREML_PF_COMPUTE",  # unset: serverless compute
        "AZUREML_PF_RUNTIME",  # unset: serverless compute
        "APPROVAL_WEBHOOK_URL",  # unset: no approval notification webhook
    }
)

# Set by App Service itself (never by Terraform).
PLATFORM_SETTINGS = frozenset(
    {
        "WEBSITE_HOSTNAME",  # the app's host name (public_base_url falls back to it)
        "WEBSITE_AUTH_ENABLED",  # set when App Service authentication is on (functionapp.tf auth_settings_v2)
        "WEBSITE_AUTH_DEFAULT_PROVIDER",  # the provider App Service authentication signs people in with
        "PYTHONPATH",  # the process environment, passed on to child processes (shared/deployment)
    }
)

# Written by Terraform only when an operator opts in, and then read by the code.
OPT_IN_SETTINGS = frozenset(
    {
        # azure_openai_auth = "key_vault": the key-based alternative of the flows' aoai connection
        # (`api_key: ${api_key}` in experiment.yaml reads AOAI_API_KEY), a Key Vault reference.
        "AOAI_API_KEY",
    }
)

# Local stack / tests only (local.settings.example.json, localstack/): never needed in Azure.
LOCAL_ONLY = frozenset(
    {
        "GenAIOpsStorage",  # Azurite connection string; Azure uses GenAIOpsStorage__blobServiceUri
        "ServiceBusConnection",  # local broker connection string; Azure uses __fullyQualifiedNamespace
        "GENAIOPS_PUBLIC_BASE_URL",  # http://127.0.0.1:7071 locally; Azure derives it from WEBSITE_HOSTNAME
        "LOCAL_ROUTER_SEED",  # seeds the local A/B routers in tests
        "LOCAL_DEPLOYER_FACTORY",  # the local stack's own deployer (composition root)
    }
)

# Read by shared/ only when genaiops runs inside an Azure Pipelines AzureCLI@2 step, never in the app.
PIPELINE_ONLY = frozenset(
    {
        "AZURESUBSCRIPTION_TENANT_ID",
        "AZURESUBSCRIPTION_CLIENT_ID",
        "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
        "SYSTEM_ACCESSTOKEN",
    }
)

# experiment files that apply in Azure (experiment.local.yaml is the local stack's).
AZURE_ENVIRONMENTS = ("pr", "dev", "prod")


# --------------------------------------------------------------------------------------------
# What the code reads
# --------------------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _settings_classes() -> list[tuple[str, str]]:
    """(module, class) of every direct BaseSettings subclass in shared/ (found statically, then imported)."""
    found = []
    for path in sorted(SHARED.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                (isinstance(base, ast.Name) and base.id == "BaseSettings")
                or (isinstance(base, ast.Attribute) and base.attr == "BaseSettings")
                for base in node.bases
            ):
                found.append((_module_name(path), node.name))
    return found


def _alias_names(alias: object) -> list[str]:
    if alias is None:
        return []
    if isinstance(alias, str):
        return [alias]
    choices = getattr(alias, "choices", None)  # AliasChoices
    if choices is not None:
        return [name for choice in choices for name in _alias_names(choice)]
    path = getattr(alias, "path", None)  # AliasPath: the first element is the variable
    if path:
        return [str(path[0])]
    raise AssertionError(f"unknown alias kind {alias!r}")


@functools.cache
def pydantic_settings() -> dict[str, tuple[str, ...]]:
    """field id -> the environment names that set it (AliasChoices: any one of them)."""
    fields: dict[str, tuple[str, ...]] = {}
    for module_name, class_name in _settings_classes():
        cls = getattr(importlib.import_module(module_name), class_name)
        for name, field in cls.model_fields.items():
            aliases = _alias_names(field.validation_alias) or [name.upper()]
            fields[f"{module_name}.{class_name}.{name}"] = tuple(aliases)
    return fields


def _constants(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _is_os_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)


@functools.cache
def environ_reads() -> frozenset[str]:
    """Names read with os.environ[...] / os.environ.get(...) / os.getenv(...) in shared/, and `*_SETTING` constants."""
    names: set[str] = set()
    for path in sorted(SHARED.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _constants(tree)

        def literal(node: ast.AST, constants: dict[str, str] = constants) -> str | None:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                return node.value
            if isinstance(node, ast.Name):
                return constants.get(node.id)
            return None

        names.update(value for name, value in constants.items() if name.endswith("_SETTING"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_os_environ(node.value):
                names.add(literal(node.slice) or "")
            elif isinstance(node, ast.Call) and node.args:
                func = node.func
                reads = (isinstance(func, ast.Attribute) and func.attr == "get" and _is_os_environ(func.value)) or (
                    isinstance(func, ast.Attribute) and func.attr == "getenv"
                )
                if reads:
                    names.add(literal(node.args[0]) or "")
            elif isinstance(node, ast.Compare) and _is_os_environ(node.comparators[0]) and node.ops:
                names.add(literal(node.left) or "")  # "X" in os.environ
    names.discard("")
    return frozenset(names)


@functools.cache
def flow_secrets() -> frozenset[str]:
    from shared.experiments.config import secret_variable

    placeholder = re.compile(r"^\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}$")
    names: set[str] = set()
    for use_case in sorted((ROOT / "flows").iterdir()):
        files = [use_case / "experiment.yaml", *(use_case / f"experiment.{env}.yaml" for env in AZURE_ENVIRONMENTS)]
        for path in files:
            if not path.is_file():
                continue
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for connection in doc.get("connections") or []:
                for field, value in connection.items():
                    match = placeholder.match(str(value))
                    if field not in ("name", "connection_type") and match:
                        names.add(secret_variable(connection["name"], match.group(1)))
    return frozenset(names)


BINDING_CONNECTIONS_PROBE = """
import json, function_app
names = set()
for function in function_app.app.get_functions():
    for binding in function.get_bindings():
        connection = binding.get_dict_repr().get("connection")
        if connection:
            names.add(connection)
print(json.dumps(sorted(names)))
"""


@functools.cache
def binding_connections() -> frozenset[str]:
    import subprocess
    import sys

    output = subprocess.run(
        [sys.executable, "-c", BINDING_CONNECTIONS_PROBE], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return frozenset(json.loads(output.stdout))


@functools.cache
def code_reads() -> frozenset[str]:
    names = {alias for aliases in pydantic_settings().values() for alias in aliases}
    return frozenset(names | binding_settings() | flow_secrets() | environ_reads())


def terraform_settings() -> dict[str, str]:
    return function_app_settings()


def is_read(setting: str) -> bool:
    if setting in code_reads() or setting in HOST_SETTINGS | OPT_IN_SETTINGS:
        return True
    prefix, sep, _ = setting.partition("__")
    return bool(sep) and prefix in binding_connections()  # <connection>__blobServiceUri etc., read by the runtime


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_the_collection_really_reads_the_code() -> None:
    reads = code_reads()
    # One of each source, so a broken collector cannot pass vacuously.
    assert {"GENAIOPS_ENV", "APPROVERS"} <= reads  # pydantic settings (two classes)
    assert {"HEARTBEAT_SCHEDULE", "APPROVAL_EXPIRY_SCHEDULE", "EVENTS_QUEUE"} <= reads  # %NAME% bindings
    assert "AOAI_API_BASE" in reads  # flows' connection placeholders
    assert "AZURESUBSCRIPTION_TENANT_ID" in reads  # os.environ (the pipeline's federated credential)
    assert {"GenAIOpsStorage", "ServiceBusConnection"} <= binding_connections()
    assert len(pydantic_settings()) >= 20


def test_terraform_writes_no_setting_nothing_reads() -> None:
    unread = sorted(name for name in terraform_settings() if not is_read(name))
    assert not unread, f"Terraform writes app settings nothing reads (remove them from infra/functionapp.tf): {unread}"


def test_terraform_writes_every_setting_the_code_needs() -> None:
    written = set(terraform_settings())
    excused = OPTIONAL_WITH_DEFAULTS | PLATFORM_SETTINGS | LOCAL_ONLY | PIPELINE_ONLY
    missing: list[str] = []
    for field, aliases in pydantic_settings().items():
        if not (set(aliases) & (written | excused)):
            missing.append(f"{'/'.join(aliases)} ({field})")
    for name in sorted((binding_settings() | flow_secrets() | environ_reads()) - written - excused):
        missing.append(name)
    assert not missing, (
        "the code reads settings Terraform does not write: add them to infra/functionapp.tf, or to an "
        f"allow-list in {Path(__file__).name} with the reason: {missing}"
    )


def test_identity_based_connections_are_written_for_every_binding_connection() -> None:
    written = set(terraform_settings())
    for connection in binding_connections() | {"AzureWebJobsStorage"}:
        assert any(name.startswith(f"{connection}__") for name in written), (
            f"no identity-based {connection}__* setting in Terraform"
        )
        if connection != "AzureWebJobsStorage":
            assert connection not in written, f"{connection} must not be a connection string in Azure"


def test_allow_lists_are_not_stale() -> None:
    reads = code_reads()
    stale = sorted(name for name in OPTIONAL_WITH_DEFAULTS | PIPELINE_ONLY if name not in reads)
    assert not stale, f"allow-listed settings the code no longer reads: {stale}"
    overlap = sorted((OPTIONAL_WITH_DEFAULTS | LOCAL_ONLY | PLATFORM_SETTINGS) & set(terraform_settings()))
    assert not overlap, f"allow-listed as not written, but Terraform writes them: {overlap}"


def test_local_settings_example_needs_no_unknown_setting() -> None:
    """Every local setting is one the code or the local host reads (keeps the example honest too)."""
    local = set(json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"])
    functions_host = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsFeatureFlags", "AzureWebJobsStorage"}
    unknown = sorted(name for name in local - functions_host if not is_read(name))
    assert not unknown, f"local.settings.example.json sets settings nothing reads: {unknown}"
