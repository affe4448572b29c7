"""gitlab-runner-fleet: one stack of the fleet.

The stack's config (stacks/Pulumi.<stack>.yaml) becomes one validated settings model; the
RunnerFleet component declares everything from it; the stack exports its outputs. Every
decision lives in components/ (see docs/architecture.md).
"""

import pulumi

from components.fleet import RunnerFleet, stack_outputs
from components.settings import load_settings

settings = load_settings()
fleet = RunnerFleet("fleet", {"settings": settings})
for name, value in stack_outputs(fleet, [pool.name for pool in settings.pools]).items():
    pulumi.export(name, value)
