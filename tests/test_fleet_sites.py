"""The hub/edge contract: the hub exports it, the edge reads it, the offline render stands in
for it, all from one definition."""

from __future__ import annotations

import tomllib
from typing import Any

import pulumi

from components.fleet.sites import (
    EDGE_CREDENTIALS_OUTPUT,
    HUB_OUTPUT,
    EdgeCredential,
    HubView,
    SiteHub,
    stand_in_hub_outputs,
)
from tests.harness import run_program, run_stack

HUB_KEYS = set(SiteHub.__required_keys__)
CREDENTIAL_KEYS = set(EdgeCredential.__required_keys__)


def test_the_hub_exports_the_contract() -> None:
    run = run_stack("prod")
    assert set(run.outputs[HUB_OUTPUT]) == HUB_KEYS
    assert EDGE_CREDENTIALS_OUTPUT in run.secret_outputs
    for credential in run.outputs[EDGE_CREDENTIALS_OUTPUT].values():
        assert set(credential) == CREDENTIAL_KEYS


def test_the_offline_hub_stands_in_with_the_contract() -> None:
    outputs = stand_in_hub_outputs(
        name="cloud", bucket="b", region="eu-west-1", prefix="p", replicate=[], edges=["e"]
    )
    assert set(outputs[HUB_OUTPUT]) == HUB_KEYS
    assert set(outputs[EDGE_CREDENTIALS_OUTPUT]["e"]) == CREDENTIAL_KEYS


def test_an_edge_reads_its_own_credential_and_the_hubs_cache_as_secrets() -> None:
    seen: dict[str, Any] = {}

    def program() -> None:
        reference = pulumi.StackReference("org/gitlab-runner-fleet/prod")
        view = HubView(reference, "basement", 50.0)
        pulumi.export("bucket", view.bucket)
        pulumi.export("prefix", view.prefix)
        pulumi.export("key", view.hub["access_key_id"])
        pulumi.export("replicate", view.hub["replicate"])
        seen["uplink"] = view.hub["uplink_mbps"]

    run = run_program(program)
    assert run.error is None
    assert run.outputs["bucket"] == "gitlab-runner-fleet-prod-cache-123456789012"
    assert run.outputs["prefix"] == "runner-cache"
    assert run.outputs["replicate"] == ["deps-*"]
    assert run.outputs["key"] == "offline-placeholder-edge-key-basement"
    assert "key" in run.secret_outputs
    assert seen["uplink"] == 50.0


def test_the_edge_stacks_runners_use_the_hubs_bucket_and_prefix() -> None:
    run = run_stack("basement")
    release = run.one("kubernetes:helm.sh/v3:Release")
    (runner,) = tomllib.loads(release.inputs["values"]["runners"]["config"])["runners"]
    assert runner["cache"]["Path"] == "runner-cache"
    assert runner["cache"]["s3"]["BucketName"] == "gitlab-runner-fleet-prod-cache-123456789012"
