"""render.py: the offline review render of each stack."""

import base64
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.runtime import resource as pulumi_resource

import offline
import render
from components.settings.secrets import STAND_IN_RUNNER_TOKEN
from components.workloads.mirror_config import (
    DOCKER_HUB_HOSTS_TOML,
    DOCKER_HUB_URL,
    containerd_hosts_toml,
)
from offline import stack_names
from tests.harness import REPO, run_stack
from tests.test_iam_documents import parliament_findings_karpenter_cannot_avoid
from tests.test_registry_mirror import parliament_findings_the_mirror_cannot_avoid


@pytest.fixture(scope="module", params=stack_names())
def rendered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    stack: str = request.param
    out = tmp_path_factory.mktemp(stack)
    # The stack's evaluation as the other tests share it; the CLI itself is tested below.
    render.write_render(run_stack(stack), out)
    return stack, out


def test_every_resource_is_listed_with_its_properties(rendered: tuple[str, Path]) -> None:
    stack, out = rendered
    listed = json.loads((out / "resources.json").read_text())
    assert len(listed) == len(run_stack(stack).resources)
    runners = [
        r
        for r in listed
        if r["type"] == "kubernetes:helm.sh/v3:Release" and r["name"].startswith("gitlab-runner-")
    ]
    assert runners
    for runner in runners:
        assert runner["properties"]["chart"] == "gitlab-runner"
        # Its parent by type and name: each pool has a GitlabRunner of its own.
        assert runner["parent"] == f"gitlab-runner-fleet:index:GitlabRunner::{runner['name']}"


def test_the_readme_states_each_stacks_resource_count(rendered: tuple[str, Path]) -> None:
    stack, out = rendered
    count = len(json.loads((out / "resources.json").read_text()))
    counts = (REPO / "README.md").read_text().split("Resource counts today: ", 1)[1]
    assert f"{stack} {count}" in counts.split(".", 1)[0], "update the README's resource counts"


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
        elif name == "registry-mirror-access-policy.json":
            assert parliament_findings_the_mirror_cannot_avoid(document) == []
        elif not name.endswith(".trust.json"):
            assert lint_policy(document) == [], name


def test_a_reviewer_reads_outputs_and_embedded_documents_as_files(
    rendered: tuple[str, Path],
) -> None:
    """What a merge request reviewer must check is a file of its own, readable as it is."""
    stack, out = rendered
    run = run_stack(stack)
    outputs = json.loads((out / "outputs.json").read_text())
    assert set(outputs) == set(run.outputs)
    for name in run.secret_outputs:
        assert outputs[name] == "[secret]", name
    for path in out.rglob("*"):
        if path.is_file():
            assert "None" not in path.read_text(), f"a None stand-in in {path}"
    if "registryMirror" in run.outputs:
        config = out / "files/ConfigMap/registry-mirror/registry-mirror-config/config.yml"
        assert yaml.safe_load(config.read_text())["proxy"]["remoteurl"] == DOCKER_HUB_URL
    # Each file a ConfigMap carries (rclone.conf, config.yml, daemon.json, the dashboard) is a
    # file of its own, JSON pretty-printed: on one line a 15 kB document is unreviewable.
    for config_map in run.of_type("kubernetes:core/v1:ConfigMap"):
        metadata = config_map.inputs["metadata"]
        folder = out / "files/ConfigMap" / metadata.get("namespace", "cluster") / metadata["name"]
        for key, text in config_map.inputs.get("data", {}).items():
            written = (folder / key).read_text()
            if key.endswith(".json"):
                assert json.loads(written) == json.loads(text), key
                assert written == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
            else:
                assert written == text, key
    for policy in (out / "policies").glob("*.json"):
        text = policy.read_text()
        assert text == json.dumps(json.loads(text), indent=2) + "\n", policy.name


def test_each_nodes_user_data_is_decoded_with_the_files_it_writes(
    rendered: tuple[str, Path],
) -> None:
    """The containerd mirror config a reviewer must check, readable: each launch template's
    and EC2NodeClass's user data as MIME text, with the files its script writes."""
    stack, out = rendered
    run = run_stack(stack)
    templates = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    node_classes = run.of_type("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")
    for template in [*templates, *node_classes]:
        folder = out / "user-data" / template.name
        mime = (folder / "user-data.mime").read_text()
        if template in templates:
            assert mime == base64.b64decode(template.inputs["userData"]).decode()
        else:
            assert mime == template.inputs["spec"]["userData"]
        if node_url := run.outputs.get("registryMirrorNodeUrl"):
            # containerd's hosts.toml as the node's script writes it (mirror_config.py).
            hosts = folder / DOCKER_HUB_HOSTS_TOML.lstrip("/")
            assert hosts.read_text().strip() == containerd_hosts_toml(node_url).strip()
    listed = json.loads((out / "resources.json").read_text())
    launched = [
        group["properties"]["launchTemplate"]
        for group in listed
        if group["type"] == "aws:eks/nodeGroup:NodeGroup"
        and "launchTemplate" in group["properties"]
    ]
    assert len(launched) == len(templates)
    # Each template's own version number, not a stand-in for an unknown.
    assert all(template["version"].isdigit() for template in launched), launched


def test_build_nodes_without_the_cni_policy_render_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cluster.nodeCniPolicy: false` rests on the real cluster's vpc-cni add-on having a role
    of its own, which only `pulumi up` can read: the render assumes it and says so, instead of
    refusing every such stack in the merge-request render job (found trying it as a new user)."""
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.staging.yaml").read_text())
    document["config"]["gitlab-runner-fleet:cluster"]["nodeCniPolicy"] = False
    stack_file = tmp_path / "Pulumi.staging.yaml"
    stack_file.write_text(yaml.safe_dump(document))
    out = tmp_path / "out"
    assert render.main(["--stack-file", str(stack_file), "--out", str(out)]) == 0
    assert offline.NODE_CNI_POLICY_STAND_IN in capsys.readouterr().err
    listed = json.loads((out / "resources.json").read_text())
    attachments = [
        r["properties"]["policyArn"]
        for r in listed
        if r["type"] == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
        and r["name"].startswith("build-nodes-")
    ]
    assert attachments
    assert not [arn for arn in attachments if arn.endswith("AmazonEKS_CNI_Policy")]
    # Decided as the settings read the value: a quoted "false" is false there too.
    quoted = {"gitlab-runner-fleet:cluster": {"mode": "existing", "nodeCniPolicy": "false"}}
    assert offline.vpc_cni_stand_in(quoted) is not None
    assert offline.vpc_cni_stand_in({"gitlab-runner-fleet:cluster": {"mode": "existing"}}) is None


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
    render.write_render(run_stack("prod"), first)
    assert render.main(["prod", "--out", str(second)]) == 0
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_text() == (second / name).read_text(), name


def test_a_run_leaves_the_sdks_stack_traces_as_it_found_them() -> None:
    """The mocks skip the stack trace each registration carries (offline.run_program); a
    program run after them in the same process, under the real engine, still sends it,
    whether the run succeeded, failed or raised."""

    def failing() -> None:
        raise RuntimeError("a program that fails")

    offline.evaluate_stack("onprem")
    assert pulumi_resource._get_stack_trace is offline._SDK_STACK_TRACE
    assert offline.run_program(failing, return_error=True).error is not None
    assert pulumi_resource._get_stack_trace is offline._SDK_STACK_TRACE
    with pytest.raises(RuntimeError, match="a program that fails"):
        offline.run_program(failing)
    assert pulumi_resource._get_stack_trace is offline._SDK_STACK_TRACE
    assert offline._SDK_STACK_TRACE.__module__ == "pulumi.runtime.resource"


def test_a_render_replaces_the_previous_one_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files of a removed pool must not linger in the next render (found trying it as a new
    user); a directory that is not a render is never emptied."""
    out = tmp_path / "out"
    run = run_stack("onprem")
    render.write_render(run, out)
    stale = out / "runner" / "removed-pool" / "config.toml"
    stale.parent.mkdir()
    stale.write_text("")
    assert render.main(["onprem", "--out", str(out)]) == 0
    assert not stale.exists()
    assert (out / "runner" / "office" / "config.toml").is_file()
    assert "onprem: 25 resources, 1 Helm release, " in capsys.readouterr().out
    # The same evaluation again (already checked above); what is tested is the target.
    monkeypatch.setattr(render, "evaluate_config", lambda *_, **__: run)
    elsewhere = tmp_path / "project"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    assert render.main(["onprem", "--out", str(elsewhere)]) == 2
    assert "holds files that are not a render" in capsys.readouterr().err
    assert (elsewhere / "notes.txt").read_text() == "mine"
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert render.main(["onprem", "--out", str(blocked / "out")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_any_stack_file_pulumi_accepts_renders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stack name with capitals, `_` and `.` (pulumi/pulumi tokens/stack_name.go allows
    them; Kubernetes names do not), a key in the legacy `<namespace>:config:<name>` form
    (config/key.go ParseKey), and an ESC environment, which the render says it cannot read
    (found in review: a deep component error, a wrong fix, silence)."""
    text = (REPO / "stacks" / "Pulumi.staging.yaml").read_text()
    text = text.replace("gitlab-runner-fleet:runner:", "gitlab-runner-fleet:config:runner:")
    path = tmp_path / "Pulumi.Qa_EU.v2.yaml"
    path.write_text("environment:\n  - platform/ci-secrets\n" + text)
    out = tmp_path / "out"
    assert render.main(["--stack-file", str(path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "imports the ESC environment platform/ci-secrets" in err
    release = yaml.safe_load((out / "values" / "cluster-autoscaler.yaml").read_text())
    assert release["fullnameOverride"] == "cluster-autoscaler-gitlab-runner-fleet-qa-eu-v2"


def test_errors_name_the_stack_file_given_and_the_project_file_is_no_stack_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "Pulumi.qa.yaml"
    path.write_text("config:\n  gitlab-runner-fleet:clusterAutoscalar: {}\n")
    assert render.main(["--stack-file", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"Fix these in {path} or with `pulumi config set" in err
    path.write_text("")
    assert render.main(["--stack-file", str(path)]) == 1
    assert f"{path} (it holds no config yet)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        render.main(["--stack-file", "Pulumi.yaml"])
    assert exited.value.code == 2
    assert "Pulumi.yaml is the project file, not a stack file" in capsys.readouterr().err
    project_file = tmp_path / "Pulumi.ci.yaml"
    project_file.write_text((REPO / "Pulumi.yaml").read_text())
    assert render.main(["--stack-file", str(project_file)]) == 2
    assert "is the project file (it names a runtime), not a stack file" in (capsys.readouterr().err)


def test_a_new_edge_site_renders_against_its_hubs_stack_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hub's outputs come from its own stack file: an edge the hub does not list is told
    how to get a credential; an edge whose hub is elsewhere renders with placeholders (found
    trying it as a new user: a bare KeyError)."""
    text = (
        (REPO / "stacks" / "Pulumi.basement.yaml")
        .read_text()
        .replace("name: basement", "name: garage")
    )
    garage = tmp_path / "Pulumi.garage.yaml"
    garage.write_text(text)
    assert render.main(["--stack-file", str(garage), "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert (
        "the hub stack example-org/gitlab-runner-fleet/prod exports no credential for the edge "
        "'garage' (it has: basement). Add 'garage' to the hub's site.edges" in err
    )
    assert "Traceback" not in err
    garage.write_text(text.replace("gitlab-runner-fleet/prod", "gitlab-runner-fleet/hq"))
    assert render.main(["--stack-file", str(garage), "--out", str(tmp_path / "b")]) == 0
    assert "no readable stack file for the hub 'example-org/gitlab-runner-fleet/hq'" in (
        capsys.readouterr().err
    )


def test_an_edge_renders_its_hubs_replicate_globs() -> None:
    hub = offline.hub_stand_in(offline.config_from_stack_file("basement"))
    assert hub is not None
    prod_site = offline.config_from_stack_file("prod")["gitlab-runner-fleet:site"]
    assert hub.outputs["siteHub"]["replicate"] == prod_site["replicate"]
    assert list(hub.outputs["siteEdgeCredentials"]) == prod_site["edges"]
