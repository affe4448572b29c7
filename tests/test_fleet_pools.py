"""The pool wiring: what each pool's node group, runner registration and manager get."""

from __future__ import annotations

import re

from components.fleet.pools import (
    BUILD_NODE_GROUP_REGEX,
    gitlab_runner_args,
    node_group_name,
    pool_summary,
    runner_registration_args,
    spot_node_group_args,
)
from tests.harness import settings_of

ARM = {"name": "arm64", "instanceTypes": ["c7g.2xlarge"], "tags": ["arm64"], "maxSize": 5}
SITE = {"name": "cloud", "role": "hub", "edges": ["basement"]}


def test_a_pools_node_group_carries_its_labels_taints_and_the_stacks_discovery_tag() -> None:
    settings = settings_of({"pools": [ARM], "tags": {"team": "ci"}}, stack="prod")
    (pool,) = settings.pools
    args = spot_node_group_args(
        settings, pool, cluster_name="ci", subnet_ids=["subnet-1"], user_data=None, cni_policy=True
    )
    assert node_group_name(pool) == "build-nodes-arm64"
    assert args["instance_types"] == ["c7g.2xlarge"]
    assert (args["node_cni_policy"], args["imds_hop_limit"]) == (True, 1)
    assert (args["min_size"], args["max_size"]) == (0, 5)
    assert args["labels"] == {"gitlab-runner-fleet/pool": "arm64"}
    assert args["taints"] == [
        {"key": "gitlab-runner-fleet/pool", "value": "arm64", "effect": "NoSchedule"}
    ]
    assert args["autoscaler_discovery_tag"] == {
        "key": "gitlab-runner-fleet/autoscaler",
        "value": "gitlab-runner-fleet-prod",
    }
    assert args["instance_tags"] == {
        "team": "ci",
        "project": "gitlab-runner-fleet",
        "stack": "prod",
        "component": "build-nodes",
        "pool": "arm64",
    }


def test_eks_names_each_pools_auto_scaling_group_so_the_backoff_alert_matches_it() -> None:
    # EKS names a managed node group's Auto Scaling group eks-<node group name>-<uuid>.
    settings = settings_of({"pools": [ARM]})
    group = f"eks-{node_group_name(settings.pools[0])}-20261123-6cc9f7a1-5b0e-4f7e-a1e3-7d8f"
    assert re.fullmatch(BUILD_NODE_GROUP_REGEX, group)
    assert not re.fullmatch(BUILD_NODE_GROUP_REGEX, "eks-system-20261123-6cc9f7a1")


def test_a_created_runner_serves_its_pools_tags_and_its_sites() -> None:
    settings = settings_of(
        {
            "pools": [ARM],
            "site": SITE,
            "gitlab": {"createRunners": True, "groupId": 42, "rotateTokenDays": 30},
        },
        stack="prod",
    )
    args = runner_registration_args(settings, settings.pools[0])
    assert args["tags"] == ["arm64", "site-cloud", "fleet"]
    assert args["group_id"] == 42
    assert args["rotate_token_days"] == 30
    assert args["description"] == "gitlab-runner-fleet-prod-arm64"
    assert "project_id" not in args


def test_a_pools_manager_keeps_off_every_pools_nodes_and_is_scraped_when_monitored() -> None:
    settings = settings_of(
        {"pools": [ARM, {"name": "default", "runUntagged": True}], "monitoring": {"enabled": True}}
    )
    args = gitlab_runner_args(
        settings,
        settings.pools[0],
        namespace="gitlab-runner",
        runner_token="glrt-x",
        cache={"Type": "s3", "Path": "p", "Shared": True},
        cache_secret={},
    )
    assert args["all_pool_labels"] == [
        {"gitlab-runner-fleet/pool": "arm64"},
        {"gitlab-runner-fleet/pool": "default"},
    ]
    assert args["job"]["node_selector"] == {
        "gitlab-runner-fleet/pool": "arm64",
        "kubernetes.io/arch": "arm64",
    }


def test_the_pools_output_names_each_pools_labels_tags_and_architecture() -> None:
    settings = settings_of({"pools": [ARM], "site": SITE})
    assert pool_summary(settings) == {
        "arm64": {
            "labels": {"gitlab-runner-fleet/pool": "arm64"},
            "tags": ["arm64", "site-cloud", "fleet"],
            "architecture": "arm64",
            "scaler": "clusterAutoscaler",
        }
    }
