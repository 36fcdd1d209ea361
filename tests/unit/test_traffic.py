"""The A/B rule: plan_traffic after a deployment, rollback_traffic after a failed smoke test, and the deployment
config that feeds them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.deployment import (
    DeploymentConfig,
    DeploymentRequest,
    DeploymentTarget,
    InvalidTraffic,
    TrafficSplit,
    check_traffic,
    deployment_name_for,
    plan_traffic,
    prior_deployment,
    rollback_traffic,
)

SPLIT = TrafficSplit(new=30, current=70)


# --- plan_traffic ---------------------------------------------------------------------------------------------


def test_first_deployment_ever_gets_everything() -> None:
    assert plan_traffic({}, "v-1", SPLIT) == {"v-1": 100}


def test_first_deployment_already_listed_at_zero_gets_everything() -> None:
    # Azure ML lists a fresh deployment with 0% before any traffic is set.
    assert plan_traffic({"v-1": 0}, "v-1", SPLIT) == {"v-1": 100}


def test_new_and_prior_both_keep_their_configured_shares() -> None:
    assert plan_traffic({"v-1": 100, "v-2": 0}, "v-2", SPLIT) == {"v-1": 70, "v-2": 30}


def test_prior_share_is_honoured_not_recomputed() -> None:
    assert plan_traffic({"v-1": 100}, "v-2", TrafficSplit(new=10, current=90)) == {"v-1": 90, "v-2": 10}


def test_the_prior_is_the_deployment_serving_most_and_the_others_go_to_zero() -> None:
    current = {"v-1": 20, "v-2": 80, "v-3": 0}
    assert plan_traffic(current, "v-3", SPLIT) == {"v-1": 0, "v-2": 70, "v-3": 30}


def test_a_tie_for_most_traffic_is_broken_by_name_deterministically() -> None:
    assert prior_deployment({"vb": 50, "va": 50}, "vc") == "va"
    assert plan_traffic({"vb": 50, "va": 50}, "vc", SPLIT) == {"va": 70, "vb": 0, "vc": 30}


def test_idle_deployments_are_not_a_prior() -> None:
    assert plan_traffic({"v-1": 0, "v-2": 0}, "v-3", SPLIT) == {"v-1": 0, "v-2": 0, "v-3": 100}


def test_redeploying_the_serving_version_keeps_the_other_one_as_prior() -> None:
    assert plan_traffic({"v-2": 30, "v-1": 70}, "v-2", SPLIT) == {"v-1": 70, "v-2": 30}
    assert plan_traffic({"v-2": 100}, "v-2", SPLIT) == {"v-2": 100}


def test_full_cutover_and_dark_launch() -> None:
    assert plan_traffic({"v-1": 100}, "v-2", TrafficSplit(new=100, current=0)) == {"v-1": 0, "v-2": 100}
    assert plan_traffic({"v-1": 100}, "v-2", TrafficSplit(new=0, current=100)) == {"v-1": 100, "v-2": 0}


def test_every_known_deployment_stays_in_the_plan() -> None:
    plan = plan_traffic({"a1": 10, "b1": 60, "c1": 30}, "d1", SPLIT)
    assert set(plan) == {"a1", "b1", "c1", "d1"}


@pytest.mark.parametrize("new", [0, 1, 30, 50, 99, 100])
@pytest.mark.parametrize("current", [{}, {"v-1": 100}, {"v-1": 0}, {"v-1": 40, "v-2": 60}, {"v-1": 0, "v-2": 0},
                                     {"v-1": 33, "v-2": 33, "v-3": 34}, {"v-9": 50, "v-1": 50}])
def test_the_plan_always_sums_to_100_with_the_new_share_when_there_is_a_prior(new: int,
                                                                              current: dict[str, int]) -> None:
    split = TrafficSplit(new=new, current=100 - new)
    plan = plan_traffic(current, "v-new", split)
    assert sum(plan.values()) == 100
    assert all(0 <= share <= 100 for share in plan.values())
    prior = prior_deployment(current, "v-new")
    if prior is None:
        assert plan["v-new"] == 100
    else:
        assert (plan["v-new"], plan[prior]) == (new, 100 - new)
        assert all(share == 0 for name, share in plan.items() if name not in ("v-new", prior))


def test_plan_does_not_change_its_input() -> None:
    current = {"v-1": 100}
    plan_traffic(current, "v-2", SPLIT)
    assert current == {"v-1": 100}


def test_plan_refuses_negative_traffic_and_a_nameless_deployment() -> None:
    with pytest.raises(InvalidTraffic, match="negative"):
        plan_traffic({"v-1": -5}, "v-2", SPLIT)
    with pytest.raises(InvalidTraffic, match="name"):
        plan_traffic({"v-1": 100}, "", SPLIT)


# --- rollback_traffic -------------------------------------------------------------------------------------------


def test_rollback_gives_the_failed_share_back_to_the_prior() -> None:
    assert rollback_traffic({"v-1": 70, "v-2": 30}, "v-2") == {"v-1": 100, "v-2": 0}


def test_rollback_after_a_full_cutover_finds_the_only_other_deployment() -> None:
    assert rollback_traffic({"v-1": 0, "v-2": 100}, "v-2") == {"v-1": 100, "v-2": 0}


def test_rollback_with_an_explicit_prior() -> None:
    before = {"v-1": 20, "v-2": 80}
    prior = prior_deployment(before, "v-3")
    after = plan_traffic(before, "v-3", TrafficSplit(new=100, current=0))
    assert rollback_traffic(after, "v-3", prior=prior) == {"v-1": 0, "v-2": 100, "v-3": 0}


def test_rollback_refuses_to_guess_among_idle_deployments() -> None:
    with pytest.raises(InvalidTraffic, match="prior="):
        rollback_traffic({"v-1": 0, "v-2": 0, "v-3": 100}, "v-3")


def test_rollback_of_the_only_deployment_leaves_nothing_serving() -> None:
    assert rollback_traffic({"v-1": 100}, "v-1") == {"v-1": 0}


def test_rollback_of_an_idle_deployment_changes_nothing_else() -> None:
    assert rollback_traffic({"v-1": 100, "v-2": 0}, "v-2") == {"v-1": 100, "v-2": 0}


def test_rollback_of_an_unknown_deployment_lists_it_at_zero() -> None:
    assert rollback_traffic({"v-1": 100}, "v-2") == {"v-1": 100, "v-2": 0}


def test_rollback_refuses_the_failed_deployment_as_its_own_prior() -> None:
    with pytest.raises(InvalidTraffic, match="itself"):
        rollback_traffic({"v-1": 70, "v-2": 30}, "v-2", prior="v-2")


@pytest.mark.parametrize("new", [0, 10, 30, 50, 90, 100])
def test_plan_then_rollback_restores_the_prior_allocation(new: int) -> None:
    for before in ({"v-1": 100}, {"v-1": 60, "v-0": 40}, {"v-1": 100, "v-0": 0}):
        prior = prior_deployment(before, "v-2")
        rolled = rollback_traffic(plan_traffic(before, "v-2", TrafficSplit(new=new, current=100 - new)), "v-2",
                                  prior=prior)
        assert sum(rolled.values()) == 100
        assert rolled["v-2"] == 0
        assert rolled[prior] == 100


# --- check_traffic and the config -----------------------------------------------------------------------------


@pytest.mark.parametrize("traffic", [{"a1": 50, "b1": 50}, {"a1": 100}, {"a1": 0}, {}])
def test_check_traffic_accepts_100_or_nothing(traffic: dict[str, int]) -> None:
    assert check_traffic(traffic) == traffic


@pytest.mark.parametrize("traffic", [{"a1": 50, "b1": 40}, {"a1": 101, "b1": -1}, {"a1": 120}])
def test_check_traffic_refuses_anything_else(traffic: dict[str, int]) -> None:
    with pytest.raises(InvalidTraffic):
        check_traffic(traffic)


def test_split_must_sum_to_100() -> None:
    with pytest.raises(ValidationError, match="must be 100"):
        TrafficSplit(new=30, current=60)


def test_config_defaults() -> None:
    config = DeploymentConfig(endpoint_name="math-coding-dev")
    assert config.target is DeploymentTarget.LOCAL
    assert (config.traffic.new, config.traffic.current) == (30, 70)
    assert (config.instance_type, config.instance_count, config.request_timeout_ms) == ("Standard_DS3_v2", 1, 60000)
    assert (config.smoke.samples, config.smoke.latency_budget_ms, config.smoke.readiness_timeout_seconds) == (
        5, 10000, 600)
    assert config.app_insights_enabled
    assert not config.data_collection


def test_config_from_yaml_block() -> None:
    config = DeploymentConfig.model_validate({
        "target": "aml_managed", "endpoint_name": "math-coding-prod", "traffic": {"new": 10, "current": 90},
        "environment_variables": {"PROMPTFLOW_RESPONSE_INCLUDED_FIELDS": '["answer"]'},
    })
    assert config.target is DeploymentTarget.AML_MANAGED
    assert config.traffic == TrafficSplit(new=10, current=90)


@pytest.mark.parametrize(("block", "message"), [
    ({"endpoint_name": "math_coding"}, "letters, digits or hyphens"),
    ({"endpoint_name": "ab"}, "3-32"),
    ({"endpoint_name": "math-coding-dev", "trafic": {}}, "trafic"),
    ({"endpoint_name": "math-coding-dev", "request_timeout_ms": 300001}, "300000"),
    ({"endpoint_name": "math-coding-dev", "environment_variables": {"AOAI_API_KEY": "abc"}}, "look like secrets"),
    ({"endpoint_name": "math-coding-dev", "target": "aml_kubernetes"}, "compute"),
    ({"endpoint_name": "math-coding-dev", "target": "aml_kubernetes", "compute": "k8s",
      "instance_type": "Standard_DS3_v2"}, "VM size"),
    ({"endpoint_name": "math-coding-dev", "target": "container", "image_repository": "acr.azurecr.io/flows"},
     "image_repository"),  # Azure ML names the image it builds: nothing to configure
])
def test_config_errors_say_what_to_fix(block: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeploymentConfig.model_validate(block)


def test_secret_settings_are_allowed_as_key_vault_references_and_non_secrets_pass() -> None:
    config = DeploymentConfig(endpoint_name="math-coding-dev", environment_variables={
        "AOAI_API_KEY": "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/aoai-key/)",
        "MAX_TOKENS": "256", "PROMPTFLOW_WORKER_NUM": "2",
    })
    assert set(config.environment_variables) == {"AOAI_API_KEY", "MAX_TOKENS", "PROMPTFLOW_WORKER_NUM"}


def test_kubernetes_target_defaults_to_the_clusters_default_instance_type() -> None:
    config = DeploymentConfig(endpoint_name="math-coding-dev", target="aml_kubernetes", compute="k8s-dev")
    assert config.instance_type == "defaultinstancetype"
    custom = DeploymentConfig(endpoint_name="math-coding-dev", target="aml_kubernetes", compute="k8s-dev",
                              instance_type="cpu-small")
    assert custom.instance_type == "cpu-small"


@pytest.mark.parametrize(("version", "name"),
                         [("12", "v12"), ("3", "v-3"), ("1.2", "v1-2"), ("2026.01.3", "v2026-01-3")])
def test_deployment_names_follow_the_version_and_azure_mls_rule(version: str, name: str) -> None:
    assert deployment_name_for(version) == name


def test_long_versions_keep_distinct_valid_names() -> None:
    names = {deployment_name_for("x" * 40 + str(i)) for i in range(3)}
    assert len(names) == 3
    assert all(len(name) <= 32 and name[-1].isalnum() for name in names)


def test_a_request_refuses_a_deployment_name_azure_ml_would_refuse(tmp_path: Path) -> None:
    config = DeploymentConfig(endpoint_name="math-coding-dev")
    with pytest.raises(ValidationError, match="deployment_name"):
        DeploymentRequest(use_case="math_coding", flow_name="math_coding", flow_version="3", flow_dir=tmp_path,
                          deployment_name="v3", config=config)


@pytest.mark.parametrize(("new", "current"), [(-1, 101), (101, -1)])
def test_shares_are_percentages_between_0_and_100(new: int, current: int) -> None:
    with pytest.raises(ValidationError):
        TrafficSplit(new=new, current=current)


def test_a_scoring_target_masks_its_key_but_not_its_other_headers() -> None:
    from shared.deployment.port import DEPLOYMENT_HEADER, ScoringTarget
    from shared.redaction import redact_text

    key = f"endpoint-key-{uuid.uuid4().hex}"
    target = ScoringTarget(url="https://ep.example/score", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json", DEPLOYMENT_HEADER: "blue"})
    assert target.http_headers()["Authorization"] == f"Bearer {key}"
    assert key not in redact_text(f"answer echoed {key}")
    assert redact_text("Content-Type: application/json, deployment blue") == \
        "Content-Type: application/json, deployment blue"
