"""Serves the components to every Pulumi language as the `gitlab-runner-fleet` package.

All but RunnerFleet: it takes the validated settings model (pydantic sections with
cross-field rules, secrets that may be the caller's Outputs), which the schema inferred from
type annotations cannot express (TypedDicts of plain types, no unions besides Optional, no
classes with validators). Other languages compose the fleet from these parts, as RunnerFleet
does in Python.
"""

import sys
from pathlib import Path

from pulumi.provider.experimental import component_provider_host

# The plugin runs from a clone of the repository, where the components live in components/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.aws.cache_access import CacheAccess
from components.aws.cache_bucket import CacheBucket
from components.aws.cluster import EksCluster
from components.aws.cluster_autoscaler import ClusterAutoscaler
from components.aws.edge_access import EdgeAccess
from components.aws.irsa_role import IrsaRole
from components.aws.karpenter import Karpenter
from components.aws.karpenter_node_role import KarpenterNodeRole
from components.aws.karpenter_pool import KarpenterPool
from components.aws.mirror_access import RegistryMirrorAccess
from components.aws.node_role import NodeRole
from components.aws.s3_gateway_endpoint import S3GatewayEndpoint
from components.aws.spot_node_group import SpotNodeGroup
from components.gitlab.runner_registration import RunnerRegistration
from components.workloads.edge_cache import EdgeCache
from components.workloads.gitlab_runner import GitlabRunner
from components.workloads.job_namespaces import JobNamespaces
from components.workloads.monitoring import FleetMonitoring
from components.workloads.registry_mirror import RegistryMirror
from components.workloads.runner_shared import RunnerShared

PACKAGE_NAME = "gitlab-runner-fleet"
COMPONENTS = [
    EksCluster,
    SpotNodeGroup,
    NodeRole,
    ClusterAutoscaler,
    Karpenter,
    KarpenterNodeRole,
    KarpenterPool,
    S3GatewayEndpoint,
    CacheBucket,
    CacheAccess,
    IrsaRole,
    RegistryMirrorAccess,
    EdgeAccess,
    RunnerRegistration,
    RunnerShared,
    GitlabRunner,
    JobNamespaces,
    RegistryMirror,
    EdgeCache,
    FleetMonitoring,
]

if __name__ == "__main__":
    component_provider_host(COMPONENTS, name=PACKAGE_NAME)
