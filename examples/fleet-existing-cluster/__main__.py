"""A whole GitLab Runner fleet in an existing EKS cluster, declared from another infra repo.

The fleet's settings are written here, in code, with the same keys as gitlab-runner-fleet's
stack files (see its README, "Configuration reference"); the runner token is this program's own
secret config value and stays a secret.

    pulumi config set aws:region eu-west-1
    pulumi config set clusterName platform-prod
    pulumi config set --path 'nodeSubnetIds[0]' subnet-0aaaaaaaaaaaaaaa1
    pulumi config set --secret runnerToken glrt-...
"""

import pulumi
from gitlab_runner_fleet.fleet import RunnerFleet, stack_outputs
from gitlab_runner_fleet.settings import fleet_settings

config = pulumi.Config()

settings = fleet_settings(
    {
        "cluster": {
            "mode": "existing",
            "name": config.require("clusterName"),
            "version": "1.34",
            "nodeSubnetIds": config.require_object("nodeSubnetIds"),
        },
        "pools": [
            {
                "name": "default",
                "maxSize": 20,
                "tags": ["docker", "linux"],
                "runUntagged": True,
                "concurrent": 20,
            }
        ],
        "runner": {"gitlabUrl": "https://gitlab.example.com/"},
        "cache": {"expirationDays": 14},
        # The platform team runs cluster-autoscaler for the whole cluster already.
        "clusterAutoscaler": {"enabled": False},
    },
    secrets={"runnerTokens": {"default": config.require_secret("runnerToken")}},
)
fleet = RunnerFleet("ci", {"settings": settings})

for name, value in stack_outputs(fleet, [pool.name for pool in settings.pools]).items():
    pulumi.export(name, value)
