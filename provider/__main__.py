"""Serves the components to every Pulumi language as the `gitlab-runner-fleet` package."""

import sys
from pathlib import Path

from pulumi.provider.experimental import component_provider_host

# The plugin runs from a clone of the repository, where the components live in components/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.aws.cache_access import CacheAccess
from components.aws.cache_bucket import CacheBucket
from components.aws.cluster import EksCluster
from components.aws.cluster_autoscaler import ClusterAutoscaler
from components.aws.irsa_role import IrsaRole
from components.aws.node_role import NodeRole
from components.aws.s3_gateway_endpoint import S3GatewayEndpoint
from components.aws.spot_node_group import SpotNodeGroup
from components.workloads.gitlab_runner import GitlabRunner

PACKAGE_NAME = "gitlab-runner-fleet"
COMPONENTS = [
    EksCluster,
    SpotNodeGroup,
    NodeRole,
    ClusterAutoscaler,
    S3GatewayEndpoint,
    CacheBucket,
    CacheAccess,
    IrsaRole,
    GitlabRunner,
]

if __name__ == "__main__":
    component_provider_host(COMPONENTS, name=PACKAGE_NAME)
