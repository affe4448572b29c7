"""Every stack file evaluates end to end under mocks, with the properties its comments promise."""

from __future__ import annotations

import time

import pytest

from components.settings import reference_table
from tests.harness import ACCOUNT_ID, REPO, config_from_stack_file, run_stack

STACKS = sorted(path.name.split(".")[1] for path in (REPO / "stacks").glob("Pulumi.*.yaml"))
EXPORTS = {
    "cacheBucketName",
    "cacheBucketArn",
    "cacheBucketRegion",
    "cachePrefix",
    "cachePolicyArn",
    "cacheRoleArn",
    "cacheUserName",
    "cacheAccessKeyId",
    "cacheSecretAccessKey",
}
TAGGABLE = {
    "aws:s3/bucket:Bucket",
    "aws:iam/policy:Policy",
    "aws:iam/role:Role",
    "aws:iam/user:User",
}


def test_the_three_environments_have_stack_files() -> None:
    assert {"dev", "staging", "prod"} <= set(STACKS)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_evaluates_and_exports_what_reviewers_need(stack: str) -> None:
    run = run_stack(stack)
    assert set(run.outputs) == EXPORTS
    bucket = run.one("aws:s3/bucket:Bucket")
    assert run.outputs["cacheBucketName"] == bucket.inputs["bucket"]
    assert run.outputs["cacheBucketArn"] == f"arn:aws:s3:::{bucket.inputs['bucket']}"
    assert run.outputs["cacheBucketRegion"] == config_from_stack_file(stack)["aws:region"]
    assert run.outputs["cachePolicyArn"] == run.one("aws:iam/policy:Policy").state["arn"]
    assert run.outputs["cacheRoleArn"] == run.one("aws:iam/role:Role").state["arn"]
    assert run.secret_outputs == set()


@pytest.mark.parametrize("stack", STACKS)
def test_every_aws_resource_carries_the_allocation_tags(stack: str) -> None:
    run = run_stack(stack)
    cost_center = config_from_stack_file(stack)["gitlab-runner-fleet:tags"]["cost-center"]
    tagged = [r for r in run.resources if r.type in TAGGABLE]
    assert len(tagged) == 3
    for resource in tagged:
        tags = resource.inputs["tags"]
        assert tags["project"] == "gitlab-runner-fleet"
        assert tags["stack"] == stack
        assert tags["component"] in {"cache-bucket", "cache-access"}
        assert tags["cost-center"] == cost_center


@pytest.mark.parametrize("stack", STACKS)
def test_irsa_role_trusts_the_runner_service_account_of_the_stack(stack: str) -> None:
    run = run_stack(stack)
    role = run.one("aws:iam/role:Role")
    oidc_arn = config_from_stack_file(stack)["gitlab-runner-fleet:cluster"]["oidcProviderArn"]
    assert f'"Federated": "{oidc_arn}"' in role.inputs["assumeRolePolicy"]
    assert '"system:serviceaccount:gitlab-runner:gitlab-runner"' in role.inputs["assumeRolePolicy"]


def test_dev_bucket_is_disposable() -> None:
    bucket = run_stack("dev").one("aws:s3/bucket:Bucket")
    assert bucket.inputs["bucket"] == f"gitlab-runner-fleet-dev-cache-{ACCOUNT_ID}"
    assert bucket.protect is False
    assert bucket.inputs["forceDestroy"] is True


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_shared_stacks_cannot_lose_the_bucket(stack: str) -> None:
    bucket = run_stack(stack).one("aws:s3/bucket:Bucket")
    assert bucket.protect is True
    assert bucket.retain_on_delete is True
    assert bucket.inputs.get("forceDestroy", False) is False


def test_prod_versions_and_logs_its_cache() -> None:
    run = run_stack("prod")
    assert run.one("aws:s3/bucketVersioning:BucketVersioning").inputs[
        "versioningConfiguration"
    ] == {"status": "Enabled"}
    logging = run.one("aws:s3/bucketLogging:BucketLogging")
    assert logging.inputs["targetBucket"] == "example-org-s3-access-logs"
    lifecycle = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert {rule["id"] for rule in lifecycle.inputs["rules"]} == {
        "expire-cache-objects",
        "abort-incomplete-multipart-uploads",
        "expire-noncurrent-versions",
    }


def test_access_key_mode_keeps_the_key_secret_in_stack_outputs() -> None:
    run = run_stack("staging", {"gitlab-runner-fleet:cacheAccess": {"mode": "accessKey"}})
    assert run.of_type("aws:iam/role:Role") == []
    assert run.outputs["cacheUserName"] == run.one("aws:iam/user:User").state["name"]
    assert run.secret_outputs == {"cacheAccessKeyId", "cacheSecretAccessKey"}
    assert run.outputs["cacheRoleArn"] is None


def test_kms_stack_encrypts_with_the_key_and_grants_only_it() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    run = run_stack("prod", {"gitlab-runner-fleet:cache": {"kmsKeyArn": key}})
    policy = run.one("aws:iam/policy:Policy").inputs["policy"]
    assert f'"Resource": "{key}"' in policy
    encryption = run.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    assert (
        encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == key
    )


@pytest.mark.parametrize("stack", STACKS)
def test_stack_evaluation_stays_well_under_a_second(stack: str) -> None:
    run_stack(stack)  # the first run pays the SDK imports
    started = time.perf_counter()
    run_stack(stack)
    assert time.perf_counter() - started < 0.5


def test_readme_config_reference_matches_the_settings_model() -> None:
    assert reference_table() in (REPO / "README.md").read_text()
