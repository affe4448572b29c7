"""Stack files exactly as `pulumi config set` writes them, read by `pulumi up` and offline.

Each case builds a stack file with the CLI's own format (tests/pulumi_cli.py), renders it
offline (render.py) and loads it as the program would at `pulumi up` (`load_settings` with the
config the CLI hands over): both must understand it, for every secret the stack files document.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

import render
from components.settings import FleetSettings, SettingsError, load_settings
from components.settings.base import Problem
from offline import config_from_stack_file, evaluate_config, read_stack_file
from tests.harness import PROJECT, REPO, run_program
from tests.pulumi_cli import config_set, program_config

STAGING = yaml.safe_load((REPO / "stacks" / "Pulumi.staging.yaml").read_text())


def stack_document(stack: str) -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text()))


def write(tmp_path: Path, document: dict[str, Any], stack: str = "qa") -> Path:
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def render_file(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    out = path.parent / "out"
    code = render.main(["--stack-file", str(path), "--out", str(out)])
    return code, capsys.readouterr().err, out


def loaded(document: dict[str, Any], stack: str = "qa") -> FleetSettings:
    """The settings the program loads at `pulumi up` from this stack file."""
    config, secret_keys = program_config(document)
    found: list[FleetSettings] = []
    run = run_program(
        lambda: found.append(load_settings()),
        config=config,
        secret_keys=secret_keys,
        stack=stack,
        region=None,
    )
    if run.error is not None:
        raise run.error
    return found[0]


# Every secret the shipped stack files tell the user to set, as their comments write it.
DOCUMENTED_SECRETS = [
    (
        "staging",
        [("runnerTokens.default", "glrt-staging"), ("runnerTokens.rootless", "glrt-rootless")],
    ),
    (
        "prod",
        [
            ("runnerTokens.default", "glrt-prod-default"),
            ("runnerTokens.arm64", "glrt-prod-arm64"),
            ("runnerTokens.large-memory", "glrt-prod-large"),
        ],
    ),
    ("dev", [("gitlabApiToken", "glpat-dev")]),
    (
        "onprem",
        [
            ("kubeconfig", json.dumps({"clusters": [{"name": "k3s"}]})),
            ("runnerTokens.office", "glrt-office"),
            ("cacheCredentials.accessKey", "minio-access"),
            ("cacheCredentials.secretKey", "minio-secret"),
        ],
    ),
    (
        "basement",
        [
            ("kubeconfig", json.dumps({"clusters": [{"name": "basement"}]})),
            ("runnerTokens.basement", "glrt-basement"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("stack", "secrets"), DOCUMENTED_SECRETS, ids=[s for s, _ in DOCUMENTED_SECRETS]
)
def test_secrets_set_as_the_stack_files_say_render_offline_and_load_at_pulumi_up(
    stack: str,
    secrets: list[tuple[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    document = stack_document(stack)
    for key, value in secrets:
        config_set(document, key, value, secret=True, path="." in key)
    assert document["encryptionsalt"].startswith("v1:")
    path = write(tmp_path, document, stack)

    code, err, out = render_file(path, capsys)
    assert code == 0, err
    # Every needed secret is set: nothing stands in for an absent one (an edge's hub outputs
    # are stand-ins, which the render says).
    assert "is not set in" not in err
    for _, value in secrets:
        for file in out.rglob("*"):
            assert not file.is_file() or value not in file.read_text(), file

    settings = loaded(document, stack)
    for key, _value in secrets:
        top, _, member = key.partition(".")
        holder = {
            "runnerTokens": settings.runner_tokens,
            "cacheCredentials": settings.cache_credentials,
        }.get(top)
        secret = (
            holder[member]
            if holder is not None
            else getattr(
                settings, {"gitlabApiToken": "gitlab_api_token", "kubeconfig": "kubeconfig"}[top]
            )
        )
        assert secret is not None
        assert repr(secret) == "Secret(****)"


def test_a_quoted_path_key_and_a_list_index_are_read_like_the_cli_writes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = stack_document("prod")
    config_set(document, 'runnerTokens["large-memory"]', "glrt-l", secret=True, path=True)
    config_set(document, "runnerTokens.default", "glrt-d", secret=True, path=True)
    config_set(document, "runnerTokens.arm64", "glrt-a", secret=True, path=True)
    config_set(document, "pools[1].maxSize", "25", path=True)
    config_set(document, "cache.versioning", "false", path=True)
    pools = document["config"][f"{PROJECT}:pools"]
    assert pools[1]["maxSize"] == 25
    assert document["config"][f"{PROJECT}:cache"]["versioning"] is False
    code, err, _ = render_file(write(tmp_path, document, "prod"), capsys)
    assert code == 0, err
    settings = loaded(document, "prod")
    assert settings.pools[1].max_size == 25
    assert settings.cache.versioning is False
    assert set(settings.runner_tokens) == {"default", "arm64", "large-memory"}


def test_the_secrets_providers_lines_are_part_of_a_stack_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = stack_document("staging")
    document["secretsprovider"] = "awskms://alias/pulumi-secrets?region=eu-west-1"
    document["encryptedkey"] = "AQICAHh0cmFuc2l0ZW5jcnlwdGVka2V5"
    config_set(document, "runnerTokens.default", "glrt-x", secret=True, path=True)
    config_set(document, "runnerTokens.rootless", "glrt-y", secret=True, path=True)
    code, err, _ = render_file(write(tmp_path, document), capsys)
    assert (code, err) == (0, "")


def test_a_secret_inside_a_list_is_found_and_refused_alike_offline_and_at_pulumi_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No setting in `pools` is a secret; one set with --secret could not be shown by the
    render or a merge request's preview, so both ways of running refuse it, name its key and
    never show its value (found trying it as a new user: `pulumi up` accepted what the render
    refused, and echoed the value of an invalid one)."""
    document = stack_document("staging")
    config_set(document, "runnerTokens.default", "glrt-x", secret=True, path=True)
    config_set(document, "runnerTokens.rootless", "glrt-y", secret=True, path=True)
    config_set(document, "pools[0].tags[0]", "team-secret-tag", secret=True, path=True)
    path = write(tmp_path, document)
    encrypted = read_stack_file(path)[f"{PROJECT}:pools"][0]["tags"][0]
    assert set(encrypted) == {"secure"}
    code, err, _ = render_file(path, capsys)
    assert code == 1
    assert "pools[0].tags[0]: is encrypted in the stack file" in err
    assert "`pulumi config set --path 'pools[0].tags[0]' <value>`" in err
    with pytest.raises(SettingsError) as at_up:
        loaded(document)
    assert at_up.value.problems == [
        Problem(
            "pools",
            "holds a value set with --secret (`secure:` in the stack file), but none of its "
            "settings is a secret, and neither the offline render nor a merge request's preview "
            "could show it: set that value again in plain text with "
            "`pulumi config set --path 'pools.<setting>' <value>`",
        )
    ]
    assert "team-secret-tag" not in err + str(at_up.value)


def test_an_encrypted_setting_that_is_no_secret_is_refused_offline_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = stack_document("staging")
    config_set(document, "runnerTokens.default", "glrt-x", secret=True, path=True)
    config_set(document, "cache.bucketName", "acme-ci-cache", secret=True, path=True)
    code, err, _ = render_file(write(tmp_path, document), capsys)
    assert code == 1
    assert "cache.bucketName: is encrypted in the stack file" in err
    assert "acme-ci-cache" not in err


def test_the_token_flows_from_the_stack_file_into_the_pools_secret_as_a_secret() -> None:
    document = stack_document("staging")
    config_set(document, "runnerTokens.default", "glrt-flows", secret=True, path=True)
    config_set(document, "runnerTokens.rootless", "glrt-rootless", secret=True, path=True)
    config, secret_keys = program_config(document)
    assert f"{PROJECT}:runnerTokens" in secret_keys
    run = evaluate_config(
        config_from_stack_file("staging")
        | {f"{PROJECT}:runnerTokens": json.loads(config[f"{PROJECT}:runnerTokens"])},
        stack="staging",
        secret_keys=secret_keys,
    )
    token = next(
        r
        for r in run.of_type("kubernetes:core/v1:Secret")
        if r.inputs["metadata"]["name"] == "gitlab-runner-default-token"
    )
    assert is_rpc_secret(token.inputs["stringData"])
    assert unwrap_rpc_secret(token.inputs["stringData"])["runner-token"] == "glrt-flows"


def test_a_pool_without_a_token_is_an_error_once_any_token_is_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = stack_document("prod")
    config_set(document, "runnerTokens.default", "glrt-d", secret=True, path=True)
    config_set(document, "runnerTokens.arm64", "glrt-a", secret=True, path=True)
    code, err, _ = render_file(write(tmp_path, document, "prod"), capsys)
    assert code == 1
    assert "runnerTokens.large-memory: required" in err
    with pytest.raises(SettingsError, match=r"runnerTokens\.large-memory: required"):
        loaded(document, "prod")


def test_no_tokens_at_all_render_with_stand_ins_and_a_warning_per_pool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, _ = render_file(write(tmp_path, stack_document("prod"), "prod"), capsys)
    assert code == 0
    assert [line.split(" is not set")[0] for line in err.splitlines()] == [
        "warning: runnerTokens.default",
        "warning: runnerTokens.arm64",
        "warning: runnerTokens.large-memory",
    ]
    with pytest.raises(SettingsError, match="runnerTokens: required"):
        loaded(stack_document("prod"), "prod")


def test_secrets_set_whole_as_json_render_offline_and_load_at_pulumi_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pulumi config set --secret runnerTokens '{"default": ...}'` encrypts the JSON text as
    one value; `pulumi up` decrypts it into the object, so the render stands in for each of
    its members rather than refusing its shape (found trying it as a new user)."""
    document = stack_document("onprem")
    tokens = json.dumps({"office": "glrt-whole-json"})
    config_set(document, "runnerTokens", tokens, secret=True)
    credentials = json.dumps({"accessKey": "AKIAWHOLE", "secretKey": "whole-json-secret"})
    config_set(document, "cacheCredentials", credentials, secret=True)
    config_set(document, "kubeconfig", '{"clusters": []}', secret=True)
    path = write(tmp_path, document, "onprem")
    code, err, out = render_file(path, capsys)
    assert code == 0, err
    rendered = "".join(f.read_text() for f in out.rglob("*") if f.is_file())
    assert "whole-json" not in rendered
    assert loaded(document, "onprem").runner_tokens.keys() == {"office"}


def test_the_retired_token_key_is_told_where_it_moved_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not first told to store the encrypted token in plain text (found trying it as a new
    user)."""
    document = stack_document("staging")
    config_set(document, "runnerToken", "glrt-retired", secret=True)
    code, err, _ = render_file(write(tmp_path, document), capsys)
    assert code == 1
    assert "runnerToken: moved to one token per pool" in err
    assert "plain text" not in err


def test_plain_scalars_resolve_as_pulumis_yaml_reader_resolves_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI reads stack files with gopkg.in/yaml.v3 (YAML 1.2 core schema): `yes` and `on`
    are strings, so a label value `yes` is a string at `pulumi up` and must be offline too; a
    date stays the text written (yaml.v3 decode.go keeps timestamps as strings for `any`), not
    a Python date the render cannot serialise (found in review: a traceback)."""
    text = (
        (REPO / "stacks" / "Pulumi.prod.yaml")
        .read_text()
        .replace(
            "config:\n",
            "config:\n  aws:defaultTags:\n    tags:\n      created: 2025-01-15\n      backup: on\n",
            1,
        )
    )
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(text)
    config = read_stack_file(path)
    assert config["aws:defaultTags"] == {"tags": {"created": "2025-01-15", "backup": "on"}}
    document = yaml.safe_load(text)
    document["config"][f"{PROJECT}:pools"][0]["labels"] = {"spot": "yes"}
    unquoted = yaml.safe_dump(document, sort_keys=False).replace("spot: 'yes'", "spot: yes")
    path.write_text(unquoted)
    assert read_stack_file(path)[f"{PROJECT}:pools"][0]["labels"] == {"spot": "yes"}
    code, err, _ = render_file(path, capsys)
    assert code == 0, err


def test_other_providers_keys_are_left_to_their_providers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the project's own namespace is checked: the kubernetes, gitlab and aws providers
    read their keys themselves (a key of theirs the fleet does not know is no mistake)."""
    document = stack_document("onprem")
    for key, value in {
        "kubernetes:context": "office",
        "gitlab:baseUrl": "https://gitlab.example.com/api/v4",
        "aws:profile": "ci",
    }.items():
        config_set(document, key, value)
    config_set(document, "runnerTokens.office", "glrt-office", secret=True, path=True)
    config_set(document, "cacheCredentials.accessKey", "AKIAOFFICE", secret=True, path=True)
    config_set(document, "cacheCredentials.secretKey", "office-secret", secret=True, path=True)
    config_set(document, "kubeconfig", '{"clusters": []}', secret=True)
    code, err, _ = render_file(write(tmp_path, document, "onprem"), capsys)
    assert code == 0, err
    assert not [line for line in err.splitlines() if "context" in line or "baseUrl" in line]
    assert loaded(document, "onprem").cluster.mode == "kubeconfig"
