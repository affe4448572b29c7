"""RunnerRegistration: a pool's runner created in GitLab, its token a Pulumi secret."""

from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_gitlab as gitlab
import pulumiverse_time
from pydantic.alias_generators import to_snake

from ..arguments import check_arguments
from .runner_spec import (
    DEFAULT_ACCESS_LEVEL,
    DEFAULT_LOCKED,
    DEFAULT_MAXIMUM_TIMEOUT,
    default_description,
    gitlab_api_url,
    maintenance_note,
    registration_problems,
    runner_tag_list,
)


def gitlab_provider(
    name: str,
    gitlab_url: str,
    api_token: pulumi.Input[str],
    opts: Optional[pulumi.ResourceOptions] = None,
) -> gitlab.Provider:
    """The GitLab provider RunnerRegistration takes in `opts.providers`.

    `gitlab_url` is the instance (or API) URL; `api_token` an access token with the
    `create_runner`, `manage_runner` and `read_user` scopes (see docs/runner-registration.md),
    kept secret here whatever the caller passes.
    """
    return gitlab.Provider(
        name,
        base_url=gitlab_api_url(gitlab_url),
        token=pulumi.Output.secret(api_token),
        opts=opts,
    )


class RunnerRegistrationArgs(TypedDict):
    """Inputs of RunnerRegistration."""

    pool_name: str
    """The pool this runner serves; named in its description and maintenance note."""
    runner_type: str
    """`instance_type` (administrators only), `group_type` or `project_type`."""
    tags: list[str]
    """GitLab tags of the jobs this runner takes (the pool's tags)."""
    group_id: NotRequired[Optional[int]]
    """The group a `group_type` runner serves; unset otherwise."""
    project_id: NotRequired[Optional[int]]
    """The project a `project_type` runner serves; unset otherwise."""
    run_untagged: NotRequired[bool]
    """Also take jobs without tags. Default false."""
    locked: NotRequired[bool]
    """Keep a project runner to its project. Default true; ignored for other types."""
    access_level: NotRequired[str]
    """`not_protected` (default) or `ref_protected` (protected branches and tags only)."""
    maximum_timeout: NotRequired[int]
    """Longest job in seconds, at least 600. Default 3600, the manager's grace period."""
    description: NotRequired[str]
    """Shown in GitLab's runner list. Default `gitlab-runner-fleet <pool_name>`."""
    rotate_token_days: NotRequired[int]
    """Replace the runner, and so its token, on the first refreshing update (`pulumi up
    --refresh`) this many days after the last replacement or after rotation was switched on
    (create before delete). Unset: kept."""


class RunnerRegistration(pulumi.ComponentResource):
    """One pool's runner, created in GitLab through its API, so no token is copied by hand.

    The runner's `glrt-` token comes back as a secret output to hand to the pool's GitlabRunner
    (its Kubernetes Secret). With `rotate_token_days`, a `pulumiverse_time.Rotating` clock
    replaces the runner when due, which a refresh detects: the new runner is created first, the
    manager rolls onto its token, and the old runner is deleted at the end of the update. Pass
    the GitLab provider (see `gitlab_provider`) in `opts.providers`.
    """

    runner_id: pulumi.Output[str]
    """GitLab's ID of the runner."""
    token: pulumi.Output[str]
    """The runner authentication token (`glrt-...`); secret."""

    def __init__(
        self,
        name: str,
        args: RunnerRegistrationArgs,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        rotate_token_days = args.get("rotate_token_days")
        access_level = args.get("access_level", DEFAULT_ACCESS_LEVEL)
        maximum_timeout = args.get("maximum_timeout", DEFAULT_MAXIMUM_TIMEOUT)
        check_arguments(
            "RunnerRegistration",
            name,
            args,
            RunnerRegistrationArgs,
            lambda: [
                f"{to_snake(key)}: {message}"
                for key, message in registration_problems(
                    runner_type=args["runner_type"],
                    group_id=args.get("group_id"),
                    project_id=args.get("project_id"),
                    tags=args["tags"],
                    run_untagged=args.get("run_untagged", False),
                    access_level=access_level,
                    maximum_timeout=maximum_timeout,
                    rotate_token_days=rotate_token_days,
                )
            ],
        )
        super().__init__("gitlab-runner-fleet:index:RunnerRegistration", name, None, opts)

        rotation = self._create_rotation(name, rotate_token_days) if rotate_token_days else None
        runner = gitlab.UserRunner(
            name,
            runner_type=args["runner_type"],
            group_id=args.get("group_id"),
            project_id=args.get("project_id"),
            tag_lists=runner_tag_list(args["tags"]),
            untagged=args.get("run_untagged", False),
            locked=args.get("locked", DEFAULT_LOCKED),
            access_level=access_level,
            maximum_timeout=maximum_timeout,
            description=args.get("description", default_description(args["pool_name"])),
            maintenance_note=maintenance_note(args["pool_name"], rotate_token_days),
            paused=False,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Pulumi's default for replacements, pinned so no provider can turn it around:
                # the new runner exists and the manager runs with it before the old one is
                # deleted, at the end of the update.
                delete_before_replace=False,
                # time_rotating's ID is its base timestamp: a new clock means a new runner. A
                # refresh past the due time drops the clock, so the update creates it anew (a
                # creation, which `replace_with` would miss).
                replacement_trigger=rotation.id if rotation else None,
            ),
        )
        self.runner_id = runner.id
        self.token = pulumi.Output.secret(runner.token.apply(_issued_token))
        self.register_outputs({"runner_id": self.runner_id, "token": self.token})

    def _create_rotation(self, name: str, days: int) -> pulumiverse_time.Rotating:
        return pulumiverse_time.Rotating(
            f"{name}-token-rotation",
            rotation_days=days,
            opts=pulumi.ResourceOptions(parent=self),
        )


def _issued_token(token: Optional[str]) -> str:
    if not token:
        # pulumi-gitlab cannot import a runner's token; an empty Secret would only show up as
        # a manager that never registers.
        raise ValueError(
            "GitLab returned no runner token (an imported runner has none): replace the runner "
            "with `pulumi up --replace <its URN>`"
        )
    return token
