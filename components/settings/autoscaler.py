"""`clusterAutoscaler`: the cluster-autoscaler release that scales the build pools."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ..aws.cluster_autoscaler import DEFAULT_EXPANDER, DEFAULT_SCALE_DOWN_UNNEEDED_TIME, Expander
from .base import GoDuration, Section


class ClusterAutoscalerSettings(Section):
    """The cluster-autoscaler release that scales the build nodes."""

    config_key: ClassVar[str] = "clusterAutoscaler"

    enabled: bool = Field(
        True, description="Install cluster-autoscaler; turn off when the cluster runs one."
    )
    expander: Expander = Field(
        DEFAULT_EXPANDER, description="How the autoscaler picks a node group to grow."
    )
    scale_down_unneeded_time: GoDuration = Field(
        DEFAULT_SCALE_DOWN_UNNEEDED_TIME,
        description="How long a node stays unneeded before it is removed (Go duration).",
    )
