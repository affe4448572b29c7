"""Which service images a pool admits, with the runner's own matching rules.

The runner admits a service when a doublestar glob of `allowed_services` matches its name, or
when the name is its default or helper image; with no list it admits anything
(common/allowed_images.go VerifyAllowedImage, executors/kubernetes/kubernetes.go
verifyAllowedImages, runner 19.3). Names are matched after variable expansion
(common/build.go) and are not normalised: `docker:dind` and `docker.io/library/docker:dind`
are different strings.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pytest

from components.settings import SettingsError
from components.workloads.runner_config import (
    allowed_services,
    dind_service_patterns,
    security_contexts,
)
from tests.doublestar import match
from tests.test_runner_config import POOL, rendered, settings_of

DEPENDENCY_PROXY = "gitlab.example.com:443/my-group/dependency_proxy/containers"
HELPER_REPOSITORY = "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper"
HELPER_IMAGE = f"{HELPER_REPOSITORY}:x86_64-v19.3.0"


def admitted(name: str, allowed: Sequence[str], internal: Sequence[str] = ()) -> bool:
    """VerifyAllowedImage: a matching glob, one of the runner's own images, or no list."""
    return any(match(pattern, name) for pattern in allowed) or name in internal or not allowed


@functools.cache
def _allowed_services(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    runner = {"dindRegistryPrefixes": list(prefixes)} if prefixes else {}
    kubernetes = rendered(settings_of({"runner": runner}))["kubernetes"]
    return tuple(kubernetes["allowed_services"])


def dind_pool_allowed_services(*registry_prefixes: str) -> list[str]:
    """A dind pool's rendered allowed_services (with `runner.dindRegistryPrefixes`)."""
    return list(_allowed_services(registry_prefixes))


ADMITTED = [
    "docker:dind",
    "docker:27-dind",
    "docker:29.7.2-dind",
    "docker.io/docker:27-dind",
    "docker.io/library/docker:27-dind",
    "docker.io/library/docker:dind",
    f"{DEPENDENCY_PROXY}/docker:27-dind",
    f"{DEPENDENCY_PROXY}/docker:dind",
]
REFUSED = [
    "docker:27-cli",
    "docker:latest",
    "docker:27-dind-rootless",
    "docker:27-dind@sha256:5b5e3a1ad2b1c4e9f0d6a7c8b9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2",
    "mydocker:dind",
    "postgres:16",
    "evil.example.com/docker:27-dind",
    "docker.io/evil/docker:27-dind",
    "docker.io/library/docker/evil:27-dind",
    "registry.example.com/library/docker:dind",
    # Also Docker Hub, but not a spelling the list names: add it to allowedServices if used.
    "index.docker.io/library/docker:27-dind",
    f"{DEPENDENCY_PROXY}/evil/docker:27-dind",
    "gitlab.example.com:443/other-group/dependency_proxy/containers/docker:27-dind",
]


@pytest.mark.parametrize("name", ADMITTED)
def test_the_official_dind_image_is_admitted_in_every_spelling(name: str) -> None:
    # `*` never crosses `/` (doublestar), so `docker:*-dind` alone refuses the fully
    # qualified names Docker Hub also accepts.
    assert admitted(name, dind_pool_allowed_services(DEPENDENCY_PROXY))


@pytest.mark.parametrize("name", REFUSED)
def test_every_other_service_stays_refused_in_a_dind_pool(name: str) -> None:
    allowed = dind_pool_allowed_services(DEPENDENCY_PROXY)
    assert not admitted(name, allowed)


@pytest.mark.parametrize(
    "name",
    ["docker:27-dind", "docker.io/docker:27-dind", "docker.io/library/docker:27-dind"],
)
def test_docker_hubs_spellings_need_no_setting(name: str) -> None:
    assert admitted(name, dind_pool_allowed_services())


def test_without_a_prefix_the_dependency_proxy_is_refused() -> None:
    assert not admitted(f"{DEPENDENCY_PROXY}/docker:27-dind", dind_pool_allowed_services())


def test_the_runners_own_images_are_admitted_and_privileged_whatever_the_list_says() -> None:
    # verifyAllowedImages adds the config's `image` and `helperImageInfo.Name` (the helper's
    # repository, without its tag) as internal images, compared exactly (slices.Contains in
    # common/allowed_images.go); preparePodServices gives every service
    # service_container_security_context (executors/kubernetes/kubernetes.go, v19.3.0).
    settings = settings_of({})
    kubernetes = rendered(settings)["kubernetes"]
    internal = [kubernetes["image"], HELPER_REPOSITORY]
    for image in internal:
        assert not any(match(pattern, image) for pattern in kubernetes["allowed_services"])
        assert admitted(image, kubernetes["allowed_services"], internal)
    # The helper as the runner runs it, with its version tag, is no internal image.
    assert not admitted(HELPER_IMAGE, kubernetes["allowed_services"], internal)
    assert kubernetes["service_container_security_context"] == {"privileged": True}


@pytest.mark.parametrize(
    "prefix",
    [
        "gitlab.example.com:443/*/dependency_proxy/containers",
        "gitlab.example.com/**",
        "https://gitlab.example.com/group/dependency_proxy/containers",
        "gitlab.example.com/group/",
        "",
    ],
)
def test_a_prefix_that_would_widen_the_list_is_refused(prefix: str) -> None:
    with pytest.raises(SettingsError, match=r"runner\.dindRegistryPrefixes: must"):
        settings_of({"runner": {"dindRegistryPrefixes": [prefix]}})


def test_rootless_pools_keep_their_own_list() -> None:
    assert dind_service_patterns() == [
        "docker:dind",
        "docker:*-dind",
        "docker.io/docker:dind",
        "docker.io/docker:*-dind",
        "docker.io/library/docker:dind",
        "docker.io/library/docker:*-dind",
    ]
    rootless = settings_of({"pools": [{**POOL, "buildMode": "rootless"}]})
    spec = rootless.pool_job_spec(rootless.pools[0])
    assert allowed_services(spec) is None
    assert security_contexts("rootless")["service_container_security_context"] == {
        "privileged": False
    }


def test_a_variable_as_prefix_is_refused_because_the_runner_matches_it_as_written() -> None:
    """`$CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX` is what a job writes; in allowed_services the
    runner would compare the literal text (common/allowed_images.go VerifyAllowedImage: only
    the image name is expanded), so the dependency proxy's dind would stay refused (found
    trying it as a new user)."""
    variable = "$CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX"
    literal = f"{variable}/docker:27-dind"
    expanded = f"{DEPENDENCY_PROXY}/docker:27-dind"
    assert not admitted(expanded, dind_service_patterns([variable]))
    assert admitted(literal, dind_service_patterns([variable]))  # only the unexpanded text
    with pytest.raises(SettingsError, match="must be the expanded path, not a variable"):
        _allowed_services((variable,))
