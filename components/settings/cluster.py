"""`cluster`: the Kubernetes cluster the fleet runs on."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from ..aws.cluster import (
    CREATED_SERVICE_CIDR,
    DEFAULT_SYSTEM_INSTANCE_TYPES,
    DEFAULT_SYSTEM_NODE_COUNT,
    service_cidr_problems,
)
from ..build_nodes import instance_types_problems
from ..naming import iam_principal_arn_problems
from ..versions import SUPPORTED_KUBERNETES_VERSIONS
from .base import Problem, Section

_EKS_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
EKS_MODES = ("create", "existing")
KUBECONFIG_MODE = "kubeconfig"


class ClusterSettings(Section):
    """The EKS cluster the fleet runs on: created by this stack, or an existing one by name."""

    config_key: ClassVar[str] = "cluster"

    mode: Literal["create", "existing", "kubeconfig"] = Field(
        "existing",
        description="`create`: a new EKS cluster (pulumi-eks) in an existing VPC. `existing`: "
        "look an EKS cluster up by `name`. `kubeconfig`: any other Kubernetes cluster (k3s, "
        "on-prem, GKE), reached through the secret `kubeconfig`; no AWS capacity is managed.",
    )
    name: str = Field(
        ..., description="EKS cluster name (required); for `kubeconfig`, a label of the cluster."
    )
    version: str | None = Field(
        None,
        description="EKS modes (required): Kubernetes minor of the cluster, e.g. `1.34`. Every "
        "node group and the cluster-autoscaler image follow it; see README.md#upgrading.",
    )
    vpc_id: str | None = Field(None, description="`create` only: VPC of the new cluster.")
    service_cidr: str = Field(
        CREATED_SERVICE_CIDR,
        description="`create` only: the cluster's Service range, fixed when the cluster is "
        "created: a private block of /12 to /24 that overlaps none of the VPC's CIDR blocks "
        "(looked up). The registry mirror's fixed ClusterIP is taken from it.",
    )
    private_subnet_ids: list[str] = Field(
        default_factory=list,
        description="`create` only: private subnets (at least two AZs) for nodes and the API.",
    )
    public_subnet_ids: list[str] = Field(
        default_factory=list, description="`create` only: public subnets for load balancers."
    )
    node_subnet_ids: list[str] = Field(
        default_factory=list,
        description="Private subnets of the build and system nodes. Default: `privateSubnetIds` "
        "(create); required for `existing`, whose cluster subnets often include public ones.",
    )
    system_instance_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SYSTEM_INSTANCE_TYPES),
        description="`create` only: on-demand instance types of the system node group "
        "(add-ons, cluster-autoscaler, runner managers).",
    )
    system_node_count: int = Field(
        DEFAULT_SYSTEM_NODE_COUNT,
        ge=1,
        le=10,
        description="`create` only: size of the system node group.",
    )
    node_cni_policy: bool = Field(
        True,
        description="`existing` only: give build node roles `AmazonEKS_CNI_Policy`, which the "
        "VPC CNI needs when it has no role of its own, and which lets whoever holds the node's "
        "credentials (a `dind` job) modify and delete any network interface in the account. "
        "Set false once the cluster's vpc-cni add-on has its own IRSA or Pod Identity role. "
        "A created cluster's CNI always has its own role.",
    )
    create_oidc_provider: bool = Field(
        False,
        description="`existing` only: create the cluster's IAM OIDC provider instead of looking "
        "it up (once per cluster and account).",
    )
    admin_principal_arns: list[str] = Field(
        default_factory=list,
        description="`create` only: IAM roles or users (besides the creator) that get cluster "
        "admin through EKS access entries, e.g. the CI deploy role and an SSO admin role.",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _EKS_CLUSTER_NAME.match(name):
            raise ValueError(
                "must be an EKS cluster name: 1-100 letters, digits, '-' and '_', starting "
                f"with a letter or digit, got {name!r}"
            )
        return name

    @field_validator("service_cidr")
    @classmethod
    def _valid_service_cidr(cls, cidr: str) -> str:
        if problems := service_cidr_problems(cidr):
            raise ValueError("; ".join(problems))
        return cidr

    @field_validator("version")
    @classmethod
    def _supported_version(cls, version: str | None) -> str | None:
        if version is not None and version not in SUPPORTED_KUBERNETES_VERSIONS:
            raise ValueError(
                f"must be one of {', '.join(SUPPORTED_KUBERNETES_VERSIONS)} (a Kubernetes "
                f"minor with a pinned cluster-autoscaler image), got {version!r}"
            )
        return version

    @field_validator("system_instance_types")
    @classmethod
    def _some_system_types(cls, instance_types: list[str]) -> list[str]:
        if problems := instance_types_problems(instance_types):
            raise ValueError("; ".join(problems))
        return instance_types

    @field_validator("admin_principal_arns")
    @classmethod
    def _valid_principals(cls, arns: list[str]) -> list[str]:
        for arn in arns:
            if problems := iam_principal_arn_problems(arn):
                raise ValueError("; ".join(problems))
        if duplicates := sorted({arn for arn in arns if arns.count(arn) > 1}):
            raise ValueError(f"must not repeat principals, repeated: {', '.join(duplicates)}")
        return arns

    def cross_field_problems(self) -> list[Problem]:
        only_for = {
            "vpc_id": ("create",),
            "service_cidr": ("create",),
            "node_cni_policy": ("existing",),
            "private_subnet_ids": ("create",),
            "public_subnet_ids": ("create",),
            "system_instance_types": ("create",),
            "system_node_count": ("create",),
            "admin_principal_arns": ("create",),
            "create_oidc_provider": ("existing",),
            "node_subnet_ids": EKS_MODES,
            "version": EKS_MODES,
        }
        problems = [
            self._problem(key, f"is only used when cluster.mode is {' or '.join(modes)}; remove it")
            for key, modes in only_for.items()
            if key in self.model_fields_set and self.mode not in modes
        ]
        if self.mode in EKS_MODES and self.version is None:
            problems.append(
                self._problem("version", f"required when cluster.mode is {self.mode}, e.g. '1.34'")
            )
        if self.mode == "existing" and not self.node_subnet_ids:
            problems.append(
                self._problem(
                    "node_subnet_ids",
                    "required when cluster.mode is existing: list the private subnets the build "
                    "nodes go to. An existing cluster's own subnets often include public ones, "
                    "where EKS refuses the node group or gives privileged CI nodes public IPs",
                )
            )
        if self.mode != "create":
            return problems
        if self.vpc_id is None:
            problems.append(self._problem("vpc_id", "required when cluster.mode is create"))
        if len(self.private_subnet_ids) < 2:
            problems.append(
                self._problem(
                    "private_subnet_ids",
                    "needs at least two private subnets in different availability zones "
                    f"when cluster.mode is create, got {self.private_subnet_ids}",
                )
            )
        return problems

    @property
    def default_node_subnet_ids(self) -> list[str]:
        """Explicit node subnets, else the private subnets of a created cluster."""
        return self.node_subnet_ids or self.private_subnet_ids

    @property
    def on_eks(self) -> bool:
        """Whether the cluster is EKS, so AWS build capacity and IRSA are managed."""
        return self.mode in EKS_MODES
