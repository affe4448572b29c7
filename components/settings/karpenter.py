"""`karpenter`: what every Karpenter pool of a stack shares (the controller, AMI, network)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field, field_validator

from ..kubernetes_names import label_key_problems
from ..naming import TagArgs
from ..versions import KARPENTER_AMI_ALIAS, KARPENTER_VERSION
from .base import Problem, Section

_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_AL2023_ALIAS = re.compile(r"^al2023@(v\d{8}|latest)$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")


def _ids(pattern: re.Pattern[str], example: str) -> Any:
    def check(ids: list[str]) -> list[str]:
        if bad := [value for value in ids if not pattern.match(value)]:
            raise ValueError(f"must be IDs such as {example}, got {bad}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"must not repeat an ID, got {ids}")
        return ids

    return check


class KarpenterSettings(Section):
    """Karpenter for the stack's `scaler: karpenter` pools: installed where the stack creates the
    cluster, the cluster's own where it exists already."""

    config_key: ClassVar[str] = "karpenter"

    preinstalled: bool = Field(
        False,
        description="`existing` clusters: the cluster already runs Karpenter (1.x, v1 API), so "
        "the stack declares only its NodePools, EC2NodeClasses and the node role's access "
        "entry, never a second Karpenter. Its controller must be allowed to pass the node role "
        "(the `karpenterNodeRoleArn` output, or a pool's `nodeRoleArn`). A created cluster gets "
        f"Karpenter {KARPENTER_VERSION} from the stack.",
    )
    ami_alias: str = Field(
        KARPENTER_AMI_ALIAS,
        description="EKS-optimized AL2023 AMI release of the Karpenter pools' nodes, "
        "`al2023@v<YYYYMMDD>` (an amazon-eks-ami release). Changing it replaces the nodes one "
        "at a time as their jobs finish (docs/karpenter.md#amis-and-upgrades); `al2023@latest` "
        "would do so at every AMI release.",
    )
    ami_ids: list[str] = Field(
        default_factory=list,
        description="AL2023 AMI IDs (e.g. your own builds, one per architecture) instead of "
        "`amiAlias`.",
    )
    subnet_ids: list[str] = Field(
        default_factory=list,
        description="Subnets of the Karpenter nodes. Default `cluster.nodeSubnetIds` (or the "
        "created cluster's private subnets).",
    )
    security_group_ids: list[str] = Field(
        default_factory=list,
        description="Security groups of the Karpenter nodes. Default the cluster security group "
        "EKS created (looked up), the one managed node groups get.",
    )
    discovery_tag: str | None = Field(
        None,
        description="Select subnets and security groups tagged `<this key>: <cluster name>` "
        "(Karpenter's convention is `karpenter.sh/discovery`) instead of by ID.",
    )

    _valid_ami_ids = field_validator("ami_ids")(_ids(_AMI_ID, "ami-0123456789abcdef0"))
    _valid_subnet_ids = field_validator("subnet_ids")(_ids(_SUBNET_ID, "subnet-0123456789abcdef0"))
    _valid_security_group_ids = field_validator("security_group_ids")(
        _ids(_SECURITY_GROUP_ID, "sg-0123456789abcdef0")
    )

    @field_validator("ami_alias")
    @classmethod
    def _al2023_alias(cls, alias: str) -> str:
        # The nodes' user data is AL2023's (nodeadm MIME parts); AL2 aliases are refused on
        # Kubernetes 1.33+ (pkg/providers/amifamily/ami.go).
        if not _AL2023_ALIAS.match(alias):
            raise ValueError(
                "must be al2023@v<YYYYMMDD>, an amazon-eks-ami release such as "
                f"{KARPENTER_AMI_ALIAS}, got {alias!r}"
            )
        return alias

    @field_validator("discovery_tag")
    @classmethod
    def _valid_tag_key(cls, key: str | None) -> str | None:
        if key is not None and (problems := label_key_problems(key)):
            raise ValueError("; ".join(problems))
        return key

    def cross_field_problems(self) -> list[Problem]:
        problems = []
        if self.ami_ids and "ami_alias" in self.model_fields_set:
            problems.append(self._problem("ami_alias", "leave it out with amiIds: one AMI choice"))
        if self.discovery_tag and (self.subnet_ids or self.security_group_ids):
            problems.append(
                self._problem(
                    "discovery_tag",
                    "selects subnets and security groups by tag; remove subnetIds and "
                    "securityGroupIds, or this",
                )
            )
        return problems

    @property
    def pins_latest(self) -> bool:
        """Whether the nodes follow every new AMI release (each one drifts every node)."""
        return not self.ami_ids and self.ami_alias.endswith("@latest")

    def discovery(self, cluster_name: str) -> TagArgs | None:
        """The tag subnets and security groups are selected by, or None (by ID)."""
        return {"key": self.discovery_tag, "value": cluster_name} if self.discovery_tag else None
