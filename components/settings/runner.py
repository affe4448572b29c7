"""`runner`: what every pool's runner manager shares (GitLab, namespace, job policy)."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from ..conventions import (
    DEFAULT_RUNNER_NAMESPACE,
    DEFAULT_RUNNER_SERVICE_ACCOUNT,
    DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
)
from ..kubernetes_names import NamespaceName, ServiceAccountName
from ..workloads.isolation import BuildMode
from ..workloads.runner_config import (
    DEFAULT_CHECK_INTERVAL,
    DEFAULT_OUTPUT_LIMIT_KIB,
    registry_prefix_problems,
)
from .base import GoDuration, Problem, Section

_HTTP_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_FEATURE_FLAG = re.compile(r"^FF_[A-Z0-9_]+$")
PullPolicy = Literal["always", "if-not-present", "never"]


class RunnerSettings(Section):
    """What every pool's runner manager shares: GitLab, its namespace, and the job policy."""

    config_key: ClassVar[str] = "runner"

    gitlab_url: str = Field(
        "https://gitlab.com/", description="URL of the GitLab instance the runners serve."
    )
    namespace: NamespaceName = Field(
        DEFAULT_RUNNER_NAMESPACE,
        description="Namespace of the runner managers and their token Secrets; jobs run in "
        "`<namespace>-jobs-<buildMode>` namespaces of their own.",
    )
    service_account_name: ServiceAccountName = Field(
        DEFAULT_RUNNER_SERVICE_ACCOUNT,
        description="Service account every pool's manager runs as; the cache IRSA role trusts it.",
    )
    build_mode: BuildMode = Field(
        "dind",
        description="Default build mode of the pools. `dind`: Docker-in-Docker, only `docker:dind` "
        "services are privileged. `rootless`: nothing is privileged (BuildKit rootless, kaniko).",
    )
    check_interval: int = Field(
        DEFAULT_CHECK_INTERVAL, ge=1, le=3600, description="Seconds between checks for new jobs."
    )
    request_concurrency: int = Field(
        4, ge=1, le=100, description="Concurrent requests for new jobs to GitLab, per pool."
    )
    poll_interval: int = Field(
        3, ge=1, le=300, description="Seconds between checks of a job pod's state."
    )
    poll_timeout: int = Field(
        600,
        ge=30,
        le=3600,
        description="Seconds a job pod may wait to start. Long enough for a spot node to be "
        "launched from zero (2-4 minutes).",
    )
    default_image: str = Field(
        "alpine:3.22", description="Image of jobs that name none (`image:` in .gitlab-ci.yml)."
    )
    termination_grace_period_seconds: int = Field(
        DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
        ge=0,
        le=86400,
        description="How long a stopping manager pod waits for running jobs to finish.",
    )
    fast_zip: bool = Field(
        True, description="`FF_USE_FASTZIP`: the faster archiver for cache and artifacts."
    )
    cache_compression_level: Literal["fastest", "fast", "default", "slow", "slowest"] = Field(
        "fast", description="`CACHE_COMPRESSION_LEVEL` with fastzip."
    )
    transfer_meter_frequency: GoDuration = Field(
        "5s", description="`TRANSFER_METER_FREQUENCY`: progress lines during long transfers."
    )
    feature_flags: dict[str, bool] = Field(
        default_factory=dict,
        description="Extra runner feature flags for `[runners.feature_flags]`, which jobs cannot "
        "override with `FF_*` variables.",
    )
    output_limit_kib: int = Field(
        DEFAULT_OUTPUT_LIMIT_KIB,
        ge=64,
        le=1048576,
        description="`output_limit`: the largest job log kept, in KiB (the runner's own default "
        "is 4096).",
    )
    allowed_images: list[str] | None = Field(
        None,
        description="`allowed_images`: globs of the images jobs may use (e.g. `registry.example."
        "com/**`). Default: any image.",
    )
    allowed_services: list[str] | None = Field(
        None,
        description="`allowed_services`: globs of the service images jobs may start. `dind` pools "
        "always allow `docker:dind` and `docker:*-dind`, also as `docker.io/docker:...` and "
        "`docker.io/library/docker:...` and under `dindRegistryPrefixes`. Every service of a "
        "`dind` pool runs privileged, and the runner admits the default job image (and the "
        "helper's untagged repository name) whatever this says. Default: any service in "
        "`rootless` pools, only dind in `dind`.",
    )
    dind_registry_prefixes: list[str] = Field(
        default_factory=list,
        description="Registry paths `dind` pools also admit the official `docker:dind` and "
        "`docker:*-dind` from, e.g. GitLab's dependency proxy "
        "`gitlab.example.com:443/my-group/dependency_proxy/containers` (what "
        "`$CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX` expands to).",
    )
    allowed_pull_policies: list[PullPolicy] | None = Field(
        None,
        description="`allowed_pull_policies`: the pull policies jobs may ask for. Default: any.",
    )

    @field_validator("gitlab_url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        if not _HTTP_URL.match(url):
            raise ValueError(
                f"must be an http(s) URL such as https://gitlab.example.com/, got {url!r}"
            )
        return url

    def cross_field_problems(self) -> list[Problem]:
        return [
            self._problem("dind_registry_prefixes", problem)
            for prefix in self.dind_registry_prefixes
            for problem in registry_prefix_problems(prefix)
        ] + [
            self._problem(
                "feature_flags",
                f"{name!r} is not a runner feature flag name (FF_ followed by capitals, digits "
                "and underscores, e.g. FF_USE_FASTZIP)",
            )
            for name in self.feature_flags
            if not _FEATURE_FLAG.match(name)
        ]

    def job_environment(self) -> list[str]:
        """Job variables that tune cache transfers and show their progress."""
        return [
            f"CACHE_COMPRESSION_LEVEL={self.cache_compression_level}",
            f"TRANSFER_METER_FREQUENCY={self.transfer_meter_frequency}",
        ]

    def job_feature_flags(self) -> dict[str, bool]:
        """`[runners.feature_flags]`: the runner's settings, which job variables cannot change.

        The runner renews an expiring token into its own config.toml only, an emptyDir in the
        chart; after a restart the chart registers again with the Secret's old, revoked token
        (commands/multi.go resetOneRunnerToken; chart templates/configmap.yaml). Tokens are
        renewed by the stack instead (`gitlab.rotateTokenDays`, or a new `runnerTokens` value).
        """
        return {
            "FF_USE_FASTZIP": self.fast_zip,
            "FF_DISABLE_AUTOMATIC_TOKEN_ROTATION": True,
            **self.feature_flags,
        }
