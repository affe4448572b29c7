"""Karpenter pools in stacks: dev's created cluster with Karpenter, prod's commented pool beside
its node groups, and the settings that belong to one scaler refused on the other."""

from __future__ import annotations

import functools
import re
import tomllib
from typing import Any

import pytest
import yaml

import render
from components.karpenter import manifest_problems
from components.settings import SettingsError
from offline import MOCK_CLUSTER_SECURITY_GROUP, evaluate_config
from tests.harness import (
    PROJECT,
    REPO,
    ProgramRun,
    config_from_stack_file,
    policy_document,
    run_stack,
    settings_config,
    settings_of,
)
from tests.pulumi_cli import config_set

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
RELEASE = "kubernetes:helm.sh/v3:Release"


def releases(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {r.inputs["name"]: r.inputs for r in run.of_type(RELEASE)}


def test_dev_runs_its_pool_on_karpenter_installed_in_its_cluster():
    run = run_stack("dev")
    # The system node group only (the controller's nodes), no build node group.
    assert [g.name for g in run.of_type("aws:eks/nodeGroup:NodeGroup")] == ["cluster-system"]
    assert run.of_type("aws:autoscaling/tag:Tag") == []
    charts = {name: inputs["chart"] for name, inputs in releases(run).items()}
    assert "cluster-autoscaler-gitlab-runner-fleet-dev" not in charts
    assert charts["karpenter"] == "oci://public.ecr.aws/karpenter/karpenter"
    node_pool, node_class = run.one(NODE_POOL), run.one(NODE_CLASS)
    assert node_pool.inputs["metadata"]["name"] == "gitlab-runner-fleet-default"
    assert node_pool.inputs["spec"]["disruption"]["consolidateAfter"] == "5m"
    # Deleted before the controller that drains their nodes, created after its CRDs (a
    # dependency on a component is one on each of its children).
    pool = run.one("gitlab-runner-fleet:index:KarpenterPool")
    karpenter_charts = {
        r.urn for r in run.of_type(RELEASE) if r.inputs["name"].startswith("karpenter")
    }
    assert len(karpenter_charts) == 2
    assert karpenter_charts <= set(pool.dependencies)
    spec = node_class.inputs["spec"]
    # The security group EKS created for the cluster (looked up), which managed nodes get too.
    assert spec["securityGroupSelectorTerms"] == [{"id": MOCK_CLUSTER_SECURITY_GROUP}]
    cluster = config_from_stack_file("dev")[f"{PROJECT}:cluster"]
    assert spec["subnetSelectorTerms"] == [{"id": s} for s in cluster["privateSubnetIds"]]
    node_role = run.one("gitlab-runner-fleet:index:KarpenterNodeRole")
    assert spec["role"] == run.component_outputs[node_role.urn]["role_name"]
    # No node launches before its role has its policies and its access entry: it would never
    # register.
    access = [
        r.urn
        for r in run.resources
        if r.type
        in ("aws:eks/accessEntry:AccessEntry", "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        and r.name.startswith("karpenter-nodes")
    ]
    assert len(access) == 3
    assert set(access) <= set(node_class.dependencies)
    passed = {
        s["Sid"]: s
        for s in policy_document(_named(run, "aws:iam/policy:Policy", "karpenter-controller"))[
            "Statement"
        ]
    }["PassOnlyTheNodeRoles"]["Resource"]
    assert passed == [run.outputs["karpenterNodeRoleArn"]]
    # One system node in dev: one controller replica (the chart's anti-affinity would leave a
    # second one Pending).
    assert releases(run)["karpenter"]["values"]["replicas"] == 1


def _named(run: ProgramRun, type_: str, name: str) -> Any:
    (found,) = [r for r in run.of_type(type_) if r.name == name]
    return found


def test_devs_jobs_and_managers_keep_karpenter_off_their_nodes():
    run = run_stack("dev")
    values = releases(run)["gitlab-runner-default"]["values"]
    assert values["podAnnotations"]["karpenter.sh/do-not-disrupt"] == "true"
    (runner,) = tomllib.loads(values["runners"]["config"])["runners"]
    assert runner["kubernetes"]["pod_annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    # The managers stay off spot nodes of either scaler and off the pool's nodes.
    expressions = values["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"][0]["matchExpressions"]
    assert {"key": "karpenter.sh/capacity-type", "operator": "NotIn", "values": ["spot"]} in (
        expressions
    )


def test_dev_renders_its_nodepool_and_ec2nodeclass_as_files(tmp_path):
    render.write_render(run_stack("dev"), tmp_path)
    node_pool = yaml.safe_load(
        (tmp_path / "files/NodePool/cluster/gitlab-runner-fleet-default.yaml").read_text()
    )
    node_class = yaml.safe_load(
        (tmp_path / "files/EC2NodeClass/cluster/gitlab-runner-fleet-default.yaml").read_text()
    )
    assert node_pool["template"]["metadata"]["labels"] == {"gitlab-runner-fleet/pool": "default"}
    assert node_class["amiSelectorTerms"] == [{"alias": "al2023@v20260714"}]
    assert "hosts.toml" in node_class["userData"]
    assert (tmp_path / "policies/karpenter-interruptions.queue-policy.json").is_file()


def commented_karpenter(stack_file: str) -> dict[str, Any]:
    """prod's commented Karpenter pool and section, uncommented as a user would."""
    text = (REPO / "stacks" / stack_file).read_text()
    pool_lines = re.search(r"^    # - name: burst\n(?:    #   .*\n)+", text, re.M)
    section_lines = re.search(r"^  # gitlab-runner-fleet:karpenter:\n(?:  #   .*\n)+", text, re.M)
    assert pool_lines
    assert section_lines
    pool = yaml.safe_load(re.sub(r"^    # ", "", pool_lines[0], flags=re.M))
    section = yaml.safe_load(re.sub(r"^  # ", "", section_lines[0], flags=re.M))
    return {"pool": pool[0], "karpenter": section["gitlab-runner-fleet:karpenter"]}


@functools.cache
def prod_with_burst() -> ProgramRun:
    commented = commented_karpenter("Pulumi.prod.yaml")
    pools = [*config_from_stack_file("prod")[f"{PROJECT}:pools"], commented["pool"]]
    return run_stack("prod", settings_config(pools=pools, karpenter=commented["karpenter"]))


def test_prods_commented_pool_runs_beside_its_node_groups_on_the_clusters_karpenter():
    run = prod_with_burst()
    assert run.error is None
    groups = {g.name for g in run.of_type("aws:eks/nodeGroup:NodeGroup")}
    assert groups == {"build-nodes-default", "build-nodes-arm64", "build-nodes-large-memory"}
    # Never a second Karpenter: only the pool's objects and its node role's access.
    assert "karpenter" not in releases(run)
    assert run.of_type("aws:sqs/queue:Queue") == []
    assert [n.inputs["metadata"]["name"] for n in run.of_type(NODE_POOL)] == [
        "gitlab-runner-fleet-burst"
    ]
    spec = run.one(NODE_CLASS).inputs["spec"]
    assert spec["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "ci-prod"}}]
    assert run.one("aws:eks/accessEntry:AccessEntry").inputs["type"] == "EC2_LINUX"
    assert "karpenterNodeRoleArn" in run.outputs
    assert "karpenterRoleArn" not in run.outputs
    # The cluster's Karpenter is not the stack's to scrape: no Karpenter alerts.
    assert not [a for a in run.outputs["alerts"] if a.startswith("Karpenter")]


def test_cluster_autoscaler_never_scales_for_a_karpenter_pool():
    run = prod_with_burst()
    # cluster-autoscaler scales only Auto Scaling groups with the stack's discovery tag
    # (cloudprovider/aws/aws_manager.go), and adds a node only for a pending pod that fits a
    # group's node template; no template carries the burst pool's label, and Karpenter's
    # instances belong to no Auto Scaling group (EC2 Fleet `instant`, karpenter-provider-aws
    # pkg/providers/instance/types.go), so it never touches them either.
    templates = [t.inputs["tag"] for t in run.of_type("aws:autoscaling/tag:Tag")]
    pool_labels = {
        tag["value"]
        for tag in templates
        if tag["key"] == "k8s.io/cluster-autoscaler/node-template/label/gitlab-runner-fleet/pool"
    }
    assert pool_labels == {"default", "arm64", "large-memory"}
    values = releases(run)["cluster-autoscaler-gitlab-runner-fleet-prod"]["values"]
    assert values["autoDiscovery"]["tags"] == [
        "gitlab-runner-fleet/autoscaler=gitlab-runner-fleet-prod"
    ]
    # It keeps off the Karpenter pool's nodes like off every pool's.
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert {
        "key": "gitlab-runner-fleet/pool",
        "operator": "NotIn",
        "values": ["default", "arm64", "large-memory", "burst"],
    } in term["matchExpressions"]


CREATED = config_from_stack_file("dev")[f"{PROJECT}:cluster"]
EXISTING = {"name": "ci", "version": "1.34", "nodeSubnetIds": ["subnet-0a1"]}
KARPENTER_POOL = {"name": "burst", "scaler": "karpenter", "runUntagged": True}
NODE_GROUP_POOL = {"name": "default", "runUntagged": True}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            {"pools": [{**KARPENTER_POOL, "minSize": 1}]},
            "pools[0].minSize: is not used with scaler: karpenter; Karpenter keeps no minimum",
        ),
        (
            {"pools": [{**KARPENTER_POOL, "scaleFromZeroEphemeralStorage": "80Gi"}]},
            "pools[0].scaleFromZeroEphemeralStorage: is not used with scaler: karpenter",
        ),
        (
            {"pools": [{**NODE_GROUP_POOL, "consolidateAfter": "5m"}]},
            "pools[0].consolidateAfter: is only used with scaler: karpenter; cluster-autoscaler "
            "removes idle nodes after clusterAutoscaler.scaleDownUnneededTime",
        ),
        (
            {"pools": [{**NODE_GROUP_POOL, "instanceRequirements": {"cpus": [8]}}]},
            "pools[0].instanceRequirements: is only used with scaler: karpenter",
        ),
        (
            {"cluster": EXISTING, "pools": [KARPENTER_POOL]},
            "pools[0].scaler: karpenter on an existing cluster needs the cluster's own Karpenter",
        ),
        (
            {"pools": [KARPENTER_POOL], "karpenter": {"preinstalled": True}},
            "karpenter.preinstalled: a cluster this stack creates has no Karpenter but the one",
        ),
        (
            {"pools": [NODE_GROUP_POOL], "karpenter": {"amiAlias": "al2023@v20260714"}},
            "karpenter.amiAlias: is only used by pools with scaler: karpenter",
        ),
        (
            {"pools": [KARPENTER_POOL], "clusterAutoscaler": {"scaleDownUnneededTime": "5m"}},
            "clusterAutoscaler.scaleDownUnneededTime: no pool uses cluster-autoscaler",
        ),
        (
            {"pools": [{**KARPENTER_POOL, "terminationGracePeriod": "30m"}]},
            "pools[0].terminationGracePeriod: must be at least 3630s: the longest job "
            "(runner.terminationGracePeriodSeconds, 3600s)",
        ),
        (
            {"pools": [KARPENTER_POOL], "karpenter": {"amiAlias": "al2@v20260714"}},
            "karpenter.amiAlias: must be al2023@v<YYYYMMDD>",
        ),
        (
            {
                "pools": [KARPENTER_POOL],
                "karpenter": {"amiIds": ["ami-0123456789abcdef0"], "amiAlias": "al2023@latest"},
            },
            "karpenter.amiAlias: leave it out with amiIds",
        ),
        (
            {
                "pools": [KARPENTER_POOL],
                "karpenter": {
                    "discoveryTag": "karpenter.sh/discovery",
                    "subnetIds": ["subnet-0a1234567"],
                },
            },
            "karpenter.discoveryTag: selects subnets and security groups by tag",
        ),
        (
            {"pools": [{**KARPENTER_POOL, "labels": {"karpenter.sh/team": "ci"}}]},
            'pools[0].labels: label domain "karpenter.sh" is restricted',
        ),
        (
            {"pools": [{**KARPENTER_POOL, "instanceTypes": ["c5n.2xlarge"]}]},
            "pools[0].instanceTypes: c5n.2xlarge's category, generation or vCPUs are not known",
        ),
        (
            {
                "pools": [
                    {
                        **KARPENTER_POOL,
                        "instanceRequirements": {"listedTypesOnly": True, "cpus": [8]},
                    }
                ]
            },
            "pools[0].instanceRequirements.cpus: is not used with listedTypesOnly: true",
        ),
        (
            {"pools": [{**KARPENTER_POOL, "instanceRequirements": {"minGeneration": 4}}]},
            "pools[0].instanceRequirements.minGeneration: must be at least 5",
        ),
        # Requirements no EC2 type meets: a NodePool that never launches (found trying it as
        # a new user); pkg/providers/instancetype/types.go reads vCPUs and generation.
        (
            {"pools": [{**KARPENTER_POOL, "instanceRequirements": {"minGeneration": 12}}]},
            "pools[0].instanceRequirements.minGeneration: must be at most 8",
        ),
        (
            {"pools": [{**KARPENTER_POOL, "instanceRequirements": {"cpus": [6]}}]},
            "pools[0].instanceRequirements.cpus: must be vCPU counts c, m and r sizes come in",
        ),
        (
            {
                "pools": [
                    {**KARPENTER_POOL, "instanceRequirements": {"categories": ["c"], "cpus": [2]}}
                ]
            },
            "or pick larger instanceRequirements.cpus",
        ),
        (
            {"pools": [{**KARPENTER_POOL, "expireAfter": "30d"}]},
            "pools[0].expireAfter: must be hours, minutes and seconds such as 10m or 720h, or Never",
        ),
    ],
)
def test_settings_of_one_scaler_are_refused_on_the_other(raw: dict[str, Any], problem: str):
    with pytest.raises(SettingsError) as refused:
        settings_of({"cluster": CREATED, **raw})
    assert problem in str(refused.value)


def test_kubeconfig_clusters_refuse_karpenter_pools():
    with pytest.raises(SettingsError) as refused:
        settings_of({"cluster": {"mode": "kubeconfig", "name": "k3s"}, "pools": [KARPENTER_POOL]})
    assert "pools[0].scaler: is only used on EKS" in str(refused.value)


def test_the_grace_period_follows_the_longest_job_gitlab_lets_run():
    created = {"gitlab": {"createRunners": True, "groupId": 1, "maximumTimeout": 1800}}
    settings = settings_of(
        {
            "cluster": CREATED,
            "pools": [{**KARPENTER_POOL, "terminationGracePeriod": "31m"}],
            **created,
        }
    )
    assert settings.pools[0].termination_grace_period == "31m"
    with pytest.raises(SettingsError, match=r"gitlab.maximumTimeout, 1800s"):
        settings_of(
            {
                "cluster": CREATED,
                "pools": [{**KARPENTER_POOL, "terminationGracePeriod": "30m"}],
                **created,
            }
        )


def test_following_every_ami_release_is_allowed_with_a_warning():
    settings = settings_of(
        {"cluster": CREATED, "pools": [KARPENTER_POOL], "karpenter": {"amiAlias": "al2023@latest"}}
    )
    assert any(w.startswith("karpenter.amiAlias: al2023@latest") for w in settings.warnings)
    assert not settings_of({"cluster": CREATED, "pools": [KARPENTER_POOL]}).warnings


@pytest.mark.parametrize("which", ["dev", "prod with its commented pool"])
def test_every_declared_nodepool_and_ec2nodeclass_is_a_valid_v1_object(which: str):
    run = run_stack("dev") if which == "dev" else prod_with_burst()
    objects = [*run.of_type(NODE_POOL), *run.of_type(NODE_CLASS)]
    assert len(objects) == 2
    for declared in objects:
        manifest = {key: declared.inputs[key] for key in ("apiVersion", "kind", "metadata", "spec")}
        assert manifest_problems(manifest) == [], declared.name


def test_a_pool_moved_to_the_clusters_karpenter_with_the_cli_renders_its_nodepool():
    # What `pulumi config set --path` writes: whole numbers and booleans typed, the rest
    # strings (tests/pulumi_cli.py).
    document = {"config": config_from_stack_file("staging")}
    for key, value in (
        ("pools[1].scaler", "karpenter"),
        ("pools[1].instanceRequirements.cpus[0]", "8"),
        ("pools[1].instanceRequirements.cpus[1]", "16"),
        ("pools[1].onDemandFallback", "true"),
        ("karpenter.preinstalled", "true"),
        ("karpenter.discoveryTag", "karpenter.sh/discovery"),
    ):
        config_set(document, key, value, path=True)
    run = evaluate_config(document["config"], stack="staging")
    (node_pool,) = run.of_type(NODE_POOL)
    assert node_pool.inputs["metadata"]["name"] == "gitlab-runner-fleet-rootless"
    requirements = {
        r["key"]: r["values"] for r in node_pool.inputs["spec"]["template"]["spec"]["requirements"]
    }
    assert requirements["karpenter.k8s.aws/instance-cpu"] == ["8", "16"]
    assert requirements["karpenter.sh/capacity-type"] == ["spot", "on-demand"]
    assert [g.name for g in run.of_type("aws:eks/nodeGroup:NodeGroup")] == ["build-nodes-default"]


def test_a_node_role_a_pool_brings_joins_a_created_cluster_through_its_own_access_entry():
    """A cluster the stack creates authenticates by access entries only (EKS API
    authentication mode): Karpenter's nodes under a role without one would launch and never
    register (found trying it as a new user)."""
    arn = "arn:aws:iam::123456789012:role/KarpenterNodeRole-platform"
    pools = config_from_stack_file("dev")[f"{PROJECT}:pools"]
    run = run_stack("dev", {f"{PROJECT}:pools": [{**pools[0], "nodeRoleArn": arn}]})
    entries = {
        e.inputs["principalArn"]: e.inputs["type"]
        for e in run.of_type("aws:eks/accessEntry:AccessEntry")
        if e.inputs["type"] == "EC2_LINUX"
    }
    assert entries == {arn: "EC2_LINUX"}
    (node_class,) = run.of_type(NODE_CLASS)
    assert node_class.inputs["spec"]["role"] == "KarpenterNodeRole-platform"
