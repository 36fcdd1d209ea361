"""Idempotency records expire twice over: the app treats an old completed record as absent (IDEMPOTENCY_TTL), and a
lifecycle rule on the data account deletes the prefix's blobs and their versions after the same number of days."""

from __future__ import annotations

from shared.blob_layout import PRODUCTION, SYSTEM, idempotency_name
from shared.idempotency import IDEMPOTENCY_TTL
from tests.infra.test_terraform import block, locals_, resource, resources


def test_a_lifecycle_rule_deletes_idempotency_records_after_the_apps_ttl() -> None:
    policy = resource("azurerm_storage_management_policy", "data")
    assert policy["storage_account_id"] == "${azurerm_storage_account.data.id}"
    rules = {rule["name"]: rule for rule in policy["rule"]}
    rule = rules["expire-idempotency-records"]
    assert rule["enabled"] is True
    filters = block(rule, "filters")
    # The prefix is `{container}/{path}`, and it is where the app writes its records.
    assert filters["prefix_match"] == [f"{SYSTEM}/idempotency/"]
    assert f"{SYSTEM}/{idempotency_name('on_dataset_uploaded', 'id')}".startswith(filters["prefix_match"][0])
    assert filters["blob_types"] == ["blockBlob"]
    actions = block(rule, "actions")
    ttl = "${local.idempotency_ttl_days}"
    assert block(actions, "base_blob")["delete_after_days_since_modification_greater_than"] == ttl
    assert block(actions, "version")["delete_after_days_since_creation"] == ttl  # the account keeps versions
    assert locals_()["idempotency_ttl_days"] == IDEMPOTENCY_TTL.days
    assert IDEMPOTENCY_TTL.total_seconds() == IDEMPOTENCY_TTL.days * 86400  # whole days, as the rule counts


def test_production_logs_expire_as_append_blobs_where_the_router_writes_them() -> None:
    rules = {rule["name"]: rule for rule in resource("azurerm_storage_management_policy", "data")["rule"]}
    filters = block(rules["expire-production-logs"], "filters")
    assert filters["prefix_match"] == [f"{PRODUCTION}/"]
    assert filters["blob_types"] == ["appendBlob"]  # what localstack/serving/production_writer.py creates
    assert block(block(rules["expire-production-logs"], "actions"), "base_blob")[
        "delete_after_days_since_modification_greater_than"] == "${local.production_log_days}"


def test_no_lifecycle_rule_reaches_beyond_the_idempotency_and_production_log_prefixes() -> None:
    """Dead letters, the journal, reports and registry entries are kept: nothing else may expire by accident."""
    policies = resources("azurerm_storage_management_policy")
    assert policies
    for policy in policies.values():
        for rule in policy["rule"]:
            prefixes = block(rule, "filters")["prefix_match"]
            assert prefixes
            assert all(prefix.startswith((f"{SYSTEM}/idempotency/", f"{PRODUCTION}/")) for prefix in prefixes)
