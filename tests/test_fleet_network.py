"""The fleet's network decisions: lookups, the S3 endpoint default, the mirror's address."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws.cluster import CREATED_SERVICE_CIDR, ClusterNetwork
from components.fleet.network import (
    build_nodes_carry_cni_policy,
    look_up_cluster,
    mirror_cluster_ip,
    s3_gateway_endpoint_wanted,
)
from components.settings import SettingsError
from offline import MOCK_CLUSTER_VPC, MOCK_SERVICE_CIDR
from tests.harness import CREATED_CLUSTER, run_program, settings_of

KUBECONFIG = {"mode": "kubeconfig", "name": "k3s"}
EXISTING = {"name": "ci", "version": "1.34", "nodeSubnetIds": ["subnet-p1"]}


@pytest.mark.parametrize(
    ("raw", "wanted"),
    [
        ({"cluster": CREATED_CLUSTER}, True),
        ({}, False),
        ({"network": {"s3GatewayEndpoint": True}}, True),
        ({"cluster": CREATED_CLUSTER, "network": {"s3GatewayEndpoint": False}}, False),
    ],
)
def test_the_s3_endpoint_is_added_by_default_only_to_a_created_clusters_vpc(
    raw: dict[str, Any], wanted: bool
) -> None:
    assert s3_gateway_endpoint_wanted(settings_of(raw)) is wanted


def test_a_created_cluster_gets_its_service_range_from_the_stack() -> None:
    found: list[Any] = []
    run = run_program(
        lambda: found.append(look_up_cluster(settings_of({"cluster": CREATED_CLUSTER})))
    )
    assert run.error is None
    assert found[0].network == ClusterNetwork("vpc-1", CREATED_SERVICE_CIDR)
    assert found[0].existing is None


def test_an_existing_clusters_network_is_looked_up() -> None:
    found: list[Any] = []
    run = run_program(lambda: found.append(look_up_cluster(settings_of({}))))
    assert run.error is None
    assert found[0].network == ClusterNetwork(MOCK_CLUSTER_VPC, MOCK_SERVICE_CIDR)
    assert found[0].existing.kubernetes_version == "1.34"


def test_a_cluster_reached_by_kubeconfig_has_no_network_to_look_up() -> None:
    settings = settings_of({"cluster": KUBECONFIG, "cache": {"type": "inCluster"}}, region=None)
    lookup = look_up_cluster(settings)
    assert (lookup.network, lookup.existing) == (None, None)


@pytest.mark.parametrize(
    ("raw", "carries"),
    [
        ({"cluster": CREATED_CLUSTER}, False),
        ({}, True),
        ({"cluster": {**EXISTING, "nodeCniPolicy": False}}, False),
    ],
)
def test_build_nodes_carry_the_cni_policy_only_where_the_cni_has_no_role_of_its_own(
    raw: dict[str, Any], carries: bool
) -> None:
    assert build_nodes_carry_cni_policy(settings_of(raw)) is carries


def test_the_mirror_sits_at_the_fixed_address_low_in_the_service_range() -> None:
    assert mirror_cluster_ip(settings_of({}), "172.20.0.0/16") == "172.20.0.50"
    assert mirror_cluster_ip(settings_of({}), None) is None
    disabled = settings_of({"registryMirror": {"enabled": False}})
    assert mirror_cluster_ip(disabled, "172.20.0.0/16") is None


def test_a_mirror_address_outside_the_static_band_is_refused() -> None:
    settings = settings_of({"registryMirror": {"clusterIp": "172.20.200.1"}})
    with pytest.raises(SettingsError) as caught:
        mirror_cluster_ip(settings, "172.20.0.0/16")
    assert str(caught.value.problems[0]).startswith(
        "registryMirror.clusterIp: 172.20.200.1 is outside the range's static band"
    )
