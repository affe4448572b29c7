"""KarpenterPool: one pool's Karpenter NodePool and EC2NodeClass, each its own custom resource.

The manifests are plain functions of the pool's arguments (`node_pool_manifest`,
`ec2_node_class_manifest`), checked against Karpenter's v1 API (`components.karpenter`).
"""

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from ..arguments import check_arguments
from ..build_nodes import (
    ARCH_LABEL,
    DEFAULT_DISK_SIZE_GIB,
    IMDS_HOP_LIMITS,
    KUBERNETES_ARCH,
    MAX_DISK_SIZE_GIB,
    MIN_DISK_SIZE_GIB,
    InstanceShape,
    group_architecture,
    instance_shape,
    instance_types_problems,
    karpenter_requirement_problems,
    karpenter_shapes,
    taints_problems,
)
from ..karpenter import (
    CAPACITY_TYPE_LABEL,
    INSTANCE_CATEGORY_LABEL,
    INSTANCE_CPU_LABEL,
    INSTANCE_GENERATION_LABEL,
    INSTANCE_MEMORY_LABEL,
    INSTANCE_TYPE_LABEL,
    NODE_CLASS_API_VERSION,
    NODE_CLASS_GROUP,
    NODE_CLASS_KIND,
    NODE_POOL_API_VERSION,
    NODE_POOL_KIND,
    ON_DEMAND,
    SPOT,
    duration_problems,
    grace_period_problems,
    manifest_problems,
    node_pool_name,
)
from ..kubernetes_names import label_key_problems, label_value_problems
from ..naming import TagArgs
from ..versions import KARPENTER_AMI_ALIAS
from .spot_node_group import DEFAULT_IMDS_HOP_LIMIT, ROOT_DEVICE, TaintArgs

DEFAULT_CONSOLIDATE_AFTER = "10m"
"""How long a node must stay empty before Karpenter removes it; cluster-autoscaler's default
scale-down-unneeded-time, so a pool keeps its nodes as long under either scaler."""
DEFAULT_EXPIRE_AFTER = "720h"
"""Karpenter's own default: a node lives at most 30 days (plus the termination grace period)."""
DEFAULT_TERMINATION_GRACE_PERIOD = "2h"
"""How long an expiring or drifted node waits for its running jobs before Karpenter deletes
them: longer than the longest job the managers let finish (runner.terminationGracePeriodSeconds,
1 hour by default)."""
DRIFT_BUDGET = "1"
"""Nodes of a pool that may be replaced for drift (a new AMI, a changed EC2NodeClass) at once;
empty nodes may all go."""
AL2023 = "AL2023"


class KarpenterPoolArgs(TypedDict):
    """Inputs of KarpenterPool."""

    pool: str
    """The pool's name; the NodePool and EC2NodeClass are named `gitlab-runner-fleet-<pool>`."""
    node_role_name: pulumi.Input[str]
    """Name of the IAM role the nodes run as (Karpenter creates its instance profile)."""
    architecture: str
    """`x86_64` or `arm64`."""
    max_nodes: int
    """Most nodes at once; with their vCPUs and memory, the NodePool's limits."""
    labels: dict[str, str]
    """Node labels (the runner's node selector)."""
    taints: list[TaintArgs]
    """Node taints (the runner's tolerations), in Kubernetes casing."""
    instance_types: NotRequired[list[str]]
    """Launch exactly these types. Otherwise `instance_categories`, `min_generation`, `cpus`."""
    instance_categories: NotRequired[list[str]]
    """Instance categories (`c`, `m`, `r`) of every type the pool may launch."""
    min_generation: NotRequired[int]
    """The oldest instance generation the pool may launch, e.g. 6."""
    cpus: NotRequired[list[int]]
    """vCPU counts the pool may launch; memory follows from the category."""
    on_demand_fallback: NotRequired[bool]
    """Launch on-demand nodes when no spot offering fits. Default false (spot only)."""
    subnet_ids: NotRequired[pulumi.Input[list[str]]]
    """Subnets of the nodes, by ID."""
    security_group_ids: NotRequired[list[pulumi.Input[str]]]
    """Security groups of the nodes, by ID (the cluster's security group)."""
    discovery_tag: NotRequired[Optional[TagArgs]]
    """Select subnets and security groups by this tag instead of by ID."""
    ami_alias: NotRequired[str]
    """EKS AMI alias, e.g. `al2023@v20260714`. Default the pinned release."""
    ami_ids: NotRequired[list[str]]
    """AMI IDs instead of an alias (AL2023 AMIs)."""
    disk_size_gib: NotRequired[int]
    """Root volume. Default 100 GiB."""
    imds_hop_limit: NotRequired[int]
    """IMDSv2 hop limit: 1 (default) keeps pods off the instance metadata service."""
    user_data: NotRequired[Optional[pulumi.Input[str]]]
    """MIME multi-part user data; Karpenter adds its NodeConfig part."""
    consolidate_after: NotRequired[str]
    """How long a node stays empty before removal. Default `10m`."""
    expire_after: NotRequired[str]
    """Longest life of a node before it is replaced. Default `720h`."""
    termination_grace_period: NotRequired[str]
    """How long a node being replaced waits for running jobs. Default `2h`."""
    tags: NotRequired[dict[str, str]]
    """Tags of the instances, volumes and launch templates (cost allocation)."""


def instance_requirements(args: KarpenterPoolArgs) -> list[dict[str, Any]]:
    """What the pool's nodes must be: its architecture, spot (or on-demand after it), and its
    instance types, or every type of its categories, generations and sizes."""
    capacity = [SPOT, ON_DEMAND] if args.get("on_demand_fallback") else [SPOT]
    requirements: list[dict[str, Any]] = [
        {"key": ARCH_LABEL, "operator": "In", "values": [KUBERNETES_ARCH[args["architecture"]]]},
        # Karpenter prefers spot and falls back to on-demand only when no spot offering fits
        # (concepts/nodepools.md, Capacity Type).
        {"key": CAPACITY_TYPE_LABEL, "operator": "In", "values": capacity},
    ]
    if types := args.get("instance_types"):
        return [*requirements, {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": types}]
    categories, cpus = args.get("instance_categories", []), args.get("cpus", [])
    memory = sorted({shape.memory_gib * 1024 for shape in _shapes(args)})
    return [
        *requirements,
        {"key": INSTANCE_CATEGORY_LABEL, "operator": "In", "values": sorted(categories)},
        {
            "key": INSTANCE_GENERATION_LABEL,
            "operator": "Gt",
            "values": [str(args.get("min_generation", 0) - 1)],
        },
        {"key": INSTANCE_CPU_LABEL, "operator": "In", "values": [str(c) for c in sorted(cpus)]},
        # Memory per vCPU as the category has it: no variant of another shape (c5n) slips in,
        # so every node is one the pool's jobs were sized for.
        {"key": INSTANCE_MEMORY_LABEL, "operator": "In", "values": [str(m) for m in memory]},
    ]


def _shapes(args: KarpenterPoolArgs) -> list[InstanceShape]:
    if types := args.get("instance_types"):
        return [shape for shape in map(instance_shape, types) if shape is not None]
    return karpenter_shapes(
        args.get("instance_categories", []),
        args.get("cpus", []),
        args["architecture"],  # type: ignore[arg-type]
    )


def node_pool_limits(args: KarpenterPoolArgs) -> dict[str, str]:
    """The NodePool's limits: `max_nodes` nodes, and as many of its largest node's vCPUs and
    memory (what Karpenter sums from node capacity) when every shape it may launch is known.

    With one listed type of unknown shape the cpu and memory limits would be guesses: Karpenter
    drops every type whose capacity exceeds what is left of a limit (kubernetes-sigs/karpenter
    pkg/controllers/provisioning/scheduling/scheduler.go), so a guess too low stops the pool
    short of `max_nodes`; `nodes` alone bounds it then (found in review)."""
    limits = {"nodes": str(args["max_nodes"])}
    listed = args.get("instance_types") or []
    if any(instance_shape(instance_type) is None for instance_type in listed):
        return limits
    if shapes := _shapes(args):
        limits["cpu"] = str(args["max_nodes"] * max(shape.vcpus for shape in shapes))
        limits["memory"] = f"{args['max_nodes'] * max(s.memory_gib for s in shapes)}Gi"
    return limits


def node_pool_manifest(args: KarpenterPoolArgs) -> dict[str, Any]:
    """The pool's NodePool (karpenter.sh/v1)."""
    name = node_pool_name(args["pool"])
    template_spec: dict[str, Any] = {
        "nodeClassRef": {"group": NODE_CLASS_GROUP, "kind": NODE_CLASS_KIND, "name": name},
        "requirements": instance_requirements(args),
        # An empty value is no value in Karpenter's taint pattern.
        "taints": [
            {key: value for key, value in taint.items() if value != ""} for taint in args["taints"]
        ],
        # Expiry is forceful: do-not-disrupt does not hold it back, the grace period bounds
        # how long it waits for running jobs (docs/karpenter.md).
        "expireAfter": args.get("expire_after", DEFAULT_EXPIRE_AFTER),
        "terminationGracePeriod": args.get(
            "termination_grace_period", DEFAULT_TERMINATION_GRACE_PERIOD
        ),
    }
    return {
        "apiVersion": NODE_POOL_API_VERSION,
        "kind": NODE_POOL_KIND,
        "metadata": {"name": name},
        "spec": {
            "template": {"metadata": {"labels": dict(args["labels"])}, "spec": template_spec},
            "disruption": {
                # Only empty nodes are removed: a node with a job (or pause pods) stays.
                "consolidationPolicy": "WhenEmpty",
                "consolidateAfter": args.get("consolidate_after", DEFAULT_CONSOLIDATE_AFTER),
                # A budget without reasons would cap empty nodes too; this one caps drift only.
                "budgets": [{"nodes": DRIFT_BUDGET, "reasons": ["Drifted"]}],
            },
            "limits": node_pool_limits(args),
        },
    }


def ami_selector(args: KarpenterPoolArgs) -> dict[str, Any]:
    """The AMI terms (an alias alone, or IDs with the AL2023 family they belong to)."""
    if ids := args.get("ami_ids"):
        return {"amiFamily": AL2023, "amiSelectorTerms": [{"id": ami} for ami in ids]}
    return {"amiSelectorTerms": [{"alias": args.get("ami_alias", KARPENTER_AMI_ALIAS)}]}


def _selector_terms(ids: Sequence[str], tag: Optional[TagArgs]) -> list[dict[str, Any]]:
    if tag:
        return [{"tags": {tag["key"]: tag["value"]}}]
    return [{"id": value} for value in ids]


def ec2_node_class_manifest(
    args: KarpenterPoolArgs,
    *,
    role_name: str,
    subnet_ids: Sequence[str],
    security_group_ids: Sequence[str],
    user_data: str | None,
) -> dict[str, Any]:
    """The pool's EC2NodeClass (karpenter.k8s.aws/v1), with the inputs it needs resolved."""
    tag = args.get("discovery_tag")
    spec: dict[str, Any] = {
        "role": role_name,
        **ami_selector(args),
        "subnetSelectorTerms": _selector_terms(subnet_ids, tag),
        "securityGroupSelectorTerms": _selector_terms(security_group_ids, tag),
        # Build nodes run privileged jobs: never a public address, whatever the subnet says.
        "associatePublicIPAddress": False,
        "metadataOptions": {
            "httpEndpoint": "enabled",
            "httpProtocolIPv6": "disabled",
            "httpPutResponseHopLimit": args.get("imds_hop_limit", DEFAULT_IMDS_HOP_LIMIT),
            "httpTokens": "required",
        },
        # Karpenter derives the nodes' ephemeral storage from the root volume
        # (pkg/providers/instancetype/types.go), as kubelet will report it.
        "blockDeviceMappings": [
            {
                "deviceName": ROOT_DEVICE,
                "rootVolume": True,
                "ebs": {
                    "volumeSize": f"{args.get('disk_size_gib', DEFAULT_DISK_SIZE_GIB)}Gi",
                    "volumeType": "gp3",
                    "encrypted": True,
                    "deleteOnTermination": True,
                },
            }
        ],
        "tags": dict(args.get("tags", {})),
    }
    if user_data:
        spec["userData"] = user_data
    return {
        "apiVersion": NODE_CLASS_API_VERSION,
        "kind": NODE_CLASS_KIND,
        "metadata": {"name": node_pool_name(args["pool"])},
        "spec": spec,
    }


def _instance_problems(args: KarpenterPoolArgs) -> list[str]:
    """Why the pool cannot launch its instance types, or its categories, generations, sizes."""
    architecture = args["architecture"]
    if architecture not in KUBERNETES_ARCH:
        return [f"architecture: must be x86_64 or arm64, got {architecture!r}"]
    if not (types := args.get("instance_types")):
        return [
            problem.replace("categories:", "instance_categories:", 1)
            for problem in karpenter_requirement_problems(
                args.get("instance_categories", []),
                args.get("min_generation", 0),
                args.get("cpus", []),
            )
        ]
    if any(args.get(key) for key in ("instance_categories", "min_generation", "cpus")):
        return [
            "instance_types: launches exactly these types; leave out instance_categories, "
            "min_generation and cpus"
        ]
    if problems := instance_types_problems(types):
        return [f"instance_types: {p}" for p in problems]
    if group_architecture(types) != architecture:
        return [f"instance_types: are not {architecture}"]
    return []


def _node_problems(args: KarpenterPoolArgs) -> list[str]:
    """The node group rules a NodePool shares: size, disk, hop limit, labels and taints."""
    problems = []
    if args["max_nodes"] < 1:
        problems.append(f"max_nodes: must be >= 1, got {args['max_nodes']}")
    disk = args.get("disk_size_gib", DEFAULT_DISK_SIZE_GIB)
    if not MIN_DISK_SIZE_GIB <= disk <= MAX_DISK_SIZE_GIB:
        problems.append(f"disk_size_gib: must be {MIN_DISK_SIZE_GIB} to {MAX_DISK_SIZE_GIB}")
    if args.get("imds_hop_limit", DEFAULT_IMDS_HOP_LIMIT) not in IMDS_HOP_LIMITS:
        problems.append("imds_hop_limit: must be 1 or 2")
    problems += [
        f"labels: {key!r}: {p}"
        for key, value in args["labels"].items()
        for p in label_key_problems(key) + label_value_problems(value)
    ]
    return problems + [f"taints: {p}" for p in taints_problems(args["taints"])]


def _choice_problems(args: KarpenterPoolArgs) -> list[str]:
    """Durations Karpenter refuses, and two ways of choosing one thing."""
    problems = [
        f"{key}: {problem}"
        for key, check in (
            ("consolidate_after", duration_problems),
            ("expire_after", duration_problems),
            ("termination_grace_period", grace_period_problems),
        )
        if key in args
        for problem in check(args[key])  # type: ignore[literal-required]
    ]
    if args.get("ami_ids") and "ami_alias" in args:
        problems.append("ami_alias: leave it out with ami_ids (one way to pick the AMI)")
    if args.get("discovery_tag") and (args.get("subnet_ids") or args.get("security_group_ids")):
        problems.append("discovery_tag: selects subnets and security groups; drop their IDs")
    # An EC2NodeClass without terms selects nothing, and Karpenter launches no node for it.
    problems += [
        f"{key}: required without discovery_tag"
        for key in ("subnet_ids", "security_group_ids")
        if not args.get("discovery_tag") and not args.get(key)
    ]
    return problems


def karpenter_pool_problems(args: KarpenterPoolArgs) -> list[str]:
    """Every rule of one Karpenter pool, each problem prefixed with its argument's name; the
    stack settings check a pool with the same functions."""
    problems = _instance_problems(args) + _node_problems(args) + _choice_problems(args)
    if problems:
        return problems
    # What is left is what only Karpenter's API knows (restricted labels, its patterns), with
    # the IDs known before anything is declared.
    subnets = args.get("subnet_ids", [])
    known_subnets = [s for s in subnets if isinstance(s, str)] if isinstance(subnets, list) else []
    known_groups = [g for g in args.get("security_group_ids", []) if isinstance(g, str)]
    return [
        f"{kind}: {problem}"
        for kind, manifest in (
            (NODE_POOL_KIND, node_pool_manifest(args)),
            (
                NODE_CLASS_KIND,
                ec2_node_class_manifest(
                    args,
                    role_name="node-role",
                    subnet_ids=known_subnets or ["subnet-0"],
                    security_group_ids=known_groups or ["sg-0"],
                    user_data=None,
                ),
            ),
        )
        for problem in manifest_problems(manifest)
    ]


class KarpenterPool(pulumi.ComponentResource):
    """One pool's Karpenter capacity: a NodePool that launches spot nodes from every instance
    type fitting the pool (removing them once empty, replacing drifted ones one at a time),
    and its EC2NodeClass (pinned AMI, IMDSv2 with the pool's hop limit, encrypted gp3 root
    volume, the nodes' user data, cost tags). Both are custom resources of Karpenter's v1 API:
    pass the cluster's Kubernetes provider in `opts.providers`, and the Karpenter release in
    `opts.depends_on` where the same stack installs it.
    """

    node_pool_name: pulumi.Output[str]
    """Name of the NodePool (and of the EC2NodeClass)."""

    def __init__(
        self, name: str, args: KarpenterPoolArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments(
            "KarpenterPool", name, args, KarpenterPoolArgs, lambda: karpenter_pool_problems(args)
        )
        super().__init__("gitlab-runner-fleet:index:KarpenterPool", name, None, opts)
        node_class_spec = pulumi.Output.all(
            args["node_role_name"],
            pulumi.Output.from_input(args.get("subnet_ids", [])),
            pulumi.Output.all(*args.get("security_group_ids", [])),
            args.get("user_data"),
        ).apply(
            lambda resolved: ec2_node_class_manifest(
                args,
                role_name=resolved[0],
                subnet_ids=resolved[1],
                security_group_ids=resolved[2],
                user_data=resolved[3],
            )["spec"]
        )
        object_name = node_pool_name(args["pool"])
        node_class = self._custom_resource(
            f"{name}-node-class",
            {
                "apiVersion": NODE_CLASS_API_VERSION,
                "kind": NODE_CLASS_KIND,
                "metadata": {"name": object_name},
                "spec": node_class_spec,
            },
        )
        # Deleted before its class: the NodePool owns its NodeClaims (ownerReferences with
        # blockOwnerDeletion), and the EC2NodeClass's finalizer waits for them.
        self._custom_resource(name, node_pool_manifest(args), depends_on=[node_class])
        self.node_pool_name = pulumi.Output.from_input(object_name)
        self.register_outputs({"node_pool_name": self.node_pool_name})

    def _custom_resource(
        self,
        name: str,
        manifest: Mapping[str, Any],
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            name,
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
