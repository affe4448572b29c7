"""render.py: the offline review render of each stack."""

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import offline
import render
from components.settings.secrets import STAND_IN_RUNNER_TOKEN
from offline import evaluate_stack, stack_names
from tests.test_iam_documents import parliament_findings_karpenter_cannot_avoid


@pytest.fixture(scope="module", params=stack_names())
def rendered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    stack: str = request.param
    out = tmp_path_factory.mktemp(stack)
    assert render.main([stack, "--out", str(out)]) == 0
    return stack, out


def test_every_resource_is_listed_with_its_properties(rendered: tuple[str, Path]) -> None:
    stack, out = rendered
    listed = json.loads((out / "resources.json").read_text())
    assert len(listed) == len(evaluate_stack(stack).resources)
    runners = [
        r
        for r in listed
        if r["type"] == "kubernetes:helm.sh/v3:Release" and r["name"].startswith("gitlab-runner-")
    ]
    assert runners
    for runner in runners:
        assert runner["properties"]["chart"] == "gitlab-runner"
        assert runner["parent"] == "gitlab-runner-fleet:index:GitlabRunner"


def test_no_secret_value_is_written(rendered: tuple[str, Path]) -> None:
    _, out = rendered
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert STAND_IN_RUNNER_TOKEN not in text, path
            assert "offline-placeholder" not in text, path
            assert "mock-secret-access-key" not in text, path
    listed = json.loads((out / "resources.json").read_text())
    token_secrets = [r for r in listed if r["name"].endswith("-token")]
    assert token_secrets
    assert all(secret["properties"]["stringData"] == "[secret]" for secret in token_secrets)


def test_each_pool_gets_its_effective_config_toml(rendered: tuple[str, Path]) -> None:
    stack, out = rendered
    pools = {
        pool["name"] for pool in offline.config_from_stack_file(stack)["gitlab-runner-fleet:pools"]
    }
    assert {path.name for path in (out / "runner").iterdir()} == pools
    for pool in pools:
        config = tomllib.loads((out / "runner" / pool / "config.toml").read_text())
        (runner,) = config["runners"]
        assert runner["url"] == "https://gitlab.example.com/"
        assert runner["token"] == "[secret]"
        assert runner["executor"] == "kubernetes"
        assert runner["kubernetes"]["pod_labels"] or runner["kubernetes"]["node_selector"]
        assert isinstance(config["concurrent"], int)
        assert config["listen_address"] == ":9252"


def test_helm_values_are_yaml_with_whole_numbers(rendered: tuple[str, Path]) -> None:
    _, out = rendered
    for path in (out / "values").glob("gitlab-runner-*.yaml"):
        values = yaml.safe_load(path.read_text())
        assert isinstance(values["concurrent"], int)
        assert isinstance(values["terminationGracePeriodSeconds"], int)
        template = tomllib.loads(values["runners"]["config"])
        assert len(template["runners"]) == 1


def test_policies_are_the_declared_documents(rendered: tuple[str, Path], lint_policy: Any) -> None:
    stack, out = rendered
    documents = {
        path.name: json.loads(path.read_text()) for path in (out / "policies").glob("*.json")
    }
    if stack in ("onprem", "basement"):
        assert documents == {}
        return
    assert {
        "cache-access-policy.json",
        "cache-tls-only.bucket-policy.json",
        "cache-access-irsa.trust.json",
    } <= set(documents)
    for name, document in documents.items():
        if name == "karpenter-controller.json":
            assert parliament_findings_karpenter_cannot_avoid(document) == []
        elif not name.endswith(".trust.json"):
            assert lint_policy(document) == [], name


def test_unknown_stack_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert render.main(["qa"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(
        "error: no stack 'qa': stacks/ has basement, dev, onprem, prod, staging"
    )
    assert "Traceback" not in error


def test_invalid_config_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document = yaml.safe_load((offline.REPO / "stacks" / "Pulumi.staging.yaml").read_text())
    document["config"]["gitlab-runner-fleet:pools"] = [
        {"name": "default", "minSize": 5, "maxSize": 2}
    ]
    stack_file = tmp_path / "Pulumi.staging.yaml"
    stack_file.write_text(yaml.safe_dump(document))
    out = tmp_path / "out"
    assert render.main(["--stack-file", str(stack_file), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "pools[0].minSize: must be <= pools[0].maxSize (2), got 5" in error
    assert "Traceback" not in error
    assert not out.exists()


def test_two_renders_of_a_stack_are_identical(tmp_path: Path) -> None:
    # Resources register in the order their inputs resolve; reviewers diff renders.
    first, second = tmp_path / "first", tmp_path / "second"
    assert render.main(["prod", "--out", str(first)]) == 0
    assert render.main(["prod", "--out", str(second)]) == 0
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_text() == (second / name).read_text(), name
