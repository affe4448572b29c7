"""`isolation`: the boundaries around job pods beyond what the runner config enforces."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator

from ..kubernetes_names import NamespaceName
from .base import Section

_POD_SECURITY_VERSION = re.compile(r"^(latest|v1\.\d+)$")


class IsolationSettings(Section):
    """NetworkPolicies and Pod Security for the job namespaces."""

    config_key: ClassVar[str] = "isolation"

    network_policies: bool = Field(
        True,
        description="NetworkPolicies: jobs reach neither the instance metadata service nor the "
        "managers, and nothing reaches the jobs. Needs a network-policy engine (VPC CNI with "
        "enableNetworkPolicy, Calico, Cilium); without one they are inert.",
    )
    metrics_scraper_namespaces: list[NamespaceName] | None = Field(
        None,
        description="Namespaces allowed to scrape the managers' metrics. Default: every "
        "namespace except the job namespaces.",
    )
    existing_namespaces: list[NamespaceName] = Field(
        default_factory=list,
        description="Job namespaces that already exist: labelled for Pod Security, not created.",
    )
    pod_security_version: str | None = Field(
        None,
        description="Pod Security policy version of the namespaces (`v1.34`, `latest`). "
        "Default: the cluster's minor (`cluster.version`), or `latest`.",
    )

    @field_validator("pod_security_version")
    @classmethod
    def _valid_version(cls, version: str | None) -> str | None:
        if version is not None and not _POD_SECURITY_VERSION.match(version):
            raise ValueError(
                f"must be 'latest' or a Kubernetes minor such as v1.34, got {version!r}"
            )
        return version
