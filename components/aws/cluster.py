"""EksCluster: the EKS cluster the fleet runs on, and a Kubernetes provider built from it."""

import json
from dataclasses import dataclass
from typing import Any, NotRequired, Optional, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s
from pulumi_aws import eks as aws_eks
from pulumi_aws import iam

from ..build_nodes import ami_type_for
from .iam_documents import STS_AUDIENCE, oidc_issuer_host_path
from .node_role import NodeRole

CREATE_MODE = "create"
EXISTING_MODE = "existing"
SYSTEM_NODE_LABELS = {"gitlab-runner-fleet/node-role": "system"}
DEFAULT_SYSTEM_INSTANCE_TYPES = ("m6i.large", "m5.large")
DEFAULT_SYSTEM_NODE_COUNT = 2
ADMIN_ACCESS_POLICY = "AmazonEKSClusterAdminPolicy"
CREATED_SERVICE_CIDR = "10.100.0.0/16"
"""The Service range a created cluster gets, set explicitly so fixed ClusterIPs are known."""
"""Labels of the on-demand system nodes a created cluster gets."""


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

    def __init__(
        self, name: str, args: EksClusterArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        super().__init__("gitlab-runner-fleet:index:EksCluster", name, None, opts)
        # In-cluster resources wait for these: Helm releases need nodes to schedule on.
        nodes: list[pulumi.Resource] = []
        if args["mode"] == CREATE_MODE:
            nodes.append(self._create_cluster(name, args))
        elif args["mode"] == EXISTING_MODE:
            self._use_existing_cluster(name, args)
        else:
            raise ValueError(f"EksCluster {name}: mode must be create or existing")
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
            }
        )

    def _create_cluster(self, name: str, args: EksClusterArgs) -> aws_eks.NodeGroup:
        """Creates the cluster and its system node group, which it returns."""
        tags = args.get("tags", {})
        vpc_id = args.get("vpc_id")
        private_subnet_ids = args.get("private_subnet_ids", [])
        if not vpc_id or not private_subnet_ids:
            raise ValueError(f"EksCluster {name}: create mode needs vpc_id and private_subnet_ids")
        cluster = eks.Cluster(
            name,
            name=args["name"],
            version=args["version"],
            vpc_id=vpc_id,
            private_subnet_ids=private_subnet_ids,
            public_subnet_ids=args.get("public_subnet_ids") or None,
            authentication_mode=eks.AuthenticationMode.API,
            kubernetes_service_ip_address_range=CREATED_SERVICE_CIDR,
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
        system_role = NodeRole(
            f"{name}-system-nodes",
            {"description": f"EKS system nodes of {args['name']}", "tags": tags},
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
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._create_admin_access(name, args)
        self.oidc_provider_arn = cluster.oidc_provider_arn
        self.oidc_issuer = cluster.oidc_issuer
        self.vpc_id = pulumi.Output.from_input(vpc_id)
        self.node_subnet_ids = pulumi.Output.from_input(node_subnet_ids)
        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfig_json)
        return system_nodes

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


def _warn_on_version_mismatch(args: EksClusterArgs, actual: str) -> None:
    if actual != args["version"]:
        pulumi.log.warn(
            f"cluster.version is {args['version']} but cluster {args['name']} runs {actual}: "
            f"set cluster.version: '{actual}' so cluster-autoscaler matches the cluster"
        )


@dataclass(frozen=True)
class ClusterNetwork:
    """Where a cluster's nodes and Services live."""

    vpc_id: str
    service_cidr: str


def existing_cluster_network(cluster_name: str) -> ClusterNetwork:
    """The VPC and Service range of an existing EKS cluster, looked up while the program runs.

    Synchronous, because what the stack declares depends on them: the S3 gateway endpoint on
    what the VPC already has, the registry mirror's fixed ClusterIP on the Service range.
    """
    cluster = aws_eks.get_cluster(name=cluster_name)
    return ClusterNetwork(
        vpc_id=str(cluster.vpc_config.vpc_id),
        service_cidr=str(cluster.kubernetes_network_configs[0].service_ipv4_cidr),
    )
