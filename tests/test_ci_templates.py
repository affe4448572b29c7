"""The job templates projects include from ci/templates/: valid GitLab CI, and doing what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from components.settings.site import ANY_SITE_TAG
from components.workloads.isolation import PodSecurityLevel, pod_security_violations
from components.workloads.runner_config import DIND_ENVIRONMENT
from offline import REPO
from tests.test_runner_config import rendered, stack_settings

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


def buildkit_rootless() -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load((TEMPLATES / "buildkit-rootless.yml").read_text())[
        ".buildkit-rootless"
    ]
    return job


def container_security_context(config: dict[str, Any]) -> dict[str, Any]:
    """A container securityContext as the runner builds it from a config.toml table
    (common/config.go GetContainerSecurityContext), NET_RAW dropped by default
    (executors/kubernetes/kubernetes.go)."""
    return {
        "capabilities": {"drop": ["NET_RAW"]},
        "privileged": config["privileged"],
        **(
            {"allowPrivilegeEscalation": config["allow_privilege_escalation"]}
            if "allow_privilege_escalation" in config
            else {}
        ),
    }


def rootless_buildkit_pod(build_context: dict[str, Any] | None = None) -> dict[str, Any]:
    """staging's rootless pool running the template's job: the pod the runner would create."""
    settings = stack_settings("staging")
    kubernetes = rendered(settings, "rootless")["kubernetes"]
    job = buildkit_rootless()
    image = expand(job["image"]["name"], job["variables"])
    helper = container_security_context(kubernetes["helper_container_security_context"])
    build = container_security_context(kubernetes["build_container_security_context"])
    return {
        "metadata": {"name": "runner-abc-project-1-concurrent-0"},
        "spec": {
            "initContainers": [{"name": "init-permissions", "securityContext": helper}],
            "containers": [
                {"name": "build", "image": image, "securityContext": build_context or build},
                {"name": "helper", "securityContext": helper},
            ],
            "volumes": [{"name": n, "emptyDir": {}} for n in ("repo", "scripts", "logs")],
        },
    }


def test_the_rootless_buildkit_template_passes_its_namespaces_pod_security() -> None:
    settings = stack_settings("staging")
    (namespace,) = [
        spec for spec in settings.job_namespace_specs if spec["name"].endswith("rootless")
    ]
    assert namespace["pod_security_level"] == "baseline"
    level: PodSecurityLevel = "baseline"
    assert pod_security_violations(rootless_buildkit_pod(), level) == []
    # BuildKit's own rootless example (examples/kubernetes/job.rootless.yaml) sets these, which
    # baseline refuses (pod-security-admission policy/check_seccompProfile_baseline.go,
    # check_appArmorProfile.go).
    upstream = {
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "seccompProfile": {"type": "Unconfined"},
        "appArmorProfile": {"type": "Unconfined"},
    }
    assert pod_security_violations(rootless_buildkit_pod(upstream), level) == [
        "appArmorProfile",
        "seccompProfile_baseline",
    ]


def test_the_rootless_buildkit_template_runs_what_baseline_allows() -> None:
    job = buildkit_rootless()
    assert expand(job["image"]["name"], job["variables"]) == "moby/buildkit:v0.32.2-rootless"
    assert job["image"]["entrypoint"] == [""]
    # docs/rootless.md: without a process sandbox BuildKit needs no fresh /proc mount, which
    # Kubernetes offers only with procMount: Unmasked and user namespaces.
    assert job["variables"]["BUILDKITD_FLAGS"] == "--oci-worker-no-process-sandbox"
    assert "services" not in job
    assert any("buildctl-daemonless.sh build" in line for line in job["script"])
    # rootlesskit's setuid newuidmap needs privilege escalation in the build container.
    build = rendered(stack_settings("staging"), "rootless")["kubernetes"][
        "build_container_security_context"
    ]
    assert build["allow_privilege_escalation"] is True
    assert build["privileged"] is False
