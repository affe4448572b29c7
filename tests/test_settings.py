"""The stack settings model: defaults, one message listing every problem, no partial stacks."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.settings import RawSecret, SettingsError, load_settings, parse_settings
from tests.harness import (
    CREATED_CLUSTER,
    PROJECT,
    RUNNER_TOKEN,
    run_program,
    run_stack,
    settings_config,
)

EXISTING = {"name": "ci", "version": "1.34", "nodeSubnetIds": ["subnet-p1"]}
VALID: dict[str, Any] = {"cluster": EXISTING}
POOL = {"name": "default", "runUntagged": True}


TOKEN = {"runnerTokens": RawSecret('{"default": "glrt-t1_abc"}', stored_as_secret=True)}


def parse(
    raw: dict[str, Any],
    stack: str = "dev",
    region: str | None = "eu-west-1",
    secrets: dict[str, RawSecret] | None = None,
):
    if secrets is None:
        names = [pool.get("name") for pool in raw.get("pools") or [POOL] if isinstance(pool, dict)]
        tokens = json.dumps({name: f"glrt-{name}" for name in names if isinstance(name, str)})
        secrets = {"runnerTokens": RawSecret(tokens, stored_as_secret=True)}
    return parse_settings(raw, project=PROJECT, stack=stack, aws_region=region, secrets=secrets)


def problems_of(raw: dict[str, Any], **kwargs: Any) -> list[str]:
    """The problems `parse` reports, as strings."""
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


def test_a_created_cluster_puts_nodes_in_its_private_subnets() -> None:
    cluster = parse({"cluster": CREATED_CLUSTER}).cluster
    assert cluster.default_node_subnet_ids == ["subnet-a", "subnet-b"]
    explicit = parse({"cluster": {**CREATED_CLUSTER, "nodeSubnetIds": ["subnet-c"]}}).cluster
    assert explicit.default_node_subnet_ids == ["subnet-c"]


def test_unknown_instance_shapes_are_a_warning_not_an_error() -> None:
    settings = parse({**VALID, "pools": [{**POOL, "instanceTypes": ["c5.2xlarge", "c5n.2xlarge"]}]})
    assert settings.warnings == (
        "pools[default].instanceTypes: cannot check the vCPU/memory shape of c5n.2xlarge; "
        "make sure every type matches c5.2xlarge",
    )


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
        "cache.expirationDay: unknown key (check its spelling); did you mean expirationDays?",
    ),
    ({"cache": "big"}, "cache: must be an object with keys type, bucketName"),
    (
        {"cacheAccess": {"mode": "iam"}},
        "cacheAccess.mode: must be one of 'irsa' or 'accessKey', got 'iam'",
    ),
    ({"cluster": {"version": "1.34"}}, "cluster.name: required"),
    (
        {"cluster": {"name": "ci", "nodeSubnetIds": ["s"]}},
        "cluster.version: required when cluster.mode is existing, e.g. '1.34'",
    ),
    (
        {"cluster": {**EXISTING, "version": "1.29"}},
        "cluster.version: must be one of 1.30, 1.31, 1.32, 1.33, 1.34, 1.35",
    ),
    ({"cluster": {**EXISTING, "name": "-ci"}}, "cluster.name: must be an EKS cluster name"),
    (
        {"cluster": {**EXISTING, "mode": "import"}},
        "cluster.mode: must be one of 'create', 'existing' or 'kubeconfig', got 'import'",
    ),
    (
        {
            "cluster": {
                "name": "ci",
                "version": "1.34",
                "mode": "create",
                "privateSubnetIds": ["a", "b"],
            }
        },
        "cluster.vpcId: required when cluster.mode is create",
    ),
    (
        {
            "cluster": {
                "name": "ci",
                "version": "1.34",
                "mode": "create",
                "vpcId": "vpc-1",
                "privateSubnetIds": ["a"],
            }
        },
        "cluster.privateSubnetIds: needs at least two private subnets",
    ),
    (
        {"cluster": {**CREATED_CLUSTER, "createOidcProvider": True}},
        "cluster.createOidcProvider: is only used when cluster.mode is existing; remove it",
    ),
    (
        {"cluster": {**EXISTING, "vpcId": "vpc-1"}},
        "cluster.vpcId: is only used when cluster.mode is create; remove it",
    ),
    (
        {"cluster": {**CREATED_CLUSTER, "systemNodeCount": 0}},
        "cluster.systemNodeCount: must be >= 1, got 0",
    ),
    (
        {"pools": [{**POOL, "minSize": 4, "maxSize": 3}]},
        "pools[0].minSize: must be <= pools[0].maxSize (3), got 4",
    ),
    ({"pools": [{**POOL, "maxSize": 0}]}, "pools[0].maxSize: must be >= 1, got 0"),
    ({"pools": [{**POOL, "minSize": -1}]}, "pools[0].minSize: must be >= 0, got -1"),
    (
        {"pools": [{**POOL, "instanceTypes": []}]},
        "pools[0].instanceTypes: must list at least one instance type",
    ),
    (
        {"pools": [{**POOL, "instanceTypes": ["c5.2xlarge", "c5.2xlarge"]}]},
        "pools[0].instanceTypes: must not repeat instance types, repeated: c5.2xlarge",
    ),
    (
        {
            "pools": [
                {**POOL, "instanceTypes": ["c5a.2xlarge", "t3.2xlarge", "c5.2xlarge", "m5.2xlarge"]}
            ]
        },
        "pools[0].instanceTypes: must all have the same vCPU, memory and architecture, because cluster-autoscaler sizes the whole group from the first type: c5a.2xlarge is 8 vCPU/16 GiB/x86_64 but t3.2xlarge is 8 vCPU/32 GiB/x86_64",
    ),
    (
        {"pools": [{**POOL, "instanceTypes": ["m6i.2xlarge", "m6g.2xlarge"]}]},
        "pools[0].instanceTypes: must all have one CPU architecture: m6g.2xlarge arm64 (Graviton) but m6i.2xlarge x86_64",
    ),
    (
        {"pools": [{**POOL, "instanceTypes": ["c7g.2xlarge", "c7gn.2xlarge", "c6i.2xlarge"]}]},
        "pools[0].instanceTypes: must all have one CPU architecture: c7g.2xlarge, c7gn.2xlarge arm64",
    ),
    (
        {"pools": [{**POOL, "instanceTypes": ["c6i.2xlarge", "c6i.mega"]}]},
        "pools[0].instanceTypes: c6i.mega is not an EC2 instance type usable by EKS",
    ),
    (
        {"pools": [{**POOL, "scaleFromZeroEphemeralStorage": "95Gi"}]},
        "pools[0].scaleFromZeroEphemeralStorage: must be <= 88Gi, what a 100 GiB disk offers pods",
    ),
    (
        {"pools": [{**POOL, "diskSizeGib": 50, "scaleFromZeroEphemeralStorage": "50Gi"}]},
        "pools[0].scaleFromZeroEphemeralStorage: must be <= 43Gi, what a 50 GiB disk offers",
    ),
    (
        {"pools": [{**POOL, "ephemeralStorageRequest": "100Gi"}]},
        "pools[0].ephemeralStorageRequest: must fit on one node (88Gi), got 100Gi",
    ),
    (
        {"pools": [{"name": "default"}]},
        "pools[0].tags: must list the GitLab runner tags this pool serves",
    ),
    (
        {"pools": [{**POOL, "name": "Large_Memory"}]},
        "pools[0].name: must be 1-20 lowercase letters",
    ),
    (
        {"pools": [POOL, {**POOL, "tags": ["x"]}]},
        "pools[1].name: repeats pool name 'default'",
    ),
    (
        {
            "pools": [
                POOL,
                {
                    "name": "big",
                    "labels": {"gitlab-runner-fleet/pool": "default", "size": "big"},
                    "tags": ["big"],
                },
            ]
        },
        "pools[1].labels: overlap with pools[0] (default)",
    ),
    (
        {"pools": [{**POOL, "buildMode": "privileged"}]},
        "pools[0].buildMode: must be one of 'dind' or 'rootless', got 'privileged'",
    ),
    (
        {
            "pools": [
                {**POOL, "warmCapacity": {"policies": [{"periods": ["* * * * *"], "idleJobs": -1}]}}
            ]
        },
        "pools[0].warmCapacity.policies[0].idleJobs: must be >= 0, got -1",
    ),
    (
        {"pools": [{**POOL, "jobQueuingDurations": [{"periods": ["* 7-18"], "threshold": "5m"}]}]},
        "pools[0].jobQueuingDurations[0].periods: each period must be a 5-field cron expression",
    ),
    (
        {
            "pools": [
                {**POOL, "jobQueuingDurations": [{"periods": ["* * * * *"], "threshold": "0s"}]}
            ]
        },
        "pools[0].jobQueuingDurations[0].threshold: must be above 0 (the runner ignores 0)",
    ),
    (
        {"pools": [{**POOL, "expectJobs": {"periods": ["* 7 * * mon"], "within": "2h"}}]},
        "pools[0].expectJobs: within (2h) is longer than every stretch of working hours",
    ),
    (
        {"pools": [{**POOL, "expectJobs": {"periods": ["* 7 1 * mon"]}}]},
        "pools[0].expectJobs: period '* 7 1 * mon': day of month and month must be '*'",
    ),
    (
        {"pools": [{**POOL, "expectJobs": {"periods": ["* 7 * * mon"], "within": "1 hour"}}]},
        "pools[0].expectJobs.within: must be a Prometheus duration such as 1h or 90m",
    ),
    ({"pools": []}, "pools: must be a non-empty list of pools"),
    ({"pools": [{**POOL, "instanceType": "c5.large"}]}, "pools[0].instanceType: unknown key"),
    (
        {"buildNodes": {"maxSize": 3}},
        "buildNodes: moved into a pool: put its keys into an entry of `pools`",
    ),
    (
        {"warmCapacity": {"enabled": True}},
        "warmCapacity: moved into a pool as `pools[i].warmCapacity` with `idleJobs`",
    ),
    (
        {"cluster": {"name": "ci", "version": "1.34"}},
        "cluster.nodeSubnetIds: required when cluster.mode is existing: list the private subnets",
    ),
    (
        {"cluster": {**CREATED_CLUSTER, "adminPrincipalArns": ["deploy-role"]}},
        "cluster.adminPrincipalArns: each entry must be an IAM role or user ARN",
    ),
    (
        {"cluster": {**EXISTING, "adminPrincipalArns": ["arn:aws:iam::123456789012:role/x"]}},
        "cluster.adminPrincipalArns: is only used when cluster.mode is create; remove it",
    ),
    (
        {"runner": {"featureFlags": {"fastzip": True}}},
        "runner.featureFlags: 'fastzip' is not a runner feature flag name",
    ),
    ({"runner": {"buildMode": "kaniko"}}, "runner.buildMode: must be one of 'dind' or 'rootless'"),
    (
        {"pools": [{**POOL, "taints": [{"key": "build", "effect": "NO_SCHEDULE"}]}]},
        "pools[0].taints[0].effect: must be one of 'NoSchedule', 'PreferNoSchedule' or 'NoExecute', got 'NO_SCHEDULE'",
    ),
    (
        {"pools": [{**POOL, "taints": [{"key": "bad key", "effect": "NoSchedule"}]}]},
        "pools[0].taints[0].key: name part must be 1-63 letters",
    ),
    (
        {"pools": [{**POOL, "taints": [{"key": f"k{i}"} for i in range(51)]}]},
        "pools[0].taints: must have at most 50 items, got 51",
    ),
    (
        {"pools": [{**POOL, "taints": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]}]},
        "pools[0].taints: each key and effect may appear once, repeated: [('a', 'NoSchedule')]",
    ),
    (
        {"pools": [{**POOL, "labels": {"Intent!": "build"}}]},
        "pools[0].labels: invalid Kubernetes labels: 'Intent!': name part must be 1-63 letters",
    ),
    (
        {"pools": [{**POOL, "labels": {"intent": "build jobs"}}]},
        "pools[0].labels: invalid Kubernetes labels: 'intent': must be at most 63 letters",
    ),
    (
        {"pools": [{**POOL, "labels": {"node.kubernetes.io/role": "build"}}]},
        "pools[0].labels: invalid Kubernetes labels: 'node.kubernetes.io/role': the kubernetes.io and k8s.io prefixes are reserved",
    ),
    (
        {"pools": [{**POOL, "labels": {"intent": "x" * 64}}]},
        "pools[0].labels: invalid Kubernetes labels: 'intent': must be at most 63",
    ),
    (
        {"pools": [{**POOL, "nodeRoleArn": "my-role"}]},
        "pools[0].nodeRoleArn: must be an IAM role ARN, got 'my-role'",
    ),
    (
        {"pools": [{**POOL, "scaleFromZeroEphemeralStorage": "90 GB"}]},
        "pools[0].scaleFromZeroEphemeralStorage: must be a Kubernetes quantity such as 100Gi, got '90 GB'",
    ),
    ({"clusterAutoscaler": {"expander": "cheapest"}}, "clusterAutoscaler.expander: must be one of"),
    (
        {"clusterAutoscaler": {"expander": "price"}},
        "clusterAutoscaler.expander: must be one of 'least-waste', 'random', 'most-pods' or 'least-nodes', got 'price'",
    ),
    (
        {"clusterAutoscaler": {"scaleDownUnneededTime": "10 minutes"}},
        "clusterAutoscaler.scaleDownUnneededTime: must be a duration such as 10m or 1h30m",
    ),
    (
        {"network": {"s3GatewayEndpoint": False, "routeTableIds": ["rtb-1"]}},
        "network.routeTableIds: is only used with network.s3GatewayEndpoint",
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


def test_missing_region_is_reported_with_the_command_that_sets_it() -> None:
    (problem,) = problems_of(VALID, region=None)
    assert problem == "aws:region: required; set it with `pulumi config set aws:region <region>`"


def test_every_problem_is_listed_in_one_message() -> None:
    with pytest.raises(SettingsError) as caught:
        parse(
            {
                **VALID,
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
            "gitlab-runner-fleet:cluster": {**EXISTING, "name": "ci-qa", "version": "1.33"},
            "gitlab-runner-fleet:runnerTokens": {"default": RUNNER_TOKEN},
        },
        secret_keys=["gitlab-runner-fleet:runnerTokens"],
        stack="qa",
        region="us-east-2",
    )
    (settings,) = loaded
    assert (settings.project, settings.stack, settings.aws_region) == (PROJECT, "qa", "us-east-2")
    assert settings.cache.expiration_days == 9
    assert (settings.cluster.name, settings.cluster.version) == ("ci-qa", "1.33")


def test_a_section_that_is_not_json_is_reported_not_raised() -> None:
    run = run_program(
        load_settings, config={"gitlab-runner-fleet:cache": "{expirationDays: 9"}, return_error=True
    )
    assert isinstance(run.error, SettingsError)
    (cache,) = [str(p) for p in run.error.problems if p.key == "cache"]
    assert cache.startswith("cache: must be an object with keys type, bucketName")
    assert cache.endswith("got '{expirationDays: 9'")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_invalid_config_declares_no_resource(stack: str) -> None:
    run = run_stack(stack, {"gitlab-runner-fleet:cache": {"expirationDays": 0}}, return_error=True)
    assert isinstance(run.error, SettingsError)
    assert "cache.expirationDays: must be >= 1, got 0" in str(run.error)
    assert run.resources == []


S3_COMPATIBLE = {"type": "s3Compatible", "bucketName": "ci-cache"}
CREDENTIALS = RawSecret('{"accessKey": "minio", "secretKey": "minio123"}', stored_as_secret=True)


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        (
            {**S3_COMPATIBLE, "serverAddress": "https://minio.example.com", "insecure": True},
            "cache.insecure: is true but cache.serverAddress is https://",
        ),
        (
            {**S3_COMPATIBLE, "serverAddress": "http://minio.internal:9000"},
            "cache.insecure: must be true for the http:// cache.serverAddress",
        ),
        (
            {**S3_COMPATIBLE, "serverAddress": "ftp://minio.internal"},
            "cache.serverAddress: scheme must be http or https, got 'ftp'",
        ),
        (
            {**S3_COMPATIBLE, "serverAddress": "https://minio.example.com/bucket"},
            "cache.serverAddress: must be host[:port] or a URL without a path",
        ),
        (
            {"type": "s3Compatible", "serverAddress": "minio:9000"},
            "cache.bucketName: required when cache.type is s3Compatible",
        ),
        (
            {"type": "s3Compatible", "bucketName": "ci-cache"},
            "cache.serverAddress: required when cache.type is s3Compatible",
        ),
        ({"type": "gcs"}, "cache.bucketName: required when cache.type is gcs"),
        (
            {**S3_COMPATIBLE, "serverAddress": "minio:9000", "dualStack": True},
            "cache.dualStack: is only used when cache.type is s3",
        ),
    ],
)
def test_s3_compatible_and_gcs_problems(cache: dict[str, Any], expected: str) -> None:
    secrets = {**TOKEN, "cacheCredentials": CREDENTIALS}
    problems = problems_of({**VALID, "cache": cache}, secrets=secrets)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_insecure_false_with_https_and_true_with_http_are_accepted() -> None:
    secrets = {**TOKEN, "cacheCredentials": CREDENTIALS}
    for address, insecure in (
        ("https://minio.example.com", False),
        ("http://minio.internal:9000", True),
    ):
        cache = {**S3_COMPATIBLE, "serverAddress": address, "insecure": insecure}
        assert parse({**VALID, "cache": cache}, secrets=secrets).cache.insecure is insecure


@pytest.mark.parametrize(
    ("secrets", "expected"),
    [
        ({}, "runnerTokens: required; create the pool's runner in GitLab"),
        (
            {"runnerTokens": RawSecret('{"default": "GR1348941aBcDeF"}', stored_as_secret=True)},
            "runnerTokens.default: is not a runner authentication token (glrt-...). Registration tokens are deprecated",
        ),
        (
            {"runnerTokens": RawSecret('{"default": "glrt-abc"}', stored_as_secret=False)},
            "runnerTokens: is stored in plain text; remove it from the stack file and set each token with `pulumi config set --secret --path 'runnerTokens.<pool>' <token>`",
        ),
        (
            {"runnerTokens": RawSecret('{"arm64": "glrt-abc"}', stored_as_secret=True)},
            "runnerTokens.default: required; create the pool's runner in GitLab (Settings > "
            "CI/CD > Runners > New project runner, or the POST /user/runners API) and store its "
            "glrt- authentication token with "
            "`pulumi config set --secret --path 'runnerTokens.default' <token>`",
        ),
        # Wrong shapes are named as such, their values not shown (found trying it as a new user).
        (
            {"runnerTokens": RawSecret('{"default": ["glrt-abc"]}', stored_as_secret=True)},
            "runnerTokens.default: must be one token (glrt-...), got a list",
        ),
        (
            {"runnerTokens": RawSecret('{"default": null}', stored_as_secret=True)},
            "runnerTokens.default: must be one token (glrt-...), got nothing (null)",
        ),
        (
            {"runnerTokens": RawSecret('{"default": 12345}', stored_as_secret=True)},
            "runnerTokens.default: must be one token (glrt-...), got a number",
        ),
        (
            {"runnerToken": RawSecret("glrt-abc", stored_as_secret=True), **TOKEN},
            "runnerToken: moved to one token per pool",
        ),
    ],
)
def test_runner_token_problems(secrets: dict[str, RawSecret], expected: str) -> None:
    problems = problems_of(VALID, secrets=secrets)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_a_token_for_no_pool_is_reported() -> None:
    secrets = {"runnerTokens": RawSecret('{"default": "glrt-a", "old": "glrt-b"}', True)}
    (problem,) = problems_of(VALID, secrets=secrets)
    assert problem == "runnerTokens.old: names no pool (pools: default)"


def test_token_values_never_appear_in_messages() -> None:
    secrets = {"runnerTokens": RawSecret('{"default": "GR1348941SuperSecretValue"}', True)}
    with pytest.raises(SettingsError) as caught:
        parse(VALID, secrets=secrets)
    assert "SuperSecretValue" not in str(caught.value)
    assert "glrt-t1_abc" not in repr(parse(VALID))


@pytest.mark.parametrize(
    ("cache", "credentials", "expected"),
    [
        (
            {"type": "s3Compatible", "bucketName": "ci-cache", "serverAddress": "minio:9000"},
            None,
            "cacheCredentials: required when cache.type is s3Compatible: {accessKey, secretKey}",
        ),
        (
            {"type": "gcs", "bucketName": "ci"},
            RawSecret('{"accessId": "a"}', True),
            "cacheCredentials: must hold exactly {credentialsJson} or {accessId, privateKey} when cache.type is gcs, got keys ['accessId']",
        ),
        (
            {"type": "azure", "containerName": "c"},
            RawSecret('{"accountName": "a", "accountKey": "k"}', False),
            "cacheCredentials: is stored in plain text",
        ),
        (
            {},
            RawSecret('{"accessKey": "a"}', True),
            "cacheCredentials: is not used when cache.type is s3; remove it",
        ),
    ],
)
def test_cache_credential_problems(
    cache: dict[str, Any], credentials: RawSecret | None, expected: str
) -> None:
    secrets = dict(TOKEN)
    if credentials is not None:
        secrets["cacheCredentials"] = credentials
    problems = problems_of({**VALID, "cache": cache}, secrets=secrets)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_load_settings_reads_secrets_and_their_secrecy() -> None:
    loaded: list[Any] = []
    run_program(
        lambda: loaded.append(load_settings()),
        config={
            **settings_config(cluster=EXISTING),
            f"{PROJECT}:runnerTokens": {"default": RUNNER_TOKEN},
        },
        secret_keys=[f"{PROJECT}:runnerTokens"],
    )
    assert repr(loaded[0].runner_tokens["default"]) == "Secret(****)"


def test_a_plain_text_token_in_the_stack_file_is_refused_before_any_resource() -> None:
    run = run_program(
        load_settings,
        config={
            **settings_config(cluster=EXISTING),
            f"{PROJECT}:runnerTokens": {"default": RUNNER_TOKEN},
        },
        return_error=True,
    )
    assert isinstance(run.error, SettingsError)
    assert "runnerTokens: is stored in plain text" in str(run.error)
    assert RUNNER_TOKEN not in str(run.error)


CREATE_RUNNERS = {"createRunners": True, "runnerType": "group_type", "groupId": 7}
API_TOKEN = {"gitlabApiToken": RawSecret("glpat-abc", stored_as_secret=True)}


def test_runners_created_by_code_need_no_runner_tokens() -> None:
    settings = parse({**VALID, "gitlab": CREATE_RUNNERS}, secrets=API_TOKEN)
    assert settings.runner_tokens == {}
    assert repr(settings.gitlab_api_token) == "Secret(****)"


@pytest.mark.parametrize(
    ("gitlab", "secrets", "expected"),
    [
        (CREATE_RUNNERS, {}, "gitlabApiToken: required with gitlab.createRunners: true"),
        (
            CREATE_RUNNERS,
            {"gitlabApiToken": RawSecret("glpat-abc", stored_as_secret=False)},
            "gitlabApiToken: is stored in plain text",
        ),
        (
            CREATE_RUNNERS,
            {**API_TOKEN, **TOKEN},
            "runnerTokens: is not used with gitlab.createRunners: true",
        ),
        (
            {"createRunners": True, "runnerType": "group_type"},
            API_TOKEN,
            "gitlab.groupId: is required when runnerType is group_type",
        ),
        (
            {**CREATE_RUNNERS, "maximumTimeout": 7200},
            API_TOKEN,
            "gitlab.maximumTimeout: must not exceed the manager's terminationGracePeriodSeconds",
        ),
        ({"groupId": 7}, None, "gitlab.groupId: is only used with gitlab.createRunners: true"),
    ],
)
def test_runner_creation_problems(
    gitlab: dict[str, Any], secrets: dict[str, RawSecret] | None, expected: str
) -> None:
    problems = problems_of({**VALID, "gitlab": gitlab}, secrets=secrets)
    assert any(problem.startswith(expected) for problem in problems), problems


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"isolation": {"existingNamespaces": ["default"]}},
            "isolation.existingNamespaces: not a job namespace of this stack",
        ),
        (
            {"isolation": {"metricsScraperNamespaces": ["gitlab-runner-jobs-dind"]}},
            "isolation.metricsScraperNamespaces: a job namespace cannot scrape the runner managers",
        ),
        (
            {"isolation": {"podSecurityVersion": "1.34"}},
            "isolation.podSecurityVersion: must be 'latest' or a Kubernetes minor such as v1.34",
        ),
    ],
)
def test_isolation_problems(raw: dict[str, Any], expected: str) -> None:
    problems = problems_of({**VALID, **raw})
    assert any(problem.startswith(expected) for problem in problems), problems


def test_jobs_of_each_build_mode_get_their_own_namespace_and_level() -> None:
    settings = parse(
        {
            **VALID,
            "runner": {"namespace": "ci"},
            "pools": [POOL, {"name": "kaniko", "buildMode": "rootless", "tags": ["kaniko"]}],
        }
    )
    assert settings.job_namespace_specs == [
        {"name": "ci-jobs-dind", "pod_security_level": "privileged", "existing": False},
        {"name": "ci-jobs-rootless", "pod_security_level": "baseline", "existing": False},
    ]
    assert settings.pod_security_version == "v1.34"


@pytest.mark.parametrize(
    ("raw", "secrets", "expected"),
    [
        (
            {"registryMirror": {"storage": "s3"}, "cache": {"type": "gcs", "bucketName": "b"}},
            {"cacheCredentials": RawSecret('{"credentialsJson": "{}"}', True)},
            "registryMirror.storage: s3 keeps layers in the cache's bucket",
        ),
        (
            {"registryMirror": {"prefix": "runner-cache/mirror"}},
            {},
            "registryMirror.prefix: must not overlap cache.prefix (runner-cache)",
        ),
        (
            {"registryMirror": {"dockerHubUsername": "acme"}},
            {},
            "dockerHubToken: required with registryMirror.dockerHubUsername",
        ),
        (
            {},
            {"dockerHubToken": RawSecret("dckr_pat_x", True)},
            "dockerHubToken: is only used with registryMirror.dockerHubUsername",
        ),
        (
            {"registryMirror": {"dockerHubUsername": "acme"}},
            {"dockerHubToken": RawSecret("dckr_pat_x", False)},
            "dockerHubToken: is stored in plain text",
        ),
        (
            {"registryMirror": {"clusterIp": "mirror.local"}},
            {},
            "registryMirror.clusterIp: must be an IP address, got 'mirror.local'",
        ),
        (
            {"registryMirror": {"filesystemSize": "50Gi"}},
            {},
            "registryMirror.filesystemSize: only bounds filesystem storage; this stack's mirror "
            "keeps its layers in s3 (cache.type s3), expired by age",
        ),
        (
            {"registryMirror": {"storage": "filesystem", "filesystemSize": "512Mi"}},
            {},
            "registryMirror.filesystemSize: must be at least 1Gi, got '512Mi'",
        ),
    ],
)
def test_registry_mirror_problems(
    raw: dict[str, Any], secrets: dict[str, RawSecret], expected: str
) -> None:
    problems = problems_of({**VALID, **raw}, secrets={**TOKEN, **secrets})
    assert any(problem.startswith(expected) for problem in problems), problems
