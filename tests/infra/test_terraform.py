"""Static checks of the Terraform in infra/ and of the Azure Pipelines definitions.

There is no terraform binary and no Azure here: the HCL is parsed with python-hcl2 (pinned,
8.1.4) and the pipeline YAML with PyYAML, and the tests assert the properties that matter to
the app and to a security review: the app-setting contract, identity-only access, least
privilege, the events queue semantics, variable hygiene and the CLI calls the pipeline makes.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import hcl2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
ENVIRONMENTS = INFRA / "environments"
PIPELINE_FILES = [ROOT / "azure-pipelines.yml", *sorted((ROOT / ".azure-pipelines").rglob("*.yml"))]
SCRIPTS = ROOT / ".azure-pipelines" / "scripts"

TF_FILES = sorted(INFRA.glob("*.tf"))
TFVARS_FILES = sorted(ENVIRONMENTS.glob("*.tfvars"))

HCL_OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)

# The app's event catalogue (shared/events): every event type the pipeline may name.
EVENT_TYPES = frozenset(
    {
        "dataset.uploaded",
        "data.registered",
        "experiment.requested",
        "experiment.completed",
        "experiment.failed",
        "evaluation.completed",
        "gate.passed",
        "gate.failed",
        "flow.registered",
        "approval.requested",
        "approval.granted",
        "approval.rejected",
        "approval.expired",
        "deployment.requested",
        "deployment.completed",
        "deployment.verified",
        "deployment.unchanged",
        "smoke.passed",
        "smoke.failed",
        "deployment.rolled_back",
        "pipeline.triggered",
    }
)
CLI_SUBCOMMANDS = frozenset({"publish", "wait"})

# App settings the code reads (DESIGN.md + the infra brief).
REQUIRED_APP_SETTINGS = frozenset(
    {
        "AzureWebJobsStorage__accountName",
        "GenAIOpsStorage__blobServiceUri",
        "GenAIOpsStorage__queueServiceUri",
        "ServiceBusConnection__fullyQualifiedNamespace",
        "EVENTS_QUEUE",
        "GENAIOPS_ENV",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_RESOURCE_GROUP",
        "AZUREML_WORKSPACE_NAME",
        "AOAI_API_BASE",
        "REGISTRY_BACKEND",
        "HEARTBEAT_SCHEDULE",
        "APPROVERS",
    }
)
FORBIDDEN_ROLES = frozenset({"owner", "contributor", "user access administrator"})
DATA_CONTAINERS = frozenset(
    {"datasets", "runs", "reports", "registry", "approvals", "deployments", "feedback", "audit", "system", "production",
     "datasets-candidates"}
)

REFERENCE = re.compile(r"(?<![\w.])(var|local|data\.\w+|azurerm_\w+)\.([A-Za-z_][\w-]*)")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@functools.cache
def parse_hcl(path: Path) -> dict[str, Any]:
    return hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=HCL_OPTIONS)


def all_tf() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in TF_FILES:
        yield path, parse_hcl(path)


def labelled_blocks(kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(type, name) -> body for `resource` / `data` blocks across all files."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for _, doc in all_tf():
        for entry in doc.get(kind, []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    assert (rtype, name) not in found, f"duplicate {kind} {rtype}.{name}"
                    found[(rtype, name)] = body
    return found


def resources(rtype: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    blocks = labelled_blocks("resource")
    return {key: body for key, body in blocks.items() if rtype is None or key[0] == rtype}


def resource(rtype: str, name: str) -> dict[str, Any]:
    body = resources().get((rtype, name))
    assert body is not None, f"missing resource {rtype}.{name}"
    return body


def variables() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for _, doc in all_tf():
        for entry in doc.get("variable", []):
            for name, body in entry.items():
                assert name not in found, f"variable {name} declared twice"
                found[name] = body
    return found


def locals_() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for _, doc in all_tf():
        for entry in doc.get("locals", []):
            for name, value in entry.items():
                assert name not in found, f"local {name} defined twice"
                found[name] = value
    return found


def outputs() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for _, doc in all_tf():
        for entry in doc.get("output", []):
            found.update(entry)
    return found


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` of a resource body."""
    value = body.get(name)
    assert isinstance(value, list), f"expected a {name} block"
    assert len(value) == 1, f"expected exactly one {name} block"
    return value[0]


def strings(value: Any) -> Iterator[str]:
    """Every string scalar (and dict key) inside a parsed HCL/YAML value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def expressions(value: Any) -> Iterator[str]:
    """String scalars that contain Terraform expressions (literal text is skipped)."""
    return (s for s in strings(value) if "${" in s)


def references(value: Any) -> set[tuple[str, str]]:
    refs: set[tuple[str, str]] = set()
    for text in expressions(value):
        refs.update(REFERENCE.findall(text))
    return refs


def default_of(name: str) -> Any:
    var = variables()[name]
    assert "default" in var, f"variable {name} has no default"
    return var["default"]


def var_name(expr: Any) -> str | None:
    """`${var.x}` -> x."""
    match = re.fullmatch(r"\$\{var\.([\w-]+)\}", str(expr))
    return match.group(1) if match else None


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def pipeline_docs() -> dict[Path, Any]:
    return {path: yaml.safe_load(path.read_text(encoding="utf-8")) for path in PIPELINE_FILES}


def walk_steps(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping that looks like a step (bash/script/task) anywhere in a pipeline document."""
    if isinstance(node, dict):
        if any(key in node for key in ("bash", "script", "pwsh", "powershell", "task")):
            yield node
        for value in node.values():
            yield from walk_steps(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_steps(item)


def step_script(step: dict[str, Any]) -> str:
    for key in ("bash", "script", "pwsh", "powershell"):
        if key in step:
            return str(step[key])
    return str((step.get("inputs") or {}).get("inlineScript", ""))


def template_parameter_values() -> dict[str, list[str]]:
    """name -> allowed `values` of template parameters that restrict them."""
    allowed: dict[str, list[str]] = {}
    for doc in pipeline_docs().values():
        for param in (doc or {}).get("parameters", []) or []:
            if isinstance(param, dict) and "values" in param:
                allowed.setdefault(param["name"], []).extend(str(v) for v in param["values"])
    return allowed


PLACEHOLDER = re.compile(r"\$\{\{\s*parameters\.(\w+)\s*\}\}")


def expand_placeholders(command: str) -> list[str]:
    """Expand `${{ parameters.x }}` with every allowed value of x (values-restricted parameters)."""
    allowed = template_parameter_values()
    match = PLACEHOLDER.search(command)
    if not match:
        return [command]
    name = match.group(1)
    options = allowed.get(name, [f"PARAM_{name.upper()}"])
    expanded: list[str] = []
    for option in options:
        expanded.extend(expand_placeholders(command[: match.start()] + option + command[match.end() :]))
    return expanded


CLI_CALL = re.compile(r"python[0-9.]*\s+-m\s+genaiops\b[^\n]*")


@functools.cache
def cli_calls() -> list[tuple[Path, dict[str, Any], list[str]]]:
    """(file, step, argv after `genaiops`) for every CLI invocation in the pipeline files."""
    calls: list[tuple[Path, dict[str, Any], list[str]]] = []
    for path, doc in pipeline_docs().items():
        for step in walk_steps(doc):
            script = step_script(step).replace("\\\n", " ")
            for match in CLI_CALL.finditer(script):
                for command in expand_placeholders(match.group(0)):
                    argv = shlex.split(command)
                    calls.append((path, step, argv[argv.index("genaiops") + 1 :]))
    return calls


def option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


# --------------------------------------------------------------------------------------------
# Terraform: files and providers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TF_FILES + TFVARS_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_terraform_file_parses(path: Path) -> None:
    parsed = parse_hcl(path)
    assert isinstance(parsed, dict)
    assert parsed, f"{path} parsed to nothing"


def test_infra_is_split_into_single_purpose_files() -> None:
    expected = {
        "versions.tf": {"terraform"},
        "providers.tf": {"provider"},
        "variables.tf": {"variable"},
        "outputs.tf": {"output"},
    }
    for name, kinds in expected.items():
        assert set(parse_hcl(INFRA / name)) == kinds, f"{name} should only hold {kinds}"
    for name in (
        "main.tf",
        "storage.tf",
        "servicebus.tf",
        "functionapp.tf",
        "monitoring.tf",
        "keyvault.tf",
        "aml.tf",
        "rbac.tf",
        "eventgrid.tf",
    ):
        assert (INFRA / name).is_file(), f"infra/{name} missing"
    for env in ("pr", "dev", "prod"):
        assert (ENVIRONMENTS / f"{env}.tfvars").is_file(), f"environments/{env}.tfvars missing"
    assert (INFRA / "README.md").is_file()
    # Every role assignment lives in rbac.tf, so one file shows all grants.
    for path, doc in all_tf():
        for entry in doc.get("resource", []):
            if "azurerm_role_assignment" in entry:
                assert path.name == "rbac.tf", f"role assignment outside rbac.tf in {path.name}"


def test_azurerm_provider_is_pinned_to_4x() -> None:
    terraform = parse_hcl(INFRA / "versions.tf")["terraform"][0]
    azurerm = terraform["required_providers"][0]["azurerm"]
    assert azurerm["source"] == "hashicorp/azurerm"
    assert re.fullmatch(r"~>\s*4\.\d+(\.\d+)?", azurerm["version"]), azurerm["version"]
    assert "backend" in terraform, "state must live in a remote backend"
    provider = parse_hcl(INFRA / "providers.tf")["provider"][0]["azurerm"]
    assert provider["storage_use_azuread"] is True
    assert block(block(provider, "features"), "storage")["data_plane_available"] is False


# --------------------------------------------------------------------------------------------
# Terraform: security properties
# --------------------------------------------------------------------------------------------


def test_no_role_assignment_uses_a_privileged_role() -> None:
    assignments = resources("azurerm_role_assignment")
    assert assignments, "no role assignments found"
    for (_, name), body in assignments.items():
        assert "role_definition_id" not in body, f"{name}: use role_definition_name so the role is reviewable"
        role = str(body.get("role_definition_name", "")).strip().lower()
        assert role, f"{name}: role_definition_name missing"
        assert role not in FORBIDDEN_ROLES, f"{name} grants {body['role_definition_name']}"
        assert not str(body["scope"]).endswith(("local.rg_id}", "resource_group.this[0].id}")), (
            f"{name} is scoped to the whole resource group"
        )


def test_role_assignments_match_the_least_privilege_matrix() -> None:
    func = "${local.function_principal_id}"
    pipeline = "${var.pipeline_principal_object_id}"
    expected = {
        # Identity-based host storage with a blob trigger: the three roles the Functions docs list.
        (func, "Storage Blob Data Owner", "${azurerm_storage_account.host.id}"),
        (func, "Storage Queue Data Contributor", "${azurerm_storage_account.host.id}"),
        (func, "Storage Account Contributor", "${azurerm_storage_account.host.id}"),
        (func, "Storage Blob Data Contributor", "${azurerm_storage_account.data.id}"),
        (func, "Storage Queue Data Contributor", "${azurerm_storage_account.data.id}"),
        # Manage on the one queue: Flex's target-based scaler reads the queue length (rbac.tf).
        (func, "Azure Service Bus Data Owner", "${azurerm_servicebus_queue.events.id}"),
        (func, "Key Vault Secrets User", "${azurerm_key_vault.app.id}"),
        (func, "AzureML Data Scientist", "${azurerm_machine_learning_workspace.this.id}"),
        (func, "Monitoring Metrics Publisher", "${azurerm_application_insights.this.id}"),
        # The A/B report's KQL query of the endpoints' request logs.
        (func, "Log Analytics Reader", "${azurerm_log_analytics_workspace.this.id}"),
        # Each new online endpoint's diagnostic setting sending its traffic log to that workspace.
        (func, "Monitoring Contributor", "${azurerm_machine_learning_workspace.this.id}"),
        (func, "Monitoring Contributor", "${azurerm_log_analytics_workspace.this.id}"),
        # The production monitor reads online endpoints' collected inputs/outputs from the workspace storage.
        (func, "Storage Blob Data Reader", "${azurerm_storage_account.aml.id}"),
        (pipeline, "Azure Service Bus Data Sender", "${azurerm_servicebus_queue.events.id}"),
        (pipeline, "Storage Blob Data Reader", "${azurerm_storage_account.data.id}"),
        (pipeline, "Storage Blob Data Contributor", "${local.datasets_container_scope}"),
        # genaiops publish journals each event to audit/ before sending it.
        (pipeline, "Storage Blob Data Contributor", "${local.audit_container_scope}"),
    }
    actual = {
        (body["principal_id"], body["role_definition_name"], body["scope"])
        for body in resources("azurerm_role_assignment").values()
    }
    assert expected <= actual, f"missing grants: {sorted(expected - actual)}"
    # Nothing else is granted to the app or the pipeline beyond the optional OpenAI role.
    extra = {
        grant
        for grant in actual - expected
        if grant[0] in (func, pipeline) and grant[1] != "Cognitive Services OpenAI User"
    }
    assert not extra, f"unexpected grants: {sorted(extra)}"
    # Container scopes really are single containers.
    scopes = locals_()
    assert scopes["datasets_container_scope"].endswith("/blobServices/default/containers/datasets")
    assert scopes["audit_container_scope"].endswith("/blobServices/default/containers/audit")
    assert scopes["system_container_scope"].endswith("/blobServices/default/containers/system")
    assert scopes["function_principal_id"] == (
        "${azurerm_function_app_flex_consumption.this.identity[0].principal_id}"
    )


def test_app_storage_accounts_are_entra_id_only() -> None:
    accounts = resources("azurerm_storage_account")
    for name in ("host", "data"):
        body = accounts[("azurerm_storage_account", name)]
        assert body["shared_access_key_enabled"] is False, f"{name}: shared key access must be disabled"
        assert body["min_tls_version"] == "TLS1_2", name
        assert body["allow_nested_items_to_be_public"] is False, name
        assert body["https_traffic_only_enabled"] is True, name
        props = block(body, "blob_properties")
        assert "delete_retention_policy" in props, f"{name}: blob soft delete missing"
        assert "container_delete_retention_policy" in props, f"{name}: container soft delete missing"
    data_props = block(accounts[("azurerm_storage_account", "data")], "blob_properties")
    assert data_props["versioning_enabled"] is True
    # Only the Azure ML workspace's own account may keep keys (see infra/README.md).
    keyed = {
        name for (_, name), body in accounts.items() if body.get("shared_access_key_enabled") is not False
    }
    assert keyed <= {"aml"}, f"storage accounts with shared keys: {keyed}"


def test_data_containers_match_the_blob_layout() -> None:
    assert set(locals_()["data_containers"]) == DATA_CONTAINERS
    containers = resource("azurerm_storage_container", "data")
    assert containers["for_each"] == "${toset(local.data_containers)}"
    assert containers["storage_account_id"] == "${azurerm_storage_account.data.id}"
    assert containers["container_access_type"] == "private"


def test_events_queue_has_dead_lettering_and_duplicate_detection() -> None:
    namespace = resource("azurerm_servicebus_namespace", "this")
    assert namespace["sku"] == "Standard"
    assert namespace["local_auth_enabled"] is False

    queue = resource("azurerm_servicebus_queue", "events")
    assert queue["namespace_id"] == "${azurerm_servicebus_namespace.this.id}"
    assert queue["requires_duplicate_detection"] is True
    assert queue["dead_lettering_on_message_expiration"] is True
    assert queue["lock_duration"] == "PT1M"
    assert var_name(queue["max_delivery_count"]) == "max_delivery_count"
    assert default_of("max_delivery_count") == 10
    assert var_name(queue["name"]) == "events_queue_name"
    assert default_of("events_queue_name") == "genaiops-events"
    assert "duplicate_detection_history_time_window" in queue


def test_monitoring_uses_entra_id_ingestion() -> None:
    workspace = resource("azurerm_log_analytics_workspace", "this")
    assert workspace["local_authentication_enabled"] is False
    insights = resource("azurerm_application_insights", "this")
    assert insights["local_authentication_disabled"] is True
    assert insights["workspace_id"] == "${azurerm_log_analytics_workspace.this.id}"


@pytest.mark.parametrize("name", ["app", "aml"])
def test_key_vaults_use_rbac_and_purge_protection(name: str) -> None:
    vault = resource("azurerm_key_vault", name)
    assert vault["rbac_authorization_enabled"] is True
    assert vault["purge_protection_enabled"] is True
    assert "soft_delete_retention_days" in vault
    assert "access_policy" not in vault


def test_aml_workspace_has_its_own_dependencies() -> None:
    workspace = resource("azurerm_machine_learning_workspace", "this")
    assert workspace["storage_account_id"] == "${azurerm_storage_account.aml.id}"
    assert workspace["key_vault_id"] == "${azurerm_key_vault.aml.id}"
    assert workspace["application_insights_id"] == "${azurerm_application_insights.aml.id}"
    assert workspace["container_registry_id"] == "${azurerm_container_registry.aml.id}"
    assert block(workspace, "identity")["type"] == "SystemAssigned"
    assert resource("azurerm_container_registry", "aml")["admin_enabled"] is False


# --------------------------------------------------------------------------------------------
# Terraform: the Function App contract
# --------------------------------------------------------------------------------------------


def function_app_settings() -> dict[str, str]:
    """Resolve app_settings = merge(local.a, local.b, ...) into name -> value expression."""
    app = resource("azurerm_function_app_flex_consumption", "this")
    expr = app["app_settings"]
    known = locals_()
    settings: dict[str, str] = {}
    if isinstance(expr, dict):
        settings.update(expr)
    else:
        names = re.findall(r"local\.(\w+)", expr)
        assert names, f"app_settings should merge locals, got {expr}"
        for name in names:
            value = known[name]
            if isinstance(value, dict):
                settings.update({str(k): str(v) for k, v in value.items()})
            else:  # conditional map, e.g. cond ? {"KEY" = "..."} : {}
                for key, val in re.findall(r'"(\w+)"\s*=\s*"((?:[^"\\]|\\.)*)"', value):
                    settings[key] = val
    # The provider owns APPLICATIONINSIGHTS_CONNECTION_STRING and fills it from site_config.
    site_config = block(app, "site_config")
    if site_config.get("application_insights_connection_string"):
        settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] = site_config[
            "application_insights_connection_string"
        ]
    return settings


def test_function_app_is_flex_python_311_with_managed_identity() -> None:
    app = resource("azurerm_function_app_flex_consumption", "this")
    assert app["runtime_name"] == "python"
    assert app["runtime_version"] == "3.11"
    assert block(app, "identity")["type"] == "SystemAssigned"
    assert app["storage_authentication_type"] == "SystemAssignedIdentity"
    assert "storage_access_key" not in app
    assert app["https_only"] is True
    plan = resource("azurerm_service_plan", "this")
    assert plan["sku_name"] == "FC1"
    assert plan["os_type"] == "Linux"


def test_function_app_settings_cover_the_contract() -> None:
    settings = function_app_settings()
    missing = REQUIRED_APP_SETTINGS - set(settings)
    assert not missing, f"app settings missing: {sorted(missing)}"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD"
    assert settings["GENAIOPS_ENV"] == "${var.environment}"
    assert settings["EVENTS_QUEUE"] == "${azurerm_servicebus_queue.events.name}"
    assert settings["AzureWebJobsStorage__accountName"] == "${azurerm_storage_account.host.name}"
    assert (
        settings["GenAIOpsStorage__blobServiceUri"] == "${azurerm_storage_account.data.primary_blob_endpoint}"
    )
    assert settings["GenAIOpsStorage__queueServiceUri"] == (
        "${azurerm_storage_account.data.primary_queue_endpoint}"
    )
    # The blank AzureWebJobsStorage is the documented override of the provider's key-based value.
    assert settings.get("AzureWebJobsStorage", "") == ""


def test_function_app_settings_hold_no_secrets() -> None:
    secretish = re.compile(
        r"primary_access_key|secondary_access_key|connection_string|AccountKey=|SharedAccessKey|_key\b",
        re.IGNORECASE,
    )
    for name, value in function_app_settings().items():
        if name == "APPLICATIONINSIGHTS_CONNECTION_STRING":
            continue  # allowed: it carries no credential once local auth is disabled
        if name == "AOAI_API_KEY":
            assert value.startswith("@Microsoft.KeyVault(SecretUri="), (
                "the OpenAI key must be a Key Vault reference"
            )
            secret_uri = locals_()["openai_key_secret_uri"]
            assert secret_uri.endswith("secrets/azure-openai-api-key/"), secret_uri
            continue
        assert not secretish.search(str(value)), f"{name} looks like a secret: {value}"


def test_blob_trigger_event_subscription_targets_the_datasets_container() -> None:
    topic = resource("azurerm_eventgrid_system_topic", "data_storage")
    assert topic["source_resource_id"] == "${azurerm_storage_account.data.id}"
    assert topic["topic_type"] == "Microsoft.Storage.StorageAccounts"

    sub = resource("azurerm_eventgrid_system_topic_event_subscription", "datasets_blob_created")
    assert sub["count"] == "${var.enable_blob_event_subscription ? 1 : 0}"
    assert sub["included_event_types"] == ["Microsoft.Storage.BlobCreated"]
    assert (
        block(sub, "subject_filter")["subject_begins_with"]
        == "/blobServices/default/containers/datasets/blobs/"
    )
    url = block(sub, "webhook_endpoint")["url"]
    assert "/runtime/webhooks/blobs?functionName=Host.Functions.${var.blob_trigger_function_name}" in url
    assert "blobs_extension_key" in url
    assert block(sub, "storage_blob_dead_letter_destination")["storage_blob_container_name"] == (
        '${azurerm_storage_container.data["system"].name}'
    )


APPROVER_AUTH_VARIABLES = ("approver_auth_enabled", "approver_auth_client_id", "approver_auth_tenant_id")


def approver_auth_block() -> tuple[dict[str, Any], dict[str, Any]]:
    """(dynamic block, its content) of auth_settings_v2 on the Function App."""
    app = resource("azurerm_function_app_flex_consumption", "this")
    assert "auth_settings_v2" not in app, "auth_settings_v2 must be a dynamic block (off unless configured)"
    dynamics = [entry["auth_settings_v2"] for entry in app.get("dynamic", []) if "auth_settings_v2" in entry]
    assert len(dynamics) == 1, "expected exactly one dynamic auth_settings_v2 block on the Function App"
    return dynamics[0], block(dynamics[0], "content")


def test_function_app_has_entra_id_easy_auth_for_approvers() -> None:
    _, content = approver_auth_block()
    assert content["auth_enabled"] is True
    assert content["default_provider"] == "azureactivedirectory"  # sign-in at /.auth/login/aad
    aad = block(content, "active_directory_v2")
    assert aad["client_id"] == "${auth_settings_v2.value}"
    assert aad["tenant_auth_endpoint"] == "${local.approver_auth_tenant_endpoint}"
    endpoint = locals_()["approver_auth_tenant_endpoint"]
    assert endpoint == "https://login.microsoftonline.com/${local.approver_auth_tenant_id}/v2.0"
    # Identity only: no client secret in config (ID-token sign-in), no token store (would need a SAS setting).
    assert "client_secret" not in aad
    assert "client_secret_setting_name" not in aad
    assert block(content, "login")["token_store_enabled"] is False


def test_easy_auth_never_blocks_other_routes_and_triggers() -> None:
    """Health, feedback, the Event Grid webhook and pipeline calls must keep working without a sign-in."""
    _, content = approver_auth_block()
    assert content["require_authentication"] is False
    assert content["unauthenticated_action"] == "AllowAnonymous"


def test_easy_auth_is_conditional_on_the_client_id_and_off_by_default() -> None:
    dynamic, _ = approver_auth_block()
    assert dynamic["for_each"] == "${local.approver_auth_enabled ? [local.approver_auth_client_id] : []}"
    known = locals_()
    assert known["approver_auth_client_id"] == "${trimspace(var.approver_auth_client_id)}"
    assert known["approver_auth_enabled"] == (
        '${var.approver_auth_enabled && local.approver_auth_client_id != ""}'
    )
    assert default_of("approver_auth_enabled") is False
    assert default_of("approver_auth_client_id") == ""
    assert default_of("approver_auth_tenant_id") == ""
    # Empty tenant falls back to the tenant Terraform runs in.
    assert "data.azurerm_client_config.current.tenant_id" in known["approver_auth_tenant_id"]


def test_easy_auth_variables_are_declared_and_validated() -> None:
    declared = variables()
    for name in APPROVER_AUTH_VARIABLES:
        assert name in declared, f"variable {name} is not declared"
    for name in ("approver_auth_client_id", "approver_auth_tenant_id"):
        condition = declared[name]["validation"][0]["condition"]
        assert f'var.{name} == ""' in condition, f"{name} must allow empty"
        assert "regex(" in condition, f"{name} must be validated as a GUID"


def test_easy_auth_is_switched_on_for_dev_and_prod_without_placeholders() -> None:
    expected = {"pr": False, "dev": True, "prod": True}
    for path in TFVARS_FILES:
        values = parse_hcl(path)
        assert values.get("approver_auth_enabled", False) is expected[path.stem], path.name
        # Organisation-specific ids come from the pipeline (TF_VAR_*), never a placeholder in tfvars.
        assert "approver_auth_client_id" not in values, path.name
        assert "approver_auth_tenant_id" not in values, path.name


def test_missing_client_id_is_reported_by_a_check() -> None:
    checks: dict[str, Any] = {}
    for _, doc in all_tf():
        for entry in doc.get("check", []):
            checks.update(entry)
    condition = block(checks["approver_auth_client_id_set"], "assert")["condition"]
    assert "var.approver_auth_enabled" in condition
    assert "local.approver_auth_client_id" in condition


def test_outputs_cover_what_the_pipeline_and_people_need() -> None:
    required = {
        "function_app_name",
        "function_app_default_hostname",
        "data_storage_account_name",
        "data_storage_blob_endpoint",
        "servicebus_namespace_fqdn",
        "events_queue_name",
        "key_vault_uri",
        "aml_workspace_name",
        "approver_auth_redirect_uri",
    }
    declared = outputs()
    assert required <= set(declared), f"missing outputs: {sorted(required - set(declared))}"
    exported = load_script("export_tf_outputs").EXPORTS
    assert set(exported) <= set(declared), "export_tf_outputs.py reads an output that does not exist"
    for name, body in declared.items():
        assert body.get("description"), f"output {name} has no description"


# --------------------------------------------------------------------------------------------
# Terraform: variables and references
# --------------------------------------------------------------------------------------------


def test_every_used_variable_is_declared() -> None:
    declared = set(variables())
    for path, doc in all_tf():
        used = {name for kind, name in references(doc) if kind == "var"}
        undeclared = used - declared
        assert not undeclared, f"{path.name} uses undeclared variables: {sorted(undeclared)}"


def test_every_declared_variable_is_used() -> None:
    used: set[str] = set()
    for _, doc in all_tf():
        used |= {name for kind, name in references(doc) if kind == "var"}
    unused = set(variables()) - used
    assert not unused, f"declared but never used: {sorted(unused)}"


def test_every_variable_has_a_type_and_description() -> None:
    for name, body in variables().items():
        assert body.get("type"), f"variable {name} has no type"
        assert body.get("description"), f"variable {name} has no description"


def test_every_reference_resolves() -> None:
    resource_keys = set(labelled_blocks("resource"))
    data_keys = set(labelled_blocks("data"))
    local_names = set(locals_())
    for path, doc in all_tf():
        for kind, name in references(doc):
            if kind == "var":
                continue
            if kind == "local":
                assert name in local_names, f"{path.name}: local.{name} is not defined"
            elif kind.startswith("data."):
                assert (kind[len("data.") :], name) in data_keys, f"{path.name}: {kind}.{name} is not defined"
            else:
                assert (kind, name) in resource_keys, f"{path.name}: {kind}.{name} is not defined"


@pytest.mark.parametrize("path", TFVARS_FILES, ids=lambda p: p.name)
def test_tfvars_only_set_declared_variables(path: Path) -> None:
    assigned = set(parse_hcl(path))
    undeclared = assigned - set(variables())
    assert not undeclared, f"{path.name} sets undeclared variables: {sorted(undeclared)}"
    assert parse_hcl(path)["environment"] == path.stem, f"{path.name} must set environment = {path.stem!r}"


def test_required_variables_are_always_provided() -> None:
    """Variables without a default must come from every tfvars file or from the pipeline (TF_VAR_*)."""
    from_pipeline = set(re.findall(r"TF_VAR_(\w+)=", (SCRIPTS / "tf.sh").read_text(encoding="utf-8")))
    assert from_pipeline <= set(variables()), (
        f"tf.sh sets undeclared TF_VARs: {from_pipeline - set(variables())}"
    )
    for name, body in variables().items():
        if "default" in body:
            continue
        in_every_tfvars = all(name in parse_hcl(path) for path in TFVARS_FILES)
        assert in_every_tfvars or name in from_pipeline, f"nothing provides required variable {name}"


def test_environment_tfvars_cover_three_environments() -> None:
    assert {path.stem for path in TFVARS_FILES} == {"pr", "dev", "prod"}
    envs = variables()["environment"]["validation"][0]["condition"]
    for env in ("pr", "dev", "prod"):
        assert f'"{env}"' in envs


# --------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pipeline_yaml_parses(path: Path) -> None:
    assert isinstance(pipeline_docs()[path], dict)


def test_cli_calls_use_known_subcommands_and_events() -> None:
    calls = cli_calls()
    subcommands = {argv[0] for _, _, argv in calls}
    assert {"publish", "wait"} <= subcommands, "the pipeline must publish and wait"
    for path, _, argv in calls:
        where = f"{path.relative_to(ROOT)}: genaiops {' '.join(argv)}"
        assert argv[0] in CLI_SUBCOMMANDS, f"unknown subcommand in {where}"
        assert option(argv, "--correlation-id") == "$(Build.BuildId)", where
        if argv[0] == "publish":
            assert argv[1] in EVENT_TYPES, f"unknown event type in {where}"
            assert option(argv, "--payload"), where
        else:
            until = (option(argv, "--until") or "").split(",")
            assert set(until) <= EVENT_TYPES, f"unknown --until event in {where}"
            fail_on = [event for event in (option(argv, "--fail-on") or "").split(",") if event]
            assert fail_on, f"--fail-on missing in {where}"
            unknown = [event for event in fail_on if event not in EVENT_TYPES]
            assert not unknown, f"unknown --fail-on events {unknown} in {where}"
            assert not set(until) & set(fail_on), where
            timeout = option(argv, "--timeout") or ""
            assert timeout.isdigit() or timeout.startswith("PARAM_"), f"--timeout must be seconds in {where}"


def test_cli_events_exist_in_the_app_catalogue() -> None:
    """The CLI validates event types against the app's catalogue; a typo would fail at runtime."""
    from shared.events import event_class

    for _, _, argv in cli_calls():
        if argv[0] == "publish":
            named = [argv[1]]
        else:
            named = [*(option(argv, "--until") or "").split(","), *(option(argv, "--fail-on") or "").split(",")]
        for event_type in filter(None, named):
            assert event_class(event_type).event_type() == event_type


@pytest.mark.parametrize("pipeline_name", ["pr", "dev", "release"])
def test_published_payload_is_a_valid_pipeline_triggered_event(pipeline_name: str) -> None:
    """Run the pipeline's own payload builder and validate the result with the app's event model."""
    from shared.events import event_class

    publish_steps = [step for path, step, argv in cli_calls() if argv[0] == "publish"]
    assert publish_steps
    script = step_script(publish_steps[0])
    heredoc = re.search(r"<<'PY'\n(.*?)\nPY\n", script, re.DOTALL)
    assert heredoc, "the payload is built by an inline Python heredoc"
    env = {
        "GENAIOPS_PIPELINE": pipeline_name,
        "BUILD_BUILDID": "4711",
        "BUILD_SOURCEVERSION": "0123456789abcdef0123456789abcdef01234567",
        "BUILD_SOURCEBRANCH": "refs/pull/42/merge",
        "GENAIOPS_ENV": "pr",
        "GENAIOPS_USE_CASES": json.dumps(["named_entity_recognition", "math_coding"]),
    }
    result = subprocess.run(
        [sys.executable, "-c", heredoc.group(1)], env=env, capture_output=True, text=True, check=True
    )
    payload = json.loads(result.stdout)
    event = event_class("pipeline.triggered").create(payload, correlation_id="4711", source="pipeline")
    assert event.payload.use_cases == ["named_entity_recognition", "math_coding"]
    assert event.correlation_id == "4711"


def test_every_event_name_in_the_pipelines_is_in_the_catalogue() -> None:
    event_like = re.compile(
        r"(?<![\w./-])(?:dataset|data|experiment|evaluation|gate|flow|approval|deployment|smoke|pipeline)"
        r"\.[a-z_]+(?![\w/-])"
    )
    for path, doc in pipeline_docs().items():
        for text in strings(doc):
            for event in event_like.findall(text):
                if event.endswith((".yml", ".yaml", ".py", ".sh")):
                    continue
                assert event in EVENT_TYPES, f"{path.relative_to(ROOT)} names unknown event {event!r}"


def test_wait_targets_per_pipeline() -> None:
    stages = {
        item["parameters"]["stageName"]: item["parameters"]
        for item in pipeline_docs()[ROOT / "azure-pipelines.yml"]["stages"]
        if "template" in item
    }
    assert set(stages) == {"PR", "Dev", "Prod"}
    assert stages["PR"]["waitUntil"] == "gate.passed"
    # Done when the chosen version is deployed and verified, or already serves (nothing to approve or deploy).
    assert stages["Dev"]["waitUntil"] == "deployment.verified,deployment.unchanged"
    assert stages["Prod"]["waitUntil"] == "deployment.verified,deployment.unchanged"
    assert "PullRequest" in stages["PR"]["condition"]
    assert "refs/heads/main" in stages["Dev"]["condition"]
    assert "refs/tags/v" in stages["Prod"]["condition"]
    assert stages["Prod"]["adoEnvironment"] == "genaiops-prod", (
        "prod must deploy through an approval environment"
    )
    assert stages["Dev"]["applyInfra"] is True
    assert stages["Prod"]["applyInfra"] is True
    assert stages["Prod"]["useCaseScope"] == "all"
    for name, params in stages.items():
        assert params["environment"] in ("pr", "dev", "prod"), name
        assert params["variableGroup"] == f"genaiops-{params['environment']}", name
    allowed = template_parameter_values()["waitUntil"]
    assert {event for value in allowed for event in value.split(",")} <= EVENT_TYPES


def test_cli_steps_run_with_a_service_connection_and_exact_env_names() -> None:
    for path, step, argv in cli_calls():
        assert step.get("task") == "AzureCLI@2", f"{path.name}: genaiops {argv[0]} must run in AzureCLI@2"
        connection = str(step["inputs"]["azureSubscription"])
        assert not connection.startswith("$("), "service connections must be compile-time values"
        env = step.get("env") or {}
        for name in (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "EVENTS_QUEUE",
            "GenAIOpsStorage__blobServiceUri",
        ):
            assert name in env, (
                f"{path.name}: {name} must be mapped (case-sensitive) for genaiops {argv[0]}"
            )


def test_every_service_connection_is_resolved_at_compile_time() -> None:
    for path, doc in pipeline_docs().items():
        for step in walk_steps(doc):
            connection = (step.get("inputs") or {}).get("azureSubscription")
            if connection is not None:
                assert not str(connection).startswith("$("), (
                    f"{path.name}: runtime service connection {connection}"
                )


def test_pipelines_hold_no_secrets() -> None:
    secretish = re.compile(
        r"AccountKey=|SharedAccessKey=|DefaultEndpointsProtocol=|client_secret|password\s*:|"
        r"-----BEGIN|sig=[A-Za-z0-9%]{20,}",
        re.IGNORECASE,
    )
    scripts = sorted(path for path in SCRIPTS.iterdir() if path.is_file() and path.suffix in {".py", ".sh"})
    for path in [*PIPELINE_FILES, *scripts, *TF_FILES, *TFVARS_FILES]:
        text = path.read_text(encoding="utf-8")
        assert not secretish.search(text), f"{path.relative_to(ROOT)} contains something secret-looking"


# --------------------------------------------------------------------------------------------
# Pipeline helper: use-case selection
# --------------------------------------------------------------------------------------------


def test_use_case_selection_rules() -> None:
    select = load_script("changed_use_cases").select_use_cases
    cases = ["named_entity_recognition", "math_coding", "web_classification"]
    assert select(["flows/math_coding/flow.dag.yaml"], cases) == ["math_coding"]
    assert select(["flows/math_coding/a.py", "flows/web_classification/data/x.jsonl"], cases) == [
        "math_coding",
        "web_classification",
    ]
    assert select(["shared/experiments.py"], cases) == sorted(cases)
    assert select(["requirements.txt"], cases) == sorted(cases)
    assert select(["function_app.py"], cases) == sorted(cases)
    assert select(["README.md", "infra/main.tf", "tests/test_x.py"], cases) == []
    assert select(["flows/unknown_flow/flow.dag.yaml"], cases) == []


def test_use_case_discovery_needs_an_experiment_file(tmp_path: Path) -> None:
    module = load_script("changed_use_cases")
    (tmp_path / "flows" / "ner").mkdir(parents=True)
    (tmp_path / "flows" / "ner" / "experiment.yaml").write_text("name: ner\n", encoding="utf-8")
    (tmp_path / "flows" / "scratch").mkdir()
    assert module.discover_use_cases(tmp_path / "flows") == ["ner"]
    assert module.discover_use_cases(tmp_path / "missing") == []


def test_export_script_fails_on_missing_outputs(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    module = load_script("export_tf_outputs")
    full = {name: {"value": f"v-{name}"} for name in module.EXPORTS}
    full["blob_event_subscription_enabled"] = {"value": False}
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(json.dumps(full)))
    assert module.main() == 0
    out = capsys.readouterr().out
    assert "##vso[task.setvariable variable=functionAppName;isOutput=true]v-function_app_name" in out
    assert "variable=blobEventsEnabled;isOutput=true]false" in out
    del full["function_app_name"]
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(json.dumps(full)))
    assert module.main() == 1
