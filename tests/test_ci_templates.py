"""The job templates projects include from ci/templates/: valid GitLab CI, and doing what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from components.settings.site import ANY_SITE_TAG
from components.workloads.runner_config import DIND_ENVIRONMENT
from offline import REPO

TEMPLATES = REPO / "ci" / "templates"


def template_files() -> list[Path]:
    return sorted(p for p in TEMPLATES.iterdir() if p.suffix in (".yml", ".yaml"))


def docker_build() -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load((TEMPLATES / "docker-build.yml").read_text())[
        ".docker-build"
    ]
    return job


def expand(value: str, variables: dict[str, str]) -> str:
    """GitLab's `${VAR}` expansion, enough for image and service names."""
    for name, replacement in variables.items():
        value = value.replace(f"${{{name}}}", replacement).replace(f"${name}", replacement)
    return value


def test_every_template_passes_the_gitlab_ci_schema() -> None:
    files = template_files()
    assert TEMPLATES / "docker-build.yml" in files
    assert all(p.suffix in (".yml", ".yaml") for p in TEMPLATES.iterdir() if p.is_file())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.gitlab-ci",
            *map(str, files),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_including_the_docker_build_template_adds_no_job() -> None:
    # A hidden job (leading dot) runs only through `extends`.
    assert list(yaml.safe_load((TEMPLATES / "docker-build.yml").read_text())) == [".docker-build"]


def test_the_job_waits_for_dockerd_on_its_tls_port() -> None:
    job = docker_build()
    (service,) = job["services"]
    variables = job["variables"]
    # The executor waits for a service only when it sets HEALTHCHECK_TCP_PORT
    # (executors/kubernetes/kubernetes.go, waitForServices, runner v19.3.0); dind listens with
    # TLS on 2376 when DOCKER_TLS_CERTDIR is set (docker-library dockerd-entrypoint.sh).
    assert service["variables"]["HEALTHCHECK_TCP_PORT"] == "2376"
    assert variables["DOCKER_HOST"] == f"tcp://{service['alias']}:2376"
    assert service["alias"] == "docker"


def test_dind_variables_match_the_runner_config() -> None:
    variables = docker_build()["variables"]
    runner = dict(entry.split("=", 1) for entry in DIND_ENVIRONMENT)
    assert {name: variables[name] for name in runner} == runner


def test_client_and_daemon_are_the_same_pinned_docker() -> None:
    job = docker_build()
    variables = job["variables"]
    assert variables["DOCKER_VERSION"] == "29.7.2"
    assert expand(job["image"], variables) == "docker:29.7.2-cli"
    assert expand(job["services"][0]["name"], variables) == "docker:29.7.2-dind"


def test_spot_interruptions_are_retried() -> None:
    retry = docker_build()["retry"]
    # Either a matching failure reason or a matching exit code retries the job (GitLab
    # lib/gitlab/ci/build/auto_retry.rb: retry_on_reason_or_always? || retry_on_exit_code?).
    assert retry == {
        "max": 2,
        "when": ["runner_system_failure", "unknown_failure"],
        "exit_codes": [137, 143],
    }


def test_the_site_affinity_template_uses_the_tag_every_sites_runners_carry() -> None:
    # The stack gives every site's runners ANY_SITE_TAG; the template's first job asks for it.
    template = yaml.safe_load((TEMPLATES / "site-affinity.yml").read_text())
    assert template["variables"]["SITE_ANY_TAG"] == ANY_SITE_TAG
