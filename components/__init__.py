"""gitlab-runner-fleet: Pulumi components for a production GitLab Runner fleet.

Installed with pip this package is `gitlab_runner_fleet`; in this repository it is `components`.
Every component module holds one ComponentResource and its `...Args` TypedDict.
"""
