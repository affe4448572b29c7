"""`gitlab`: runners created by code in GitLab, instead of tokens copied by hand."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..gitlab.runner_spec import (
    DEFAULT_ACCESS_LEVEL,
    DEFAULT_LOCKED,
    DEFAULT_MAXIMUM_TIMEOUT,
    MINIMUM_MAXIMUM_TIMEOUT,
    MINIMUM_ROTATION_DAYS,
)
from .base import Section

GITLAB_API_TOKEN_KEY = "gitlabApiToken"


class GitlabSettings(Section):
    """Whether this stack creates each pool's runner in GitLab (pulumi-gitlab `UserRunner`)."""

    config_key: ClassVar[str] = "gitlab"

    create_runners: bool = Field(
        False,
        description="Create each pool's runner in GitLab with its tags; its glrt- token flows "
        f"as a secret into the pool's Secret. Needs the secret `{GITLAB_API_TOKEN_KEY}` (scopes "
        "create_runner, manage_runner, read_user). Off: tokens come from `runnerTokens.<pool>`.",
    )
    runner_type: Literal["instance_type", "group_type", "project_type"] = Field(
        "group_type", description="Scope of the created runners."
    )
    group_id: int | None = Field(None, ge=1, description="`group_type`: the group's ID.")
    project_id: int | None = Field(None, ge=1, description="`project_type`: the project's ID.")
    locked: bool = Field(DEFAULT_LOCKED, description="`project_type`: lock to the project.")
    access_level: Literal["not_protected", "ref_protected"] = Field(
        DEFAULT_ACCESS_LEVEL,  # type: ignore[arg-type]
        description="`ref_protected`: the runners take jobs of protected branches and tags only.",
    )
    maximum_timeout: int = Field(
        DEFAULT_MAXIMUM_TIMEOUT,
        ge=MINIMUM_MAXIMUM_TIMEOUT,
        description="Longest job the runners accept, in seconds; at most the manager's "
        "`runner.terminationGracePeriodSeconds`.",
    )
    rotate_token_days: int | None = Field(
        None,
        ge=MINIMUM_ROTATION_DAYS,
        description="Replace each runner (and its token) after this many days, new before old. "
        "Needs refreshing updates (Pulumi.yaml refresh: always; `pulumi up --refresh` in CI).",
    )
