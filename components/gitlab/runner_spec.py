"""What a pool's runner looks like to GitLab, and the rules GitLab and the providers apply to it.

Pure: no Pulumi runtime needed. Keys in problems are the camelCase names of the settings
and component arguments, so a caller can prefix them with its own path (`gitlab.`, `pools[0].`).
"""

from collections.abc import Sequence
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from ..conventions import DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS

RUNNER_TYPES = ("instance_type", "group_type", "project_type")
"""Scopes `POST /user/runners` accepts (pulumi-gitlab `UserRunner.runner_type`)."""
ACCESS_LEVELS = ("not_protected", "ref_protected")
"""`ref_protected` runners take jobs of protected branches and tags only."""
MINIMUM_MAXIMUM_TIMEOUT = 600
"""GitLab refuses a runner maximum timeout under 10 minutes (app/models/ci/runner.rb)."""
DEFAULT_MAXIMUM_TIMEOUT = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
"""No job outlives the manager's grace period, so a rollout (a token rotation too) cuts none."""
DEFAULT_ACCESS_LEVEL = "not_protected"
DEFAULT_LOCKED = True
"""A project runner stays with its project; GitLab ignores `locked` for other runner types."""
MINIMUM_ROTATION_DAYS = 1
"""time_rotating refuses `rotation_days` under 1 (terraform-provider-time)."""
MAINTENANCE_NOTE_LIMIT = 1024
"""GitLab keeps at most 1024 characters of a runner's maintenance note."""
_API_PATH = "/api/v4"

Problem = tuple[str, str]
"""(camelCase key, what is wrong and how to fix it)."""


def gitlab_api_url(gitlab_url: str) -> str:
    """The endpoint pulumi-gitlab's provider `base_url` documents: `<instance>/api/v4/`.

    Accepts the instance URL (as the runner chart's `gitlabUrl` takes it) or the API URL, with
    or without a trailing slash, on a host or under a path (`https://example.com/gitlab`).
    """
    parts = urlsplit(gitlab_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"GitLab URL must be an http(s) URL with a host, got {gitlab_url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(_API_PATH):
        path += _API_PATH
    return urlunsplit((parts.scheme, parts.netloc, f"{path}/", "", ""))


def runner_tag_list(tags: Sequence[str]) -> list[str]:
    """The tags as GitLab keeps them, a set: sorted without repeats, so order never shows a diff."""
    return sorted(set(tags))


def default_description(pool_name: str) -> str:
    """What GitLab's runner list shows for a pool's runner unless the caller names it."""
    return f"gitlab-runner-fleet {pool_name}"


def maintenance_note(pool_name: str, rotate_token_days: Optional[int]) -> str:
    """A note for whoever finds the runner in GitLab: where it comes from and why it changes."""
    note = (
        f"Created by gitlab-runner-fleet (Pulumi) for pool '{pool_name}'. "
        "Change it in the stack settings, not here: the next update may replace it."
    )
    if rotate_token_days:
        note += (
            f" Replaced by a new runner every {rotate_token_days} days to rotate its token; "
            "the old one is deleted once the manager runs with the new one."
        )
    return note[:MAINTENANCE_NOTE_LIMIT]


def registration_problems(
    *,
    runner_type: str,
    group_id: Optional[int],
    project_id: Optional[int],
    tags: Sequence[str],
    run_untagged: bool,
    access_level: str,
    maximum_timeout: int,
    rotate_token_days: Optional[int],
    termination_grace_period_seconds: Optional[int] = None,
) -> list[Problem]:
    """Every reason GitLab would refuse, or the fleet would mishandle, this runner (empty if none).

    With `termination_grace_period_seconds` (the manager pod's), a maximum timeout beyond it
    is refused too: a rollout would kill the longer jobs.
    """
    problems = _scope_problems(runner_type, group_id, project_id)
    problems += _tag_problems(tags, run_untagged)
    if access_level not in ACCESS_LEVELS:
        problems.append(
            ("accessLevel", f"must be one of {', '.join(ACCESS_LEVELS)}, got {access_level!r}")
        )
    if maximum_timeout < MINIMUM_MAXIMUM_TIMEOUT:
        problems.append(
            (
                "maximumTimeout",
                f"must be at least {MINIMUM_MAXIMUM_TIMEOUT} seconds (GitLab's minimum), "
                f"got {maximum_timeout}",
            )
        )
    elif termination_grace_period_seconds and maximum_timeout > termination_grace_period_seconds:
        problems.append(
            (
                "maximumTimeout",
                f"must not exceed the manager's terminationGracePeriodSeconds "
                f"({termination_grace_period_seconds}): longer jobs are killed whenever the "
                f"manager rolls, and every token rotation rolls it; got {maximum_timeout}",
            )
        )
    if rotate_token_days is not None and rotate_token_days < MINIMUM_ROTATION_DAYS:
        problems.append(
            (
                "rotateTokenDays",
                f"must be at least {MINIMUM_ROTATION_DAYS} day, or unset to keep the token; "
                f"got {rotate_token_days}",
            )
        )
    return problems


def _scope_problems(
    runner_type: str, group_id: Optional[int], project_id: Optional[int]
) -> list[Problem]:
    if runner_type not in RUNNER_TYPES:
        return [("runnerType", f"must be one of {', '.join(RUNNER_TYPES)}, got {runner_type!r}")]
    wanted = {"group_type": "groupId", "project_type": "projectId"}.get(runner_type)
    problems: list[Problem] = []
    for key, value, what in (
        ("groupId", group_id, "group (its ID is on the group's overview page)"),
        ("projectId", project_id, "project (its ID is on the project's overview page)"),
    ):
        if key == wanted and value is None:
            problems.append((key, f"is required when runnerType is {runner_type}: the {what}"))
        elif key != wanted and value is not None:
            problems.append((key, f"must be unset when runnerType is {runner_type}"))
        elif value is not None and value < 1:
            problems.append((key, f"must be a positive GitLab ID, got {value}"))
    return problems


def _tag_problems(tags: Sequence[str], run_untagged: bool) -> list[Problem]:
    problems: list[Problem] = [
        (
            "tags",
            "each tag must be non-empty, without commas or surrounding spaces "
            f"(GitLab splits tag lists on commas), got {tag!r}",
        )
        for tag in tags
        if not tag or "," in tag or tag != tag.strip()
    ]
    if not tags and not run_untagged:
        problems.append(
            (
                "tags",
                "must list the tags this runner serves, or set runUntagged: true; GitLab refuses "
                "a runner with neither, since no job could ever reach it",
            )
        )
    return problems
