"""The stack settings model: defaults, one message listing every problem, no partial stacks."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.settings import SettingsError, load_settings, parse_settings
from tests.harness import PROJECT, run_program, run_stack

OIDC_ARN = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC123"
VALID: dict[str, Any] = {"cluster": {"oidcProviderArn": OIDC_ARN}}


def parse(raw: dict[str, Any], stack: str = "dev", region: str | None = "eu-west-1"):
    return parse_settings(raw, project=PROJECT, stack=stack, aws_region=region)


def problems_of(raw: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        parse(raw, **kwargs)
    return [str(problem) for problem in caught.value.problems]


def test_defaults_are_the_safe_ones() -> None:
    settings = parse(VALID)
    assert settings.cache.expiration_days == 60
    assert settings.cache.prefix == "runner-cache"
    assert settings.cache.protect is True
    assert settings.cache.force_destroy is False
    assert settings.cache.kms_key_arn is None
    assert settings.cache_access.mode == "irsa"
    assert settings.runner.namespace == "gitlab-runner"
    assert settings.runner.service_account_name == "gitlab-runner"
    assert (
        settings.cache_bucket_name("123456789012") == "gitlab-runner-fleet-dev-cache-123456789012"
    )


def test_explicit_bucket_name_wins() -> None:
    settings = parse({**VALID, "cache": {"bucketName": "acme-ci-cache"}})
    assert settings.cache_bucket_name("123456789012") == "acme-ci-cache"


def test_access_key_mode_needs_no_oidc_provider() -> None:
    assert parse({"cacheAccess": {"mode": "accessKey"}}).cache_access.mode == "accessKey"


INVALID = [
    ({"cache": {"expirationDays": 0}}, "cache.expirationDays: must be >= 1, got 0"),
    (
        {"cache": {"expirationDays": "soon"}},
        "cache.expirationDays: must be a whole number, got 'soon'",
    ),
    ({"cache": {"expirationDays": 1.5}}, "cache.expirationDays: must be a whole number, got 1.5"),
    ({"cache": {"expirationDays": 4000}}, "cache.expirationDays: must be <= 3650, got 4000"),
    (
        {"cache": {"bucketName": "My_Bucket"}},
        "cache.bucketName: may contain only lowercase letters",
    ),
    ({"cache": {"bucketName": "my.bucket"}}, "cache.bucketName: must not contain dots"),
    ({"cache": {"accessLogBucket": "x"}}, "cache.accessLogBucket: must be 3 to 63 characters"),
    ({"cache": {"prefix": "/runner/"}}, "cache.prefix: must be a non-empty S3 key prefix"),
    ({"cache": {"prefix": ""}}, "cache.prefix: must be a non-empty S3 key prefix"),
    ({"cache": {"kmsKeyArn": "alias/runner-cache"}}, "cache.kmsKeyArn: must be a KMS key ARN"),
    ({"cache": {"protect": "maybe"}}, "cache.protect: must be true or false, got 'maybe'"),
    (
        {"cache": {"forceDestroy": True}},
        "cache.forceDestroy: cannot be true while cache.protect is true",
    ),
    (
        {"cache": {"expirationDay": 3}},
        "cache.expirationDay: unknown key (check its spelling); known keys: bucketName",
    ),
    ({"cache": "big"}, "cache: must be an object with keys bucketName"),
    (
        {"cacheAccess": {"mode": "iam"}},
        "cacheAccess.mode: must be one of 'irsa' or 'accessKey', got 'iam'",
    ),
    (
        {"cluster": {"oidcProviderArn": "https://oidc.eks.eu-west-1.amazonaws.com/id/X"}},
        "cluster.oidcProviderArn: must be an IAM OIDC provider ARN",
    ),
    ({"runner": {"namespace": "Runners"}}, "runner.namespace: must be a Kubernetes namespace name"),
    ({"runner": {"namespace": "a" * 64}}, "runner.namespace: must be a Kubernetes namespace name"),
    (
        {"runner": {"serviceAccountName": "runner_sa"}},
        "runner.serviceAccountName: must be a Kubernetes service account name",
    ),
    ({"tags": {"stack": "x"}}, "tags.stack: is set by the project itself"),
    (
        {"tags": {"aws:created-by": "x"}},
        "tags.aws:created-by: tag keys must be 1-128 characters and not start with 'aws:'",
    ),
    ({"tags": {"team": 7}}, "tags.team: must be a string of at most 256 characters, got 7"),
    ({"tags": ["team"]}, "tags: must be an object of tag keys to values"),
]


@pytest.mark.parametrize(("override", "expected"), INVALID, ids=[e for _, e in INVALID])
def test_each_invalid_setting_is_rejected_with_its_own_message(override, expected) -> None:
    problems = problems_of({**VALID, **override})
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected)


def test_irsa_without_oidc_provider_names_both_fixes() -> None:
    (problem,) = problems_of({})
    assert problem.startswith("cluster.oidcProviderArn: required when cacheAccess.mode is irsa")
    assert "cacheAccess.mode: accessKey" in problem


def test_missing_region_is_reported_with_the_command_that_sets_it() -> None:
    (problem,) = problems_of(VALID, region=None)
    assert problem == "aws:region: required; set it with `pulumi config set aws:region <region>`"


def test_every_problem_is_listed_in_one_message() -> None:
    with pytest.raises(SettingsError) as caught:
        parse(
            {
                "cache": {"expirationDays": 0, "kmsKeyArn": "nope"},
                "cacheAccess": {"mode": "iam"},
                "runner": {"namespace": "NS"},
            },
            region=None,
        )
    message = str(caught.value)
    assert message.startswith("Invalid configuration for stack 'dev' (5 problems).")
    for key in (
        "cache.expirationDays",
        "cache.kmsKeyArn",
        "cacheAccess.mode",
        "runner.namespace",
        "aws:region",
    ):
        assert f"\n  - {key}: " in message
    assert "Traceback" not in message


def test_settings_error_is_a_run_error_so_pulumi_prints_no_traceback() -> None:
    assert issubclass(SettingsError, pulumi.RunError)


def test_load_settings_reads_the_project_namespace() -> None:
    loaded: list[Any] = []
    run_program(
        lambda: loaded.append(load_settings()),
        config={
            "gitlab-runner-fleet:cache": {"expirationDays": 9},
            "gitlab-runner-fleet:cluster": {"oidcProviderArn": OIDC_ARN},
        },
        stack="qa",
        region="us-east-2",
    )
    (settings,) = loaded
    assert (settings.project, settings.stack, settings.aws_region) == (PROJECT, "qa", "us-east-2")
    assert settings.cache.expiration_days == 9
    assert settings.cluster.oidc_provider_arn == OIDC_ARN


def test_a_section_that_is_not_json_is_reported_not_raised() -> None:
    run = run_program(
        load_settings, config={"gitlab-runner-fleet:cache": "{expirationDays: 9"}, expect_error=True
    )
    assert isinstance(run.error, SettingsError)
    assert [str(p) for p in run.error.problems] == [
        "cache: must be an object of keys, got '{expirationDays: 9'"
    ]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_invalid_config_declares_no_resource(stack: str) -> None:
    run = run_stack(stack, {"gitlab-runner-fleet:cache": {"expirationDays": 0}}, expect_error=True)
    assert isinstance(run.error, SettingsError)
    assert "cache.expirationDays: must be >= 1, got 0" in str(run.error)
    assert run.resources == []
