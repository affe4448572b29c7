"""The GitLab pipeline: valid against GitLab's CI schema, and doing what the README promises."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import render
from components.versions import (
    CLUSTER_AUTOSCALER_CHART_REPO,
    CLUSTER_AUTOSCALER_CHART_VERSION,
    GITLAB_RUNNER_CHART_REPO,
    GITLAB_RUNNER_CHART_VERSION,
    GITLAB_RUNNER_VERSION,
)
from offline import REPO, stack_names
from tests.harness import run_stack

PIPELINE: dict[str, Any] = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
MERGE_REQUEST = '$CI_PIPELINE_SOURCE == "merge_request_event"'
DEFAULT_BRANCH = "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"


def job(name: str) -> dict[str, Any]:
    """A job with the templates it extends merged in (top-level keys, as GitLab does)."""
    definition = dict(PIPELINE[name])
    parents = definition.pop("extends", [])
    merged: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        merged.update(job(parent))
    merged.update(definition)
    return merged


def test_pipeline_passes_the_gitlab_ci_schema() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.gitlab-ci",
            str(REPO / ".gitlab-ci.yml"),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_pipeline_runs_the_ci_script() -> None:
    assert job("test")["script"] == ["bash .ci/run"]
    assert "rules" not in job("test")


@pytest.mark.parametrize(
    "name", ["preview", "render", "helm-template", "kubeconform", "runner-config-lint"]
)
def test_merge_request_jobs_cover_every_stack(name: str) -> None:
    definition = job(name)
    (matrix,) = definition["parallel"]["matrix"]
    assert sorted(matrix["STACK"]) == stack_names()
    assert definition["rules"] == [{"if": MERGE_REQUEST}]


def test_preview_shows_the_diff_and_keeps_it() -> None:
    preview = job("preview")
    assert any(
        "pulumi preview --refresh --diff" in line and '--stack "$STACK"' in line
        for line in preview["script"]
    )
    assert preview["artifacts"]["paths"] == ["preview.txt"]
    assert preview["artifacts"]["name"] == "preview-$STACK"
    assert preview["artifacts"]["when"] == "always"


def test_render_is_published_and_validated_with_the_real_tools() -> None:
    assert job("render")["artifacts"]["paths"] == ["out/"]
    helm = "\n".join(job("helm-template")["script"])
    # The pipeline pins the same charts as the program (components/versions.py).
    assert f"--repo {GITLAB_RUNNER_CHART_REPO} --version {GITLAB_RUNNER_CHART_VERSION}" in helm
    assert (
        f"--repo {CLUSTER_AUTOSCALER_CHART_REPO} --version {CLUSTER_AUTOSCALER_CHART_VERSION}"
        in helm
    )
    assert "kubeconform -strict" in job("kubeconform")["script"][0]
    lint = "\n".join(job("runner-config-lint")["script"])
    # render.py writes one config.toml per pool and one values file per pool's release.
    assert 'for config in "out/$STACK"/runner/*/config.toml' in lint
    assert 'gitlab-runner lint --config "$config"' in lint
    assert 'for values in "out/$STACK"/values/gitlab-runner-*.yaml' in helm
    lint_image = job("runner-config-lint")["image"]["name"]
    assert lint_image == f"gitlab/gitlab-runner:alpine-v{GITLAB_RUNNER_VERSION}"


def test_aws_access_comes_from_gitlab_oidc_not_static_keys() -> None:
    pulumi_job = job(".pulumi")
    assert pulumi_job["id_tokens"] == {"AWS_ID_TOKEN": {"aud": "sts.amazonaws.com"}}
    setup = "\n".join(pulumi_job["before_script"])
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in setup
    assert 'AWS_ROLE_ARN="$DEPLOY_ROLE_ARN"' in setup
    assert 'pulumi login "$PULUMI_BACKEND_URL"' in setup
    text = (REPO / ".gitlab-ci.yml").read_text()
    assert "AWS_ACCESS_KEY_ID" not in text
    assert "AWS_SECRET_ACCESS_KEY" not in text


@pytest.mark.parametrize(
    ("stack", "manual"),
    [("dev", False), ("staging", False), ("prod", True), ("onprem", True), ("basement", True)],
)
def test_default_branch_deploys_each_stack_one_update_at_a_time(stack: str, manual: bool) -> None:
    deploy = job(f"deploy-{stack}")
    assert deploy["variables"]["STACK"] == stack
    assert deploy["resource_group"] == "pulumi-$STACK"
    assert deploy["script"] == ['pulumi up --refresh --yes --non-interactive --stack "$STACK"']
    (rule,) = deploy["rules"]
    assert rule["if"] == DEFAULT_BRANCH
    assert (rule.get("when") == "manual") is manual


def test_every_stack_has_a_deploy_job() -> None:
    assert {name.removeprefix("deploy-") for name in PIPELINE if name.startswith("deploy-")} == set(
        stack_names()
    )


def test_every_operation_refreshes_first() -> None:
    # ignore_changes fills scalingConfig.desiredSize from the stack's state; without a refresh
    # that is the creation value, and the AWS provider sends the whole scaling block on any
    # change (terraform-provider-aws internal/service/eks/node_group.go), draining build nodes.
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["options"]["refresh"] == "always"
    commands = [
        line
        for name, definition in PIPELINE.items()
        if isinstance(definition, dict)
        for line in job(name).get("script", [])
        if isinstance(line, str) and line.startswith(("pulumi up", "pulumi preview"))
    ]
    assert commands
    assert all("--refresh" in line for line in commands)


def test_the_pipelines_globs_find_the_files_a_render_writes(tmp_path: Path) -> None:
    out = tmp_path / "out" / "prod"
    render.write_render(run_stack("prod"), out)
    assert len(list(out.glob("runner/*/config.toml"))) == 3
    assert len(list(out.glob("values/gitlab-runner-*.yaml"))) == 3
    assert (out / "values" / "cluster-autoscaler.yaml").is_file()
    script = "\n".join(job("helm-template")["script"])
    assert '"out/$STACK/values/cluster-autoscaler.yaml"' in script
