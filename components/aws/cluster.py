"""EksCluster: the EKS cluster the fleet runs on, and a Kubernetes provider built from it."""

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, Optional, TypedDict, cast

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s
from pulumi_aws import eks as aws_eks
from pulumi_aws import iam

from ..arguments import check_arguments
from ..build_nodes import ami_type_for, instance_types_problems
from ..naming import iam_principal_arn_problems
from ..versions import SUPPORTED_KUBERNETES_VERSIONS
from .iam_documents import STS_AUDIENCE, oidc_issuer_host_path
from .irsa_role import IrsaRole
from .node_role import CNI_POLICY, NodeRole

CREATE_MODE = "create"
EXISTING_MODE = "existing"
SYSTEM_NODE_LABELS = {"gitlab-runner-fleet/node-role": "system"}
DEFAULT_SYSTEM_INSTANCE_TYPES = ("m6i.large", "m5.large")
DEFAULT_SYSTEM_NODE_COUNT = 2
ADMIN_ACCESS_POLICY = "AmazonEKSClusterAdminPolicy"
CREATED_SERVICE_CIDR = "10.100.0.0/16"
"""The default Service range of a created cluster, set explicitly so fixed ClusterIPs are known."""
VPC_CNI_NAMESPACE = "kube-system"
VPC_CNI_SERVICE_ACCOUNT = "aws-node"
"""The VPC CNI's DaemonSet runs as this service account (the `vpc-cni` EKS add-on)."""
# The EKS API's rules for a cluster's Service range (KubernetesNetworkConfigRequest
# serviceIpv4Cidr): inside these private blocks, /12 to /24, no overlap with any VPC CIDR.
SERVICE_CIDR_PRIVATE_BLOCKS = tuple(
    ipaddress.IPv4Network(block) for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
SERVICE_CIDR_PREFIXES = range(12, 25)


def exec_kubeconfig(
    cluster_name: str,
    endpoint: str,
    certificate_authority_data: str,
    region: str,
    profile: str | None = None,
) -> dict[str, Any]:
    """A kubeconfig that fetches a fresh token with `aws eks get-token` on every call.

    A static token would expire after 15 minutes, in the middle of long Helm waits, and would
    change the provider's configuration on every run. With `profile` (the stack's
    `aws:profile`) the token is fetched as the same identity the AWS provider uses.
    """
    exec_config: dict[str, Any] = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": "aws",
        "args": [
            "--region", region,
            "eks", "get-token",
            "--cluster-name", cluster_name,
            "--output", "json",
        ],
    }  # fmt: skip
    if profile:
        exec_config["args"] += ["--profile", profile]
        exec_config["env"] = [{"name": "AWS_PROFILE", "value": profile}]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {
                    "server": endpoint,
                    "certificate-authority-data": certificate_authority_data,
                },
            }
        ],
        "contexts": [
            {"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}
        ],
        "current-context": cluster_name,
        "users": [{"name": cluster_name, "user": {"exec": exec_config}}],
    }


class EksClusterArgs(TypedDict):
    """Inputs of EksCluster."""

    mode: str
    """`create` (a new cluster with pulumi-eks) or `existing` (look one up by name)."""
    name: str
    """EKS cluster name."""
    version: str
    """Kubernetes minor, e.g. `1.34`; the version of a created cluster."""
    region: str
    """AWS region of the cluster (for the kubeconfig's token command)."""
    aws_profile: NotRequired[Optional[str]]
    """AWS CLI profile the kubeconfig's token command uses (the stack's `aws:profile`)."""
    admin_principal_arns: NotRequired[list[str]]
    """`create`: IAM roles or users granted cluster admin through EKS access entries."""
    vpc_id: NotRequired[Optional[str]]
    """`create`: VPC of the cluster."""
    service_cidr: NotRequired[str]
    """`create`: the Service range (fixed at creation). Default `10.100.0.0/16`."""
    network_policies: NotRequired[bool]
    """`create`: the VPC CNI enforces NetworkPolicies. Default true."""
    private_subnet_ids: NotRequired[list[str]]
    """`create`: private subnets of the control plane and nodes."""
    public_subnet_ids: NotRequired[list[str]]
    """`create`: public subnets for load balancers."""
    node_subnet_ids: NotRequired[list[str]]
    """Subnets for node groups. Default: private subnets (create) or the cluster's (existing)."""
    system_instance_types: NotRequired[list[str]]
    """`create`: instance types of the on-demand system node group."""
    system_node_count: NotRequired[int]
    """`create`: number of system nodes."""
    create_oidc_provider: NotRequired[bool]
    """`existing`: create the IAM OIDC provider rather than look it up."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to AWS resources."""


class EksCluster(pulumi.ComponentResource):
    """An EKS cluster with IRSA: created (API authentication, OIDC provider, no default node
    group, a small on-demand system node group) or an existing one looked up by name.

    Either way `kubernetes_provider` talks to this cluster only, from its own endpoint and CA,
    never from the user's ambient kubeconfig.
    """

    cluster_name: pulumi.Output[str]
    """Cluster name; resolves once the cluster exists, so dependents wait for it."""
    oidc_provider_arn: pulumi.Output[str]
    """ARN of the cluster's IAM OIDC provider (for IRSA trust policies)."""
    oidc_issuer: pulumi.Output[str]
    """OIDC issuer host and path, without `https://`."""
    vpc_id: pulumi.Output[str]
    """VPC of the cluster."""
    node_subnet_ids: pulumi.Output[list[str]]
    """Subnets node groups should use."""
    kubeconfig: pulumi.Output[str]
    """Kubeconfig (JSON) using `aws eks get-token`; secret."""
    vpc_cni_role_arn: pulumi.Output[Optional[str]]
    """`create`: the VPC CNI's own IRSA role; none for an existing cluster."""

    def __init__(
        self, name: str, args: EksClusterArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments("EksCluster", name, args, EksClusterArgs, lambda: _problems(args))
        super().__init__("gitlab-runner-fleet:index:EksCluster", name, None, opts)
        # In-cluster resources wait for these: Helm releases need nodes to schedule on.
        nodes: list[pulumi.Resource] = []
        if args["mode"] == CREATE_MODE:
            nodes.append(self._create_cluster(name, args))
        else:
            self._use_existing_cluster(name, args)
            self.vpc_cni_role_arn = pulumi.Output.from_input(None)
        self.kubernetes_provider = k8s.Provider(
            f"{name}-kubernetes",
            kubeconfig=self.kubeconfig,
            # A changed kubeconfig then updates the provider instead of replacing every object.
            cluster_identifier=args["name"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=nodes),
        )
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "oidc_provider_arn": self.oidc_provider_arn,
                "oidc_issuer": self.oidc_issuer,
                "vpc_id": self.vpc_id,
                "node_subnet_ids": self.node_subnet_ids,
                "kubeconfig": self.kubeconfig,
                "vpc_cni_role_arn": self.vpc_cni_role_arn,
            }
        )

    def _create_cluster(self, name: str, args: EksClusterArgs) -> aws_eks.NodeGroup:
        """Creates the cluster and its system node group, which it returns."""
        tags = args.get("tags", {})
        vpc_id = str(args.get("vpc_id"))  # checked in create mode (_problems)
        private_subnet_ids = args.get("private_subnet_ids", [])
        service_cidr = args.get("service_cidr", CREATED_SERVICE_CIDR)
        cluster = eks.Cluster(
            name,
            name=args["name"],
            version=args["version"],
            vpc_id=vpc_id,
            private_subnet_ids=private_subnet_ids,
            public_subnet_ids=args.get("public_subnet_ids") or None,
            authentication_mode=eks.AuthenticationMode.API,
            kubernetes_service_ip_address_range=service_cidr,
            # The VPC CNI add-on is declared below with a role of its own, which has to trust
            # the cluster's OIDC provider and so cannot be an input of the cluster itself.
            use_default_vpc_cni=True,
            provider_credential_opts=(
                {"profile_name": args["aws_profile"]} if args.get("aws_profile") else None
            ),
            create_oidc_provider=True,
            skip_default_node_group=True,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Derived from the cluster's outputs so that everything using the name waits for it.
        self.cluster_name = cluster.kubeconfig_json.apply(lambda _: args["name"])
        node_subnet_ids = args.get("node_subnet_ids") or private_subnet_ids
        system_instance_types = args.get(
            "system_instance_types", list(DEFAULT_SYSTEM_INSTANCE_TYPES)
        )
        system_node_count = args.get("system_node_count", DEFAULT_SYSTEM_NODE_COUNT)
        self.oidc_provider_arn = cluster.oidc_provider_arn
        vpc_cni = self._create_vpc_cni(name, args, cluster)
        system_role = NodeRole(
            f"{name}-system-nodes",
            {
                "description": f"EKS system nodes of {args['name']}",
                "cni_policy": False,
                "tags": tags,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        system_nodes = aws_eks.NodeGroup(
            f"{name}-system",
            cluster_name=self.cluster_name,
            node_role_arn=system_role.role_arn,
            version=args["version"],
            capacity_type="ON_DEMAND",
            instance_types=system_instance_types,
            ami_type=ami_type_for(system_instance_types),
            scaling_config={
                "min_size": system_node_count,
                "desired_size": system_node_count,
                "max_size": system_node_count + 1,
            },
            subnet_ids=node_subnet_ids,
            labels=SYSTEM_NODE_LABELS,
            tags=tags,
            # Nodes whose role lacks the CNI policy get pod addresses only once the CNI has its.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[vpc_cni]),
        )
        self._create_admin_access(name, args)
        self.oidc_issuer = cluster.oidc_issuer
        self.vpc_id = pulumi.Output.from_input(vpc_id)
        self.node_subnet_ids = pulumi.Output.from_input(node_subnet_ids)
        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfig_json)
        return system_nodes

    def _create_vpc_cni(
        self, name: str, args: EksClusterArgs, cluster: eks.Cluster
    ) -> eks.VpcCniAddon:
        """The `vpc-cni` add-on with an IRSA role of its own and, with NetworkPolicies on, its
        policy agent enforcing them; so no node role needs `AmazonEKS_CNI_Policy`.

        Named and parented as pulumi-eks names the add-on it creates inside a cluster when
        `useDefaultVpcCni` is unset (`${name}-vpc-cni`, child of the cluster: nodejs/eks/
        cluster/cluster.ts createCore): a cluster created by an earlier version keeps its
        add-on, which is updated in place instead of created twice (EKS refuses a second
        `vpc-cni`, ResourceInUseException).
        """
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        role = IrsaRole(
            f"{name}-vpc-cni",
            {
                "oidc_provider_arn": self.oidc_provider_arn,
                "namespace": VPC_CNI_NAMESPACE,
                "service_account": VPC_CNI_SERVICE_ACCOUNT,
                "policy_arn": partition.partition.apply(
                    lambda part: f"arn:{part}:iam::aws:policy/{CNI_POLICY}"
                ),
                "description": f"VPC CNI (aws-node) of EKS cluster {args['name']}",
                "tags": args.get("tags", {}),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.vpc_cni_role_arn = role.role_arn
        return eks.VpcCniAddon(
            f"{name}-vpc-cni",
            cluster_name=self.cluster_name,
            cluster_version=args["version"],
            service_account_role_arn=role.role_arn,
            enable_network_policy=args.get("network_policies", True),
            # The cluster's tags, as pulumi-eks gave the add-on it created (cluster.ts). A map,
            # as the provider reads it (addons/cni-addon.ts); the Python SDK's type says a list
            # of maps, which the provider would hand to aws.eks.Addon as is.
            tags=cast(Any, args.get("tags", {})),
            opts=pulumi.ResourceOptions(parent=cluster),
        )

    def _create_admin_access(self, name: str, args: EksClusterArgs) -> None:
        """Cluster admin for more principals than the creator (a CI role, an SSO admin role).

        pulumi-eks grants admin only to the principal that created the cluster.
        """
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        for index, principal_arn in enumerate(args.get("admin_principal_arns", [])):
            entry = aws_eks.AccessEntry(
                f"{name}-admin-{index}",
                cluster_name=self.cluster_name,
                principal_arn=principal_arn,
                type="STANDARD",
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws_eks.AccessPolicyAssociation(
                f"{name}-admin-{index}",
                cluster_name=self.cluster_name,
                principal_arn=entry.principal_arn,
                policy_arn=partition.partition.apply(
                    lambda part: f"arn:{part}:eks::aws:cluster-access-policy/{ADMIN_ACCESS_POLICY}"
                ),
                access_scope={"type": "cluster"},
                opts=pulumi.ResourceOptions(parent=self),
            )

    def _use_existing_cluster(self, name: str, args: EksClusterArgs) -> None:
        invoke_opts = pulumi.InvokeOutputOptions(parent=self)
        found = aws_eks.get_cluster_output(name=args["name"], opts=invoke_opts)
        issuer_url = found.identities.apply(lambda identities: identities[0].oidcs[0].issuer)
        if args.get("create_oidc_provider", False):
            self.oidc_provider_arn = iam.OpenIdConnectProvider(
                f"{name}-oidc",
                url=issuer_url,
                client_id_lists=[STS_AUDIENCE],
                tags=args.get("tags", {}),
                opts=pulumi.ResourceOptions(parent=self),
            ).arn
        else:
            self.oidc_provider_arn = iam.get_open_id_connect_provider_output(
                url=issuer_url, opts=invoke_opts
            ).arn
        self.cluster_name = found.name
        self.oidc_issuer = issuer_url.apply(oidc_issuer_host_path)
        self.vpc_id = found.vpc_config.vpc_id
        explicit_subnets = args.get("node_subnet_ids")
        self.node_subnet_ids = (
            pulumi.Output.from_input(explicit_subnets)
            if explicit_subnets
            else found.vpc_config.subnet_ids
        )
        found.version.apply(lambda actual: _warn_on_version_mismatch(args, actual))
        self.kubeconfig = pulumi.Output.secret(
            found.apply(
                lambda cluster: json.dumps(
                    exec_kubeconfig(
                        args["name"],
                        cluster.endpoint,
                        cluster.certificate_authorities[0].data,
                        args["region"],
                        args.get("aws_profile"),
                    )
                )
            )
        )


def _problems(args: EksClusterArgs) -> list[str]:
    """The settings' rules for a cluster, by argument."""
    mode = args["mode"]
    if mode not in (CREATE_MODE, EXISTING_MODE):
        return [f"mode: must be {CREATE_MODE} or {EXISTING_MODE}, got {mode!r}"]
    problems = []
    if args["version"] not in SUPPORTED_KUBERNETES_VERSIONS:
        problems.append(
            f"version: must be one of {', '.join(SUPPORTED_KUBERNETES_VERSIONS)}, "
            f"got {args['version']!r}"
        )
    if mode == CREATE_MODE:
        if not args.get("vpc_id"):
            problems.append("vpc_id: required in create mode")
        if len(args.get("private_subnet_ids", [])) < 2:
            problems.append("private_subnet_ids: at least two in different availability zones")
        problems += [
            f"service_cidr: {p}"
            for p in service_cidr_problems(args.get("service_cidr", CREATED_SERVICE_CIDR))
        ]
        problems += [
            f"system_instance_types: {p}"
            for p in instance_types_problems(
                args.get("system_instance_types", list(DEFAULT_SYSTEM_INSTANCE_TYPES))
            )
        ]
        if args.get("system_node_count", DEFAULT_SYSTEM_NODE_COUNT) < 1:
            problems.append("system_node_count: must be >= 1")
    problems += [
        f"admin_principal_arns: {p}"
        for arn in args.get("admin_principal_arns", [])
        for p in iam_principal_arn_problems(arn)
    ]
    return problems


def _warn_on_version_mismatch(args: EksClusterArgs, actual: str) -> None:
    if problem := version_problem(args["version"], actual, args["name"]):
        pulumi.log.warn(f"cluster.version {problem}")


def version_problem(configured: str, running: str, cluster_name: str) -> str | None:
    """Why node groups cannot be created at `configured` on a cluster running `running`.

    EKS creates a managed node group only at the cluster's current Kubernetes version
    (CreateNodegroup `version`: "the only accepted specified value"), and cluster-autoscaler's
    image follows the same setting.
    """
    if configured == running:
        return None
    if tuple(map(int, configured.split("."))) < tuple(map(int, running.split("."))):
        fix = f"set cluster.version: '{running}' (the control plane was upgraded)"
    else:
        fix = (
            f"upgrade the control plane to {configured} first, or set cluster.version: '{running}'"
        )
    return (
        f"is {configured} but cluster {cluster_name} runs {running}: EKS creates node groups "
        f"only at the cluster's version, so a new pool would fail; {fix}"
    )


def service_cidr_problems(cidr: str, vpc_cidrs: Sequence[str] = ()) -> list[str]:
    """Why EKS would refuse `cidr` as a created cluster's Service range (empty when it would
    not): a private IPv4 block of /12 to /24 overlapping none of the VPC's CIDR blocks."""
    try:
        network = ipaddress.IPv4Network(cidr)
    except ValueError:
        return [f"must be an IPv4 network such as 10.100.0.0/16, got {cidr!r}"]
    problems = []
    if not any(network.subnet_of(block) for block in SERVICE_CIDR_PRIVATE_BLOCKS):
        problems.append(
            "must lie within 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16, got " + str(cidr)
        )
    if network.prefixlen not in SERVICE_CIDR_PREFIXES:
        problems.append(f"must be between /12 and /24, got /{network.prefixlen}")
    overlapping = [block for block in vpc_cidrs if network.overlaps(ipaddress.ip_network(block))]
    if overlapping:
        problems.append(
            f"{cidr} overlaps the VPC's CIDR blocks {', '.join(overlapping)}, which EKS refuses; "
            "pick a range outside the VPC (it cannot change once the cluster exists)"
        )
    return problems


@dataclass(frozen=True)
class ClusterNetwork:
    """Where a cluster's nodes and Services live."""

    vpc_id: str
    service_cidr: str


def vpc_cidr_blocks(vpc_id: str) -> list[str]:
    """Every IPv4 CIDR block of a VPC: its primary block and the associated ones."""
    vpc = aws.ec2.get_vpc(id=vpc_id)
    blocks = [vpc.cidr_block]
    blocks += [
        association.cidr_block
        for association in vpc.cidr_block_associations
        if association.cidr_block not in blocks
    ]
    return blocks


def created_cluster_network(vpc_id: str, service_cidr: str) -> tuple[ClusterNetwork, list[str]]:
    """A cluster to be created in `vpc_id`, and why EKS would refuse `service_cidr` there.

    The VPC's blocks are looked up while the program runs: a clash must fail before anything
    is declared, since EKS fixes the range at creation.
    """
    problems = service_cidr_problems(service_cidr, vpc_cidr_blocks(vpc_id))
    return ClusterNetwork(vpc_id=vpc_id, service_cidr=service_cidr), problems


@dataclass(frozen=True)
class VpcCni:
    """What an existing cluster's `vpc-cni` add-on does, as EKS reports it."""

    enforces_network_policies: bool
    """`enableNetworkPolicy: "true"` in its configuration values: its agent enforces them."""
    own_role: bool
    """It runs with a role of its own (IRSA or Pod Identity), not the node role's."""


def vpc_cni_of_addon(
    configuration_values: str, service_account_role_arn: str, pod_identity_accounts: Sequence[str]
) -> VpcCni:
    """The add-on's answer (eks:DescribeAddon), read."""
    try:
        configuration = json.loads(configuration_values) if configuration_values else {}
    except json.JSONDecodeError:
        configuration = {}
    enabled = str(configuration.get("enableNetworkPolicy", "false")).lower() == "true"
    own_role = bool(service_account_role_arn) or VPC_CNI_SERVICE_ACCOUNT in pod_identity_accounts
    return VpcCni(enforces_network_policies=enabled, own_role=own_role)


@dataclass(frozen=True)
class ExistingCluster:
    """What the stack needs to know about an existing cluster before it declares anything."""

    network: ClusterNetwork
    kubernetes_version: str
    vpc_cni: VpcCni | None
    """None when the cluster has no `vpc-cni` add-on (a self-managed CNI) or it cannot be read."""


def existing_cluster(cluster_name: str) -> ExistingCluster:
    """An existing EKS cluster's network, version and VPC CNI add-on, looked up while the
    program runs.

    Synchronous, because what the stack declares depends on them: the S3 gateway endpoint on
    what the VPC already has, the registry mirror's fixed ClusterIP on the Service range, and
    whether the stack may go on at all on the version and the CNI's role.
    """
    cluster = aws_eks.get_cluster(name=cluster_name)
    try:
        addon = aws_eks.get_addon(addon_name="vpc-cni", cluster_name=cluster_name)
    except Exception as error:
        pulumi.log.warn(
            f"cluster {cluster_name}: cannot read its vpc-cni add-on ({error}); whether it "
            "enforces NetworkPolicies and has a role of its own is unknown"
        )
        vpc_cni = None
    else:
        vpc_cni = vpc_cni_of_addon(
            addon.configuration_values,
            addon.service_account_role_arn,
            [association.service_account for association in addon.pod_identity_associations],
        )
    return ExistingCluster(
        network=ClusterNetwork(
            vpc_id=str(cluster.vpc_config.vpc_id),
            service_cidr=str(cluster.kubernetes_network_configs[0].service_ipv4_cidr),
        ),
        kubernetes_version=str(cluster.version),
        vpc_cni=vpc_cni,
    )


def network_policy_enforcement(
    network_policies: bool, *, created: bool, vpc_cni: VpcCni | None
) -> tuple[str, str | None]:
    """What enforces the job NetworkPolicies, for the stack's outputs, and a warning when
    they are declared but nothing may enforce them (Kubernetes accepts them either way)."""
    if not network_policies:
        return "off: isolation.networkPolicies is false", None
    if created:
        return "enforced: the stack's vpc-cni add-on has enableNetworkPolicy", None
    if vpc_cni is not None and vpc_cni.enforces_network_policies:
        return "enforced: the cluster's vpc-cni add-on has enableNetworkPolicy", None
    reason = (
        "the cluster's vpc-cni add-on does not set enableNetworkPolicy"
        if vpc_cni is not None
        else "the cluster has no readable vpc-cni add-on"
    )
    status = f"not enforced by the VPC CNI: {reason}"
    warning = (
        f"isolation.networkPolicies: {reason}, so the job NetworkPolicies are accepted and do "
        "nothing unless another engine (Calico, Cilium) enforces them; set enableNetworkPolicy: "
        '"true" in the add-on configuration (docs/job-isolation.md)'
    )
    return status, warning


def node_cni_policy_problem(node_cni_policy: bool, vpc_cni: VpcCni | None) -> str | None:
    """Why build nodes without `AmazonEKS_CNI_Policy` would get no pod addresses: the
    cluster's VPC CNI uses the node role, having none of its own, or nothing says it has one
    (a self-managed aws-node, or no `eks:DescribeAddon` for the deploying identity)."""
    if node_cni_policy or (vpc_cni is not None and vpc_cni.own_role):
        return None
    if vpc_cni is None:
        return (
            "is false, but the cluster's vpc-cni add-on cannot be read (a self-managed aws-node, "
            "or no eks:DescribeAddon permission), so nothing shows that aws-node has a role of "
            "its own: without AmazonEKS_CNI_Policy on the node role, pods on the build nodes "
            "would get no addresses. Keep it true, or move the CNI to the add-on with a role"
        )
    return (
        "is false, but the cluster's vpc-cni add-on has no role of its own (no service account "
        "role, no Pod Identity association for aws-node): pods on the build nodes would get no "
        "addresses. Give the add-on an IRSA role with AmazonEKS_CNI_Policy first"
    )
