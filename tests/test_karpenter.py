"""Karpenter pools: the NodePool and EC2NodeClass a pool gets, checked against Karpenter's v1 API
and against what Karpenter does with them, and the components that declare them and Karpenter.

Upstream files are named beside the assertions: karpenter-provider-aws and kubernetes-sigs/
karpenter at tag v1.14.1, gitlab-runner at v19.3.0.
"""

from __future__ import annotations

import email
import json
import re
from typing import Any

import pytest

from components.aws.karpenter import INTERRUPTION_EVENTS, Karpenter, karpenter_values
from components.aws.karpenter_node_role import KarpenterNodeRole
from components.aws.karpenter_pool import (
    KarpenterPool,
    KarpenterPoolArgs,
    ec2_node_class_manifest,
    karpenter_pool_problems,
    node_pool_manifest,
)
from components.fleet.pools import karpenter_pool_args
from components.karpenter import manifest_problems
from components.settings import SettingsError
from components.workloads.mirror_config import (
    NODEADM_CONFIG_MEDIA_TYPE,
    containerd_hosts_toml,
    mirror_url,
    node_user_data,
)
from tests.harness import (
    CREATED_CLUSTER,
    ProgramRun,
    Registered,
    policy_document,
    run_program,
    settings_of,
)

OIDC_ARN = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"
POOL = {"name": "default", "scaler": "karpenter", "runUntagged": True, "maxSize": 3}
SUBNETS = ["subnet-0a1", "subnet-0a2"]
USER_DATA = node_user_data(containerd_hosts_toml(mirror_url("10.100.0.50")))


def pool_args(pool: dict[str, Any] | None = None, **karpenter: Any) -> KarpenterPoolArgs:
    raw: dict[str, Any] = {"cluster": CREATED_CLUSTER, "pools": [pool or POOL]}
    if karpenter:
        raw["karpenter"] = karpenter
    settings = settings_of(raw)
    return karpenter_pool_args(
        settings,
        settings.pools[0],
        node_role_name="karpenter-nodes",
        subnet_ids=SUBNETS,
        security_group_ids=["sg-0c1"],
        discovery_tag=settings.karpenter.discovery("ci"),
        user_data=USER_DATA,
    )


def node_class(args: KarpenterPoolArgs) -> dict[str, Any]:
    return ec2_node_class_manifest(
        args,
        role_name="karpenter-nodes",
        subnet_ids=args.get("subnet_ids", []),  # type: ignore[arg-type]
        security_group_ids=args.get("security_group_ids", []),  # type: ignore[arg-type]
        user_data=USER_DATA,
    )


# --- Which instances a NodePool launches ---------------------------------------------------------

# EC2 instance types as DescribeInstanceTypes reports them: vCPUs, memory in MiB, architecture.
CATALOGUE = {
    "c6i.2xlarge": (8, 16384, "amd64"),
    "c5.2xlarge": (8, 16384, "amd64"),
    "c7i-flex.2xlarge": (8, 16384, "amd64"),
    "c5n.2xlarge": (8, 21504, "amd64"),
    "c4.2xlarge": (8, 15360, "amd64"),
    "m6i.2xlarge": (8, 32768, "amd64"),
    "m5.4xlarge": (16, 65536, "amd64"),
    "c6i.4xlarge": (16, 32768, "amd64"),
    "r6i.2xlarge": (8, 65536, "amd64"),
    "t3.2xlarge": (8, 32768, "amd64"),
    "c7g.2xlarge": (8, 16384, "arm64"),
}
# pkg/providers/instancetype/types.go: instanceTypeScheme, the category and generation labels.
INSTANCE_TYPE_SCHEME = re.compile(r"(^[a-z]+)(\-[0-9]+tb)?([0-9]+).*\.")


def instance_labels(instance_type: str, capacity_type: str) -> dict[str, str]:
    """The labels Karpenter gives one offering of an instance type (types.go computeRequirements)."""
    vcpus, memory, arch = CATALOGUE[instance_type]
    scheme = INSTANCE_TYPE_SCHEME.match(instance_type)
    assert scheme is not None
    return {
        "node.kubernetes.io/instance-type": instance_type,
        "kubernetes.io/arch": arch,
        "karpenter.sh/capacity-type": capacity_type,
        "karpenter.k8s.aws/instance-category": scheme[1],
        "karpenter.k8s.aws/instance-generation": scheme[3],
        "karpenter.k8s.aws/instance-cpu": str(vcpus),
        "karpenter.k8s.aws/instance-memory": str(memory),
    }


def satisfies(requirement: dict[str, Any], labels: dict[str, str]) -> bool:
    """A NodePool requirement against an offering's labels, as Karpenter's scheduling
    requirements read it (kubernetes-sigs/karpenter pkg/scheduling/requirement.go)."""
    value, operator, values = (
        labels.get(requirement["key"]),
        requirement["operator"],
        requirement["values"],
    )
    if operator == "In":
        return value in values
    if operator == "Gt":
        return value is not None and int(value) > int(values[0])
    raise NotImplementedError(operator)


def launchable(args: KarpenterPoolArgs) -> dict[str, list[str]]:
    """The catalogue's types the pool's NodePool admits, with the capacity types of each."""
    requirements = node_pool_manifest(args)["spec"]["template"]["spec"]["requirements"]
    admitted: dict[str, list[str]] = {}
    for instance_type in CATALOGUE:
        for capacity in ("spot", "on-demand"):
            labels = instance_labels(instance_type, capacity)
            if all(satisfies(requirement, labels) for requirement in requirements):
                admitted.setdefault(instance_type, []).append(capacity)
    return admitted


def test_a_pool_launches_every_spot_type_of_its_shape_and_category_from_its_oldest_generation():
    # The default instance types are c5a, c5, c5ad, c5d, c6a, c6i 2xlarge: compute optimised,
    # 8 vCPU and 16 GiB, generation 5 and newer.
    assert launchable(pool_args()) == {
        "c6i.2xlarge": ["spot"],
        "c5.2xlarge": ["spot"],
        "c7i-flex.2xlarge": ["spot"],
    }


def test_requirements_widen_to_categories_and_sizes_and_fall_back_to_on_demand():
    pool = {
        **POOL,
        "instanceRequirements": {"categories": ["c", "m"], "cpus": [8, 16], "minGeneration": 6},
        "onDemandFallback": True,
    }
    assert launchable(pool_args(pool)) == {
        "c6i.2xlarge": ["spot", "on-demand"],
        "c7i-flex.2xlarge": ["spot", "on-demand"],
        "m6i.2xlarge": ["spot", "on-demand"],
        "c6i.4xlarge": ["spot", "on-demand"],
    }


def test_an_arm64_pool_launches_graviton_only_and_listed_types_stay_listed():
    graviton = {**POOL, "instanceTypes": ["c7g.2xlarge"]}
    assert launchable(pool_args(graviton)) == {"c7g.2xlarge": ["spot"]}
    listed = {
        **POOL,
        "instanceTypes": ["c5n.2xlarge"],
        "instanceRequirements": {"listedTypesOnly": True},
    }
    assert launchable(pool_args(listed)) == {"c5n.2xlarge": ["spot"]}


def test_limits_follow_max_size_and_the_largest_node():
    # Karpenter sums node capacity per NodePool and stops at any limit
    # (pkg/controllers/provisioning/scheduling/scheduler.go, limits.nodes included).
    assert node_pool_manifest(pool_args())["spec"]["limits"] == {
        "nodes": "3",
        "cpu": "24",
        "memory": "48Gi",
    }
    wide = {**POOL, "instanceRequirements": {"categories": ["c", "m"], "cpus": [8, 16]}}
    assert node_pool_manifest(pool_args(wide))["spec"]["limits"] == {
        "nodes": "3",
        "cpu": "48",
        "memory": "192Gi",
    }


def test_a_listed_type_of_unknown_shape_leaves_only_the_node_limit():
    """Karpenter drops every type whose capacity exceeds what is left of a limit (scheduler.go),
    and counts c5n.2xlarge as 21504 MiB less its overhead (pkg/providers/instancetype/types.go):
    a memory limit guessed from c6i.2xlarge alone would stop the pool at 2 of 3 nodes (found
    in review)."""
    listed = {
        **POOL,
        "instanceTypes": ["c6i.2xlarge", "c5n.2xlarge"],
        "instanceRequirements": {"listedTypesOnly": True},
    }
    assert node_pool_manifest(pool_args(listed))["spec"]["limits"] == {"nodes": "3"}


def test_the_type_whose_shape_is_unknown_is_the_one_named():
    derived = {**POOL, "instanceTypes": ["c6i.2xlarge", "c5n.2xlarge"]}
    with pytest.raises(SettingsError) as caught:
        settings_of({"cluster": CREATED_CLUSTER, "pools": [derived]})
    assert "c5n.2xlarge's category, generation or vCPUs are not known here" in str(caught.value)


def test_jobs_are_sized_for_the_smallest_node_a_pool_may_get():
    wide = {**POOL, "instanceRequirements": {"categories": ["c", "m"], "cpus": [8, 16]}}
    settings = settings_of({"cluster": CREATED_CLUSTER, "pools": [wide]})
    shape = settings.pools[0].shape
    assert shape is not None
    assert (shape.vcpus, shape.memory_gib) == (8, 16)
    assert (
        settings.pools[0].overwrite_ceiling
        == settings_of({"cluster": CREATED_CLUSTER, "pools": [POOL]}).pools[0].overwrite_ceiling
    )


# --- The pool's nodes: labels, taints, disruption ------------------------------------------------


def test_the_nodepool_carries_the_labels_and_taints_the_runner_selects_and_tolerates():
    settings = settings_of({"cluster": CREATED_CLUSTER, "pools": [POOL]})
    pool = settings.pools[0]
    job = settings.pool_job_spec(pool)
    template = node_pool_manifest(pool_args())["spec"]["template"]
    # Karpenter puts the template's labels and taints on each Node it registers
    # (pkg/controllers/nodeclaim/lifecycle/registration.go).
    assert template["metadata"]["labels"] == {"gitlab-runner-fleet/pool": "default"}
    assert {k: v for k, v in job["node_selector"].items() if k != "kubernetes.io/arch"} == (
        template["metadata"]["labels"]
    )
    assert template["spec"]["taints"] == [
        {"key": t["key"], "value": t["value"], "effect": t["effect"]} for t in job["build_taints"]
    ]
    assert {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]} in template["spec"][
        "requirements"
    ]


def test_disruption_removes_only_empty_nodes_and_replaces_drifted_ones_one_at_a_time():
    spec = node_pool_manifest(pool_args({**POOL, "consolidateAfter": "5m"}))["spec"]
    assert spec["disruption"] == {
        "consolidationPolicy": "WhenEmpty",
        "consolidateAfter": "5m",
        "budgets": [{"nodes": "1", "reasons": ["Drifted"]}],
    }
    # A budget caps only the reasons it names; empty nodes stay unbounded
    # (pkg/apis/v1/nodepool.go GetAllowedDisruptionsByReason starts at MaxInt32).
    template = spec["template"]["spec"]
    # Expiry is forceful (pkg/controllers/nodeclaim/expiration/controller.go deletes the
    # NodeClaim); the grace period bounds the drain that waits for do-not-disrupt jobs
    # (pkg/controllers/node/termination/terminator/terminator.go).
    assert (template["expireAfter"], template["terminationGracePeriod"]) == ("720h", "2h")


# --- EC2NodeClass --------------------------------------------------------------------------------


def test_the_node_class_pins_the_ami_and_keeps_pods_off_the_metadata_service():
    spec = node_class(pool_args())["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": "al2023@v20260714"}]
    assert "amiFamily" not in spec
    # Karpenter's default is hop limit 1 too; the fleet sets the pool's explicitly.
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    hop2 = node_class(pool_args({**POOL, "imdsHopLimit": 2}))["spec"]
    assert hop2["metadataOptions"]["httpPutResponseHopLimit"] == 2
    (root,) = spec["blockDeviceMappings"]
    assert root == {
        "deviceName": "/dev/xvda",
        "rootVolume": True,
        "ebs": {
            "volumeSize": "100Gi",
            "volumeType": "gp3",
            "encrypted": True,
            "deleteOnTermination": True,
        },
    }
    assert spec["associatePublicIPAddress"] is False
    # The stack's allocation tags, as on its node groups' instances (cost per pool and stack).
    assert spec["tags"] == {
        "project": "gitlab-runner-fleet",
        "stack": "test",
        "component": "build-nodes",
        "pool": "default",
    }


def test_ami_ids_name_their_family_and_discovery_selects_by_tag():
    by_id = node_class(pool_args(amiIds=["ami-0123456789abcdef0"]))["spec"]
    # The CRD requires amiFamily without an alias (karpenter.k8s.aws_ec2nodeclasses.yaml).
    assert by_id["amiFamily"] == "AL2023"
    assert by_id["amiSelectorTerms"] == [{"id": "ami-0123456789abcdef0"}]
    tagged = node_class(pool_args(discoveryTag="karpenter.sh/discovery"))["spec"]
    assert tagged["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "ci"}}]
    assert tagged["securityGroupSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "ci"}}]
    plain = node_class(pool_args())["spec"]
    assert plain["subnetSelectorTerms"] == [{"id": "subnet-0a1"}, {"id": "subnet-0a2"}]
    assert plain["securityGroupSelectorTerms"] == [{"id": "sg-0c1"}]


def karpenter_user_data(custom: str, node_config: str) -> str:
    """The user data Karpenter launches an AL2023 node with: the EC2NodeClass's MIME parts,
    then its own NodeConfig, re-serialised with the boundary `//`
    (pkg/providers/amifamily/bootstrap/nodeadm.go Script, bootstrap/mime/mime.go)."""
    parts = [
        (part.get("Content-Type"), str(part.get_payload()))
        for part in email.message_from_string(custom).walk()
        if not part.is_multipart()
    ]
    parts.append((NODEADM_CONFIG_MEDIA_TYPE, node_config))
    lines = ["MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="//"', ""]
    for content_type, body in parts:
        lines += ["--//", f"Content-Type: {content_type}", "", body]
    return "\n".join([*lines, "--//--", ""])


def test_the_mirror_user_data_survives_karpenters_merge_before_its_node_config():
    node_config = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\n"
    merged = email.message_from_string(karpenter_user_data(USER_DATA, node_config))
    parts = [part for part in merged.walk() if not part.is_multipart()]
    # nodeadm merges NodeConfig parts in order, later wins (amazon-eks-ami nodeadm/internal/
    # api/merge.go); cloud-init runs the script, which writes containerd's hosts.toml.
    assert [part.get_content_type() for part in parts] == [
        "text/x-shellscript",
        NODEADM_CONFIG_MEDIA_TYPE,
    ]
    assert 'server = "https://registry-1.docker.io"' in parts[0].get_payload()
    assert 'host."http://10.100.0.50:5000"' in parts[0].get_payload()
    # A part line starting with Karpenter's boundary would split the part.
    assert not any(line.startswith("--//") for line in USER_DATA.splitlines())


# --- Karpenter's v1 API ------------------------------------------------------------------------


def test_the_pools_objects_are_valid_v1_objects():
    args = pool_args()
    assert manifest_problems(node_pool_manifest(args)) == []
    assert manifest_problems(node_class(args)) == []
    wide = pool_args(
        {
            **POOL,
            "instanceRequirements": {"categories": ["c", "m", "r"], "cpus": [4, 8]},
            "onDemandFallback": True,
            "expireAfter": "Never",
        },
        amiIds=["ami-0123456789abcdef0", "ami-0fedcba9876543210"],
    )
    assert manifest_problems(node_pool_manifest(wide)) == []
    assert manifest_problems(node_class(wide)) == []


def broken(manifest: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(manifest))
    *parents, last = path.split(".")
    target: Any = copy
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return copy


NODE_POOL_REFUSALS = [
    ("spec.template.metadata.labels", {"karpenter.sh/team": "ci"}, 'label domain "karpenter.sh" is restricted'),
    ("spec.template.metadata.labels", {"kubernetes.io/hostname": "a"}, 'label "kubernetes.io/hostname" is restricted'),
    ("spec.template.metadata.labels", {"karpenter.k8s.aws/fast": "y"}, 'label domain "karpenter.k8s.aws" is restricted'),
    ("spec.template.spec.requirements.0.operator", "Matches", "Input should be 'In'"),
    ("spec.template.spec.requirements.0.values", [], "operator 'In' must have a value"),
    ("spec.template.spec.requirements.3.values", ["five"], "single non-negative integer"),
    ("spec.template.spec.expireAfter", "30d", "or Never"),
    ("spec.template.spec.terminationGracePeriod", "Never", "such as 2h or 90m"),
    ("spec.template.spec.nodeClassRef.group", "", "may not be empty"),
    ("spec.disruption.consolidateAfter", None, "Field required"),
    ("spec.disruption.consolidationPolicy", "WhenIdle", "'WhenEmpty'"),
    ("spec.disruption.budgets", [{"nodes": "1", "schedule": "@daily"}], "'schedule' must be set with 'duration'"),
    ("spec.disruption.budgets", [{"nodes": "110%"}], "a count or a percentage"),
    ("spec.limits", {"cpu": "lots"}, "Kubernetes quantity"),
    ("spec.weight", 0, "greater than or equal to 1"),
    ("spec.template.spec.minNodes", 1, "Extra inputs are not permitted"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "value", "message"), NODE_POOL_REFUSALS)
def test_the_model_refuses_what_the_nodepool_crd_refuses(path: str, value: Any, message: str):
    problems = manifest_problems(broken(node_pool_manifest(pool_args()), path, value))
    assert any(message in problem for problem in problems), problems


NODE_CLASS_REFUSALS = [
    ("spec.amiSelectorTerms", [{"alias": "al2023@v20260714"}, {"id": "ami-0a1"}], "must be the only term"),
    ("spec.amiSelectorTerms", [{"alias": "ubuntu@22.04"}], "alias family must be one of"),
    ("spec.amiSelectorTerms", [{"alias": "windows2022@v1"}], "only specify version 'latest'"),
    ("spec.amiSelectorTerms", [{"id": "ami-0a1"}], "must specify amiFamily"),
    ("spec.instanceProfile", "KarpenterNodeInstanceProfile", "exactly one of ['role', 'instanceProfile']"),
    ("spec.role", None, "exactly one of ['role', 'instanceProfile']"),
    ("spec.subnetSelectorTerms", [], "cannot be empty"),
    ("spec.securityGroupSelectorTerms", [{"id": "sg-0a1", "tags": {"a": "b"}}], "mutually exclusive"),
    ("spec.tags", {"kubernetes.io/cluster/ci": "owned"}, "is restricted"),
    ("spec.tags", {"karpenter.sh/nodepool": "x"}, "is restricted"),
    ("spec.metadataOptions.httpPutResponseHopLimit", 65, "less than or equal to 64"),
    ("spec.blockDeviceMappings.0.ebs.volumeSize", "100GB", "a size such as 100Gi"),
    ("spec.blockDeviceMappings.0.ebs.volumeType", "gp4", "'gp3'"),
    ("spec.userdata", "#!/bin/sh", "Extra inputs are not permitted"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "value", "message"), NODE_CLASS_REFUSALS)
def test_the_model_refuses_what_the_ec2nodeclass_crd_refuses(path: str, value: Any, message: str):
    problems = manifest_problems(broken(node_class(pool_args()), path, value))
    assert any(message in problem for problem in problems), problems


# --- The components ----------------------------------------------------------------------------


def test_a_pool_is_a_nodepool_and_an_ec2nodeclass_each_its_own_custom_resource():
    args = pool_args()
    run = run_program(lambda: KarpenterPool("karpenter-pool-default", args))
    node_pool = run.one("kubernetes:karpenter.sh/v1:NodePool")
    node_class_resource = run.one("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")
    assert node_pool.inputs["apiVersion"] == "karpenter.sh/v1"
    assert node_class_resource.inputs["apiVersion"] == "karpenter.k8s.aws/v1"
    assert node_pool.inputs["metadata"] == {"name": "gitlab-runner-fleet-default"}
    assert node_class_resource.inputs["metadata"] == {"name": "gitlab-runner-fleet-default"}
    assert node_pool.inputs["spec"] == node_pool_manifest(args)["spec"]
    assert node_class_resource.inputs["spec"] == node_class(args)["spec"]
    # The NodePool is deleted first; the EC2NodeClass's finalizer waits for its NodeClaims
    # (karpenter-provider-aws pkg/controllers/nodeclass/controller.go).
    assert node_class_resource.urn in node_pool.dependencies


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"consolidate_after": "5 minutes"},
            "consolidate_after: must be hours, minutes and seconds",
        ),
        ({"termination_grace_period": "Never"}, "termination_grace_period: must be hours"),
        (
            {"labels": {"karpenter.sh/team": "ci"}},
            'NodePool: spec.template.metadata.labels.karpenter.sh/team.[key]: label domain "karpenter.sh" is restricted',
        ),
        ({"instance_categories": ["t"]}, "instance_categories: must be some of c, m, r"),
        ({"instance_types": ["c6i.2xlarge"]}, "instance_types: launches exactly these types"),
        (
            {"ami_ids": ["ami-0a1"], "ami_alias": "al2023@v20260714"},
            "ami_alias: leave it out with ami_ids",
        ),
        (
            {"discovery_tag": {"key": "karpenter.sh/discovery", "value": "ci"}},
            "discovery_tag: selects subnets and security groups",
        ),
        (
            {"security_group_ids": ["default"]},
            "EC2NodeClass: spec.securityGroupSelectorTerms.0.id: must be a security group id",
        ),
    ],
)
def test_direct_use_with_bad_arguments_is_refused(overrides: dict[str, Any], message: str):
    args: KarpenterPoolArgs = {**pool_args(), **overrides}  # type: ignore[typeddict-item]
    assert any(message in problem for problem in karpenter_pool_problems(args)), (
        karpenter_pool_problems(args)
    )
    run = run_program(lambda: KarpenterPool("pool", args), return_error=True)
    assert message in str(run.error)
    assert run.resources == []


def node_role_run(cni_policy: bool) -> ProgramRun:
    return run_program(
        lambda: KarpenterNodeRole(
            "karpenter-nodes", {"cluster_name": "ci", "cni_policy": cni_policy, "tags": {"a": "b"}}
        )
    )


def test_the_node_role_joins_the_cluster_through_an_ec2_linux_access_entry():
    run = node_role_run(cni_policy=False)
    role = run.one("aws:iam/role:Role")
    entry = run.one("aws:eks/accessEntry:AccessEntry")
    # EKS maps an EC2_LINUX entry's role to system:nodes itself and refuses groups beside it
    # (CreateAccessEntry); a created cluster authenticates through access entries only.
    assert entry.inputs["type"] == "EC2_LINUX"
    assert entry.inputs["principalArn"] == role.state["arn"]
    assert entry.inputs["clusterName"] == "ci"
    assert "kubernetesGroups" not in entry.inputs
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }
    policies = {
        a.inputs["policyArn"].rsplit("/", 1)[1]
        for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert policies == {"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly"}
    with_cni = node_role_run(cni_policy=True)
    assert len(with_cni.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")) == 3


NODE_ROLE = "arn:aws:iam::123456789012:role/karpenter-nodes"


def karpenter_run(**overrides: Any) -> ProgramRun:
    args = {
        "cluster_name": "ci",
        "region": "eu-west-1",
        "kubernetes_version": "1.34",
        "oidc_provider_arn": OIDC_ARN,
        "node_role_arns": [NODE_ROLE],
        "replicas": 2,
        "node_selector": {"gitlab-runner-fleet/node-role": "system"},
        "service_monitor_labels": {"release": "kube-prometheus-stack"},
        "tags": {"component": "karpenter"},
        **overrides,
    }
    return run_program(lambda: Karpenter("karpenter", args), return_error=True)  # type: ignore[arg-type]


def release(run: ProgramRun, name: str) -> Registered:
    (found,) = [r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.name == name]
    return found


@pytest.fixture(scope="module")
def installed() -> ProgramRun:
    return karpenter_run()


def test_interruption_events_reach_the_queue_karpenter_reads(installed: ProgramRun):
    queue = installed.one("aws:sqs/queue:Queue")
    assert queue.inputs["messageRetentionSeconds"] == 300
    assert queue.inputs["sqsManagedSseEnabled"] is True
    rules = {
        r.name: json.loads(r.inputs["eventPattern"])
        for r in installed.of_type("aws:cloudwatch/eventRule:EventRule")
    }
    # The source and detail-type each parser accepts (pkg/controllers/interruption/messages/
    # spotinterruption, rebalancerecommendation, scheduledchange, statechange parser.go).
    assert sorted((p["source"][0], p["detail-type"][0]) for p in rules.values()) == [
        ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
        ("aws.ec2", "EC2 Instance State-change Notification"),
        ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
        ("aws.health", "AWS Health Event"),
    ]
    assert set(rules) == {f"karpenter-{event}" for event in INTERRUPTION_EVENTS}
    targets = installed.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert {t.inputs["arn"] for t in targets} == {queue.state["arn"]}
    assert {t.inputs["rule"] for t in targets} == set(rules)
    policy = policy_document(installed.one("aws:sqs/queuePolicy:QueuePolicy"))
    (allow,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert sorted(allow["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(
        r.state["arn"] for r in installed.of_type("aws:cloudwatch/eventRule:EventRule")
    )
    values = release(installed, "karpenter").inputs["values"]
    # The chart passes the queue's name to the controller, which calls GetQueueUrl with it
    # (pkg/providers/sqs/sqs.go).
    assert values["settings"]["interruptionQueue"] == queue.state["name"]


def test_the_controller_may_pass_only_the_node_roles_and_read_only_its_queue(installed: ProgramRun):
    statements = {
        s["Sid"]: s for s in policy_document(installed.one("aws:iam/policy:Policy"))["Statement"]
    }
    queue = installed.one("aws:sqs/queue:Queue")
    assert statements["PassOnlyTheNodeRoles"]["Resource"] == [NODE_ROLE]
    assert statements["ReceiveInterruptions"]["Resource"] == queue.state["arn"]
    assert statements["DescribeThisCluster"]["Resource"] == (
        "arn:aws:eks:eu-west-1:123456789012:cluster/ci"
    )
    role = installed.one("aws:iam/role:Role")
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Condition"]["StringEquals"]["oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub"] == (
        "system:serviceaccount:kube-system:karpenter"
    )


def test_the_official_charts_are_pinned_and_crds_come_from_their_own_chart(installed: ProgramRun):
    crds = release(installed, "karpenter-crd")
    controller = release(installed, "karpenter")
    # hack/release/common.sh publishes both charts to public.ecr.aws/karpenter under the
    # release's version.
    assert crds.inputs["chart"] == "oci://public.ecr.aws/karpenter/karpenter-crd"
    assert controller.inputs["chart"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert crds.inputs["version"] == controller.inputs["version"] == "1.14.1"
    assert controller.inputs["skipCrds"] is True
    assert crds.urn in controller.dependencies
    values = controller.inputs["values"]
    role = installed.one("aws:iam/role:Role")
    assert values == karpenter_values(
        cluster_name="ci",
        interruption_queue=installed.one("aws:sqs/queue:Queue").state["name"],
        role_arn=role.state["arn"],
        replicas=2,
        node_selector={"gitlab-runner-fleet/node-role": "system"},
        service_monitor_labels={"release": "kube-prometheus-stack"},
    )
    # templates/deployment.yaml `required` settings.clusterName; the service account the IRSA
    # role trusts.
    assert values["serviceAccount"]["name"] == "karpenter"
    assert values["serviceMonitor"] == {
        "enabled": True,
        "additionalLabels": {"release": "kube-prometheus-stack"},
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"kubernetes_version": "1.25"},
            "kubernetes_version: Karpenter 1.14.1 supports Kubernetes 1.26 to 1.36, got '1.25'",
        ),
        ({"node_role_arns": []}, "node_role_arns: at least one"),
        ({"replicas": 0}, "replicas: must be >= 1"),
    ],
)
def test_karpenter_refuses_what_it_cannot_run_with(overrides: dict[str, Any], message: str):
    run = karpenter_run(**overrides)
    assert message in str(run.error)
    assert run.resources == []


def test_direct_use_with_arguments_of_the_wrong_shape_is_refused():
    """As a program passes them by mistake (found trying it as a new user: one string for the
    subnets became a subnet per character, no security groups selected none)."""
    args: Any = {**pool_args(), "subnet_ids": "subnet-0a1", "node_role_name": None}
    del args["security_group_ids"]
    run = run_program(lambda: KarpenterPool("pool", args), return_error=True)
    assert "subnet_ids: must be a list, got str 'subnet-0a1'" in str(run.error)
    assert "node_role_name: must be a string, got NoneType None" in str(run.error)
    assert run.resources == []
    args = {**pool_args()}
    del args["security_group_ids"]
    assert "security_group_ids: required without discovery_tag" in karpenter_pool_problems(args)
