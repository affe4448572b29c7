"""RunnerRegistration: runner creation in GitLab, the token as a secret, and token rotation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.conventions import DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
from components.gitlab.runner_registration import (
    RunnerRegistration,
    RunnerRegistrationArgs,
    gitlab_provider,
)
from components.gitlab.runner_spec import (
    DEFAULT_MAXIMUM_TIMEOUT,
    MAINTENANCE_NOTE_LIMIT,
    gitlab_api_url,
    maintenance_note,
    registration_problems,
    runner_tag_list,
)
from offline import RecordingMonitor
from tests.harness import ProgramRun, Registered, run_program

USER_RUNNER = "gitlab:index/userRunner:UserRunner"
ROTATING = "time:index/rotating:Rotating"
API_TOKEN = "glpat-test-api-token"
GROUP_ARGS: RunnerRegistrationArgs = {
    "pool_name": "arm64",
    "runner_type": "group_type",
    "group_id": 4242,
    "tags": ["arm64", "docker", "arm64"],
}


# --- pure rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://gitlab.example.com",
        "https://gitlab.example.com/",
        "https://gitlab.example.com/api/v4",
        " https://gitlab.example.com/api/v4/ ",
    ],
)
def test_the_provider_gets_the_api_url_it_documents(url: str) -> None:
    # pulumi_gitlab/provider.py: base_url is the API endpoint, e.g. https://host/api/v4/,
    # and "must end with a slash".
    assert gitlab_api_url(url) == "https://gitlab.example.com/api/v4/"


def test_an_instance_under_a_path_keeps_its_path() -> None:
    assert gitlab_api_url("https://example.com/gitlab/") == "https://example.com/gitlab/api/v4/"


@pytest.mark.parametrize("url", ["gitlab.example.com", "ftp://gitlab.example.com", "https://"])
def test_a_url_without_scheme_or_host_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="http\\(s\\) URL with a host"):
        gitlab_api_url(url)


def test_tags_are_a_set_so_their_order_never_shows_as_a_change() -> None:
    # terraform-provider-gitlab docs/resources/user_runner.md: `tag_list` is a "Set of String".
    assert runner_tag_list(["docker", "arm64", "docker"]) == ["arm64", "docker"]


def test_the_maintenance_note_fits_gitlabs_limit_and_explains_rotation() -> None:
    assert "every 30 days" in maintenance_note("default", 30)
    assert "every" not in maintenance_note("default", None)
    assert len(maintenance_note("p" * 2000, 30)) == MAINTENANCE_NOTE_LIMIT


def test_no_job_outlives_the_managers_grace_period_by_default() -> None:
    assert DEFAULT_MAXIMUM_TIMEOUT == DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS == 3600


VALID: dict[str, Any] = {
    "runner_type": "group_type",
    "group_id": 7,
    "project_id": None,
    "tags": ["docker"],
    "run_untagged": False,
    "access_level": "not_protected",
    "maximum_timeout": 3600,
    "rotate_token_days": 30,
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"runner_type": "instance_type", "group_id": None},
        {"runner_type": "project_type", "group_id": None, "project_id": 9},
        {"tags": [], "run_untagged": True},
        {"access_level": "ref_protected", "maximum_timeout": 600, "rotate_token_days": None},
    ],
)
def test_valid_registrations_have_no_problems(changes: dict[str, Any]) -> None:
    assert registration_problems(**{**VALID, **changes}) == []


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        (
            {"runner_type": "shared"},
            "runnerType",
            "must be one of instance_type, group_type, project_type, got 'shared'",
        ),
        ({"group_id": None}, "groupId", "is required when runnerType is group_type"),
        ({"project_id": 3}, "projectId", "must be unset when runnerType is group_type"),
        (
            {"runner_type": "project_type", "group_id": None},
            "projectId",
            "is required when runnerType is project_type",
        ),
        (
            {"runner_type": "project_type", "project_id": 3},
            "groupId",
            "must be unset when runnerType is project_type",
        ),
        (
            {"runner_type": "instance_type"},
            "groupId",
            "must be unset when runnerType is instance_type",
        ),
        ({"group_id": 0}, "groupId", "must be a positive GitLab ID, got 0"),
        # app/models/ci/runner.rb (gitlabhq): tag_constraints refuses no tags without run_untagged.
        ({"tags": []}, "tags", "must list the tags this runner serves, or set runUntagged: true"),
        ({"tags": ["a,b"]}, "tags", "without commas"),
        ({"tags": [" docker"]}, "tags", "surrounding spaces"),
        ({"tags": [""]}, "tags", "must be non-empty"),
        (
            {"access_level": "protected"},
            "accessLevel",
            "must be one of not_protected, ref_protected",
        ),
        # app/models/ci/runner.rb (gitlabhq): maximum_timeout >= 600, "at least 10 minutes".
        ({"maximum_timeout": 599}, "maximumTimeout", "must be at least 600 seconds"),
        # terraform-provider-time resource_time_rotating.go: rotation_days AtLeast(1).
        ({"rotate_token_days": 0}, "rotateTokenDays", "must be at least 1 day"),
    ],
)
def test_invalid_registrations_name_the_key_and_the_fix(
    changes: dict[str, Any], key: str, message: str
) -> None:
    problems = registration_problems(**{**VALID, **changes})
    assert [k for k, _ in problems] == [key]
    assert message in problems[0][1]


def test_a_timeout_beyond_the_grace_period_is_refused_when_the_period_is_known() -> None:
    settings = {**VALID, "maximum_timeout": 7200}
    assert registration_problems(**settings) == []
    ((key, message),) = registration_problems(**settings, termination_grace_period_seconds=3600)
    assert key == "maximumTimeout"
    assert "terminationGracePeriodSeconds (3600)" in message


# --- the component under mocks -------------------------------------------------------------


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The raw registration requests: resource options the harness does not record."""
    captured: list[Any] = []
    record = RecordingMonitor.RegisterResource

    def capture(self: RecordingMonitor, request: Any) -> Any:
        captured.append(request)
        return record(self, request)

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", capture)
    return captured


def declare(**overrides: Any) -> ProgramRun:
    args: RunnerRegistrationArgs = {**GROUP_ARGS, **overrides}  # type: ignore[typeddict-item]

    def program() -> None:
        provider = gitlab_provider("gitlab", "https://gitlab.example.com", API_TOKEN)
        registration = RunnerRegistration(
            "arm64-runner", args, opts=pulumi.ResourceOptions(providers=[provider])
        )
        pulumi.export("token", registration.token)
        pulumi.export("runnerId", registration.runner_id)

    return run_program(program)


def request_for(requests: list[Any], resource: Registered) -> Any:
    return next(r for r in requests if r.type == resource.type and r.name == resource.name)


def plain_strings(value: Any) -> Iterator[str]:
    """Every string in a deserialized property value that is not inside a secret."""
    if is_rpc_secret(value):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from plain_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from plain_strings(item)


def assert_nowhere_in_plain_text(run: ProgramRun, secret: str) -> None:
    for resource in run.resources:
        leaks = [text for text in plain_strings(resource.inputs) if secret in text]
        assert not leaks, f"{resource.type} {resource.name} has it in plain text"
    for urn, outputs in run.component_outputs.items():
        assert not [text for text in plain_strings(outputs) if secret in text], urn


def test_the_runner_is_created_with_the_pools_settings() -> None:
    run = declare()
    runner = run.one(USER_RUNNER)
    assert runner.inputs["runnerType"] == "group_type"
    assert runner.inputs["groupId"] == 4242
    assert "projectId" not in runner.inputs
    assert runner.inputs["tagLists"] == ["arm64", "docker"]
    assert runner.inputs["untagged"] is False
    assert runner.inputs["locked"] is True
    assert runner.inputs["accessLevel"] == "not_protected"
    assert runner.inputs["maximumTimeout"] == 3600
    assert runner.inputs["paused"] is False
    assert runner.inputs["description"] == "gitlab-runner-fleet arm64"
    assert runner.inputs["maintenanceNote"] == maintenance_note("arm64", None)
    assert run.outputs["runnerId"] == "arm64-runner-id"


def test_explicit_settings_reach_the_runner() -> None:
    run = declare(
        runner_type="project_type",
        group_id=None,
        project_id=99,
        tags=[],
        run_untagged=True,
        locked=False,
        access_level="ref_protected",
        maximum_timeout=1800,
        description="ARM builds",
    )
    inputs = run.one(USER_RUNNER).inputs
    assert (inputs["runnerType"], inputs["projectId"]) == ("project_type", 99)
    assert "groupId" not in inputs
    assert inputs["tagLists"] == []
    assert inputs["untagged"] is True
    assert inputs["locked"] is False
    assert inputs["accessLevel"] == "ref_protected"
    assert inputs["maximumTimeout"] == 1800
    assert inputs["description"] == "ARM builds"


def test_the_runner_goes_through_the_callers_gitlab_provider() -> None:
    run = declare()
    provider = run.one("pulumi:providers:gitlab")
    # pulumi_gitlab/provider.py: base_url is the API endpoint and ends with a slash.
    assert provider.inputs["baseUrl"] == "https://gitlab.example.com/api/v4/"
    assert is_rpc_secret(provider.inputs["token"])
    assert unwrap_rpc_secret(provider.inputs["token"]) == API_TOKEN
    runner = run.one(USER_RUNNER)
    assert runner.provider.startswith(f"{provider.urn}::")
    assert_nowhere_in_plain_text(run, API_TOKEN)


def test_the_token_is_a_secret_output_and_never_plain_text() -> None:
    run = declare(rotate_token_days=30)
    runner = run.one(USER_RUNNER)
    token = runner.state["token"]
    assert token.startswith("glrt-")
    assert run.outputs["token"] == token
    assert "token" in run.secret_outputs
    registration = run.one("gitlab-runner-fleet:index:RunnerRegistration")
    registered = run.component_outputs[registration.urn]
    assert is_rpc_secret(registered["token"])
    assert unwrap_rpc_secret(registered["token"]) == token
    assert_nowhere_in_plain_text(run, token)


def test_replacement_creates_the_new_runner_before_deleting_the_old(requests: list[Any]) -> None:
    run = declare(rotate_token_days=30)
    request = request_for(requests, run.one(USER_RUNNER))
    # pulumi pkg/resource/deploy/step_generator.go: an explicit deleteBeforeReplace overrides
    # the provider; false means create, update dependents, and delete the old one last.
    assert request.deleteBeforeReplaceDefined
    assert not request.deleteBeforeReplace


def test_a_new_rotation_clock_replaces_the_runner(requests: list[Any]) -> None:
    run = declare(rotate_token_days=30)
    rotation = run.one(ROTATING)
    assert rotation.inputs == {"rotationDays": 30}
    runner = run.one(USER_RUNNER)
    assert run.descends_from(rotation, run.one("gitlab-runner-fleet:index:RunnerRegistration"))
    request = request_for(requests, runner)
    # pulumi step_generator.go shouldTriggerReplace: a trigger unlike the recorded one replaces
    # the resource. time_rotating's ID is its base timestamp; once due, a refresh drops it from
    # the state (resource_time_rotating.go Read) and the update creates it with a new one.
    assert request.HasField("replacement_trigger")
    assert request.replacement_trigger.string_value == rotation.state["rfc3339"]
    assert rotation.state["rfc3339"] == "2026-11-23T08:00:00Z"
    assert "every 30 days" in runner.inputs["maintenanceNote"]


def test_without_rotation_the_runner_is_kept(requests: list[Any]) -> None:
    run = declare()
    assert run.of_type(ROTATING) == []
    # step_generator.go shouldTriggerReplace: no trigger ("null") never replaces.
    assert not request_for(requests, run.one(USER_RUNNER)).HasField("replacement_trigger")


def test_every_child_is_parented_to_the_component() -> None:
    run = declare(rotate_token_days=7)
    registration = run.one("gitlab-runner-fleet:index:RunnerRegistration")
    for child in (run.one(USER_RUNNER), run.one(ROTATING)):
        assert child.parent == registration.urn


def test_invalid_arguments_fail_before_anything_is_created() -> None:
    run = run_program(
        lambda: RunnerRegistration("bad", {**GROUP_ARGS, "group_id": None, "tags": []}),
        return_error=True,
    )
    assert isinstance(run.error, ValueError)
    assert "group_id: is required when runnerType is group_type" in str(run.error)
    assert "tags: must list the tags" in str(run.error)
    assert run.resources == []


def test_other_languages_get_a_schema_for_the_component() -> None:
    analyzed = Analyzer("gitlab-runner-fleet").analyze([RunnerRegistration])
    (component,) = analyzed["component_definitions"].values()
    assert set(component.inputs) >= {"poolName", "runnerType", "tags", "rotateTokenDays"}
    assert set(component.outputs) == {"runnerId", "token"}


def test_whatever_consumes_the_token_follows_a_new_runner_and_stays_secret() -> None:
    """The pool's token Secret takes `token`: it must depend on the runner, so a replaced runner
    updates it (and the manager rolls) before the old runner is deleted, and hold it secret."""

    def program() -> None:
        registration = RunnerRegistration("arm64-runner", {**GROUP_ARGS, "rotate_token_days": 30})
        k8s.core.v1.Secret(
            "arm64-token",
            metadata={"name": "gitlab-runner-arm64-token", "namespace": "gitlab-runner"},
            string_data={"runner-token": registration.token},
        )

    run = run_program(program)
    runner = run.one(USER_RUNNER)
    secret = run.one("kubernetes:core/v1:Secret")
    assert runner.urn in secret.dependencies
    string_data = secret.inputs["stringData"]
    assert is_rpc_secret(string_data)
    assert unwrap_rpc_secret(string_data) == {"runner-token": runner.state["token"]}
    assert_nowhere_in_plain_text(run, runner.state["token"])
