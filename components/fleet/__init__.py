"""The whole fleet as one component: RunnerFleet wires every other component from one validated
settings model. The decisions it follows have homes of their own: `network` (cluster lookups,
the S3 endpoint default, the mirror's address), `pools` (each pool's components), `sites` (the
hub/edge contract) and, in the settings package, `cache_plan` (the stack's cache)."""

from .outputs import stack_outputs
from .runner_fleet import FleetCluster, RunnerFleet, RunnerFleetArgs

__all__ = ["FleetCluster", "RunnerFleet", "RunnerFleetArgs", "stack_outputs"]
