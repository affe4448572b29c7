"""One typed, validated model of a stack's whole configuration.

Stack files (`stacks/Pulumi.<stack>.yaml`) hold one object per section under the project's
namespace, e.g. `gitlab-runner-fleet:cache: {expirationDays: 7}`. `parse_settings` turns those
raw objects into `FleetSettings` or raises ONE `SettingsError` that lists every problem with
its config key path (the same path `pulumi config set --path` takes) and how to fix it.
`load_settings` reads the raw objects from Pulumi config; nothing else here needs Pulumi.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from components.naming import ALLOCATION_TAG_KEYS, bucket_name_problems, derived_bucket_name

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
_OIDC_PROVIDER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/[^\s/]+(/[^\s]+)*$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_CACHE_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$")


@dataclass(frozen=True)
class Problem:
    """One invalid setting: where it is and what to do about it."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class SettingsError(pulumi.RunError):
    """Invalid stack configuration. A RunError, so Pulumi prints the message without a traceback."""

    def __init__(self, stack: str, problems: list[Problem]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"Invalid configuration for stack '{stack}' ({count}). Fix these in "
            f"stacks/Pulumi.{stack}.yaml or with `pulumi config set --path <key> <value>`; "
            f"README.md lists every key.\n{lines}"
        )


class _Section(BaseModel):
    """A stack config section: camelCase keys, unknown keys refused, immutable once read."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )
    config_key: ClassVar[str]

    def cross_field_problems(self) -> list[Problem]:
        """Rules that span several keys of this section."""
        return []

    def _problem(self, field_name: str, message: str) -> Problem:
        return Problem(f"{self.config_key}.{to_camel(field_name)}", message)


class CacheSettings(_Section):
    """The S3 bucket that holds the runners' distributed cache."""

    config_key: ClassVar[str] = "cache"

    bucket_name: str | None = Field(
        None,
        description="Explicit bucket name. Default: `<project>-<stack>-cache-<account id>`.",
    )
    prefix: str = Field(
        "runner-cache",
        description="Key prefix for cache objects: the runner's `[runners.cache] Path`, the "
        "lifecycle rule's filter and the IAM policy's scope.",
    )
    expiration_days: int = Field(
        60, ge=1, le=3650, description="Days after which cache objects under `prefix` expire."
    )
    versioning: bool = Field(
        False, description="Enable bucket versioning; noncurrent versions expire after 1 day."
    )
    kms_key_arn: str | None = Field(
        None,
        description="KMS key ARN for SSE-KMS default encryption. Default: SSE-S3 (AES256).",
    )
    access_log_bucket: str | None = Field(
        None, description="Existing bucket that receives server access logs. Default: no logging."
    )
    access_log_prefix: str = Field(
        "gitlab-runner-cache/", description="Key prefix of the access logs in `accessLogBucket`."
    )
    protect: bool = Field(
        True,
        description="Protect the bucket from `pulumi destroy` and retain it when removed from "
        "the program. Turn off only for disposable stacks.",
    )
    force_destroy: bool = Field(
        False, description="Let `pulumi destroy` empty and delete a non-empty bucket."
    )

    @field_validator("bucket_name", "access_log_bucket")
    @classmethod
    def _valid_bucket_name(cls, name: str | None) -> str | None:
        if name is not None and (problems := bucket_name_problems(name)):
            raise ValueError(f"{'; '.join(problems)}, got {name!r}")
        return name

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, prefix: str) -> str:
        if not _CACHE_PREFIX.match(prefix):
            raise ValueError(
                "must be a non-empty S3 key prefix without leading or trailing '/' and of "
                f"letters, digits and !_.*'()- only, e.g. 'runner-cache', got {prefix!r}"
            )
        return prefix

    @field_validator("kms_key_arn")
    @classmethod
    def _valid_kms_key_arn(cls, arn: str | None) -> str | None:
        if arn is not None and not _KMS_KEY_ARN.match(arn):
            raise ValueError(
                "must be a KMS key ARN like arn:aws:kms:<region>:<account>:key/<key id> "
                f"(alias ARNs cannot scope an IAM policy to the key), got {arn!r}"
            )
        return arn

    def cross_field_problems(self) -> list[Problem]:
        if self.protect and self.force_destroy:
            return [
                self._problem(
                    "force_destroy",
                    "cannot be true while cache.protect is true; set cache.protect: false "
                    "for a disposable bucket, or drop cache.forceDestroy",
                )
            ]
        return []


class CacheAccessSettings(_Section):
    """How the runner manager proves its identity to the cache bucket."""

    config_key: ClassVar[str] = "cacheAccess"

    mode: Literal["irsa", "accessKey"] = Field(
        "irsa",
        description="`irsa`: an IAM role the runner's Kubernetes service account assumes (EKS). "
        "`accessKey`: an IAM user with an access key, for clusters without IRSA.",
    )


class ClusterSettings(_Section):
    """Facts about the Kubernetes cluster the fleet runs on."""

    config_key: ClassVar[str] = "cluster"

    oidc_provider_arn: str | None = Field(
        None,
        description="ARN of the cluster's IAM OIDC identity provider, trusted by IRSA roles.",
    )

    @field_validator("oidc_provider_arn")
    @classmethod
    def _valid_oidc_provider_arn(cls, arn: str | None) -> str | None:
        if arn is not None and not _OIDC_PROVIDER_ARN.match(arn):
            raise ValueError(
                "must be an IAM OIDC provider ARN like "
                "arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<ID> "
                f"(see `aws iam list-open-id-connect-providers`), got {arn!r}"
            )
        return arn


class RunnerSettings(_Section):
    """Where the GitLab Runner manager runs in the cluster."""

    config_key: ClassVar[str] = "runner"

    namespace: str = Field("gitlab-runner", description="Kubernetes namespace of the runner.")
    service_account_name: str = Field(
        "gitlab-runner",
        description="Service account of the runner manager; the cache IRSA role trusts it.",
    )

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, namespace: str) -> str:
        if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
            raise ValueError(
                "must be a Kubernetes namespace name: at most 63 lowercase letters, digits "
                f"and '-', starting and ending with a letter or digit, got {namespace!r}"
            )
        return namespace

    @field_validator("service_account_name")
    @classmethod
    def _valid_service_account_name(cls, name: str) -> str:
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            raise ValueError(
                "must be a Kubernetes service account name: lowercase letters, digits, '-' "
                f"and '.', starting and ending with a letter or digit, got {name!r}"
            )
        return name


SectionT = TypeVar("SectionT", bound=_Section)

_SECTIONS: tuple[type[_Section], ...] = (
    CacheSettings,
    CacheAccessSettings,
    ClusterSettings,
    RunnerSettings,
)
TAGS_KEY = "tags"
CONFIG_KEYS = (*(section.config_key for section in _SECTIONS), TAGS_KEY)


@dataclass(frozen=True)
class FleetSettings:
    """A stack's validated configuration: the one source every component reads from."""

    project: str
    stack: str
    aws_region: str
    cache: CacheSettings
    cache_access: CacheAccessSettings
    cluster: ClusterSettings
    runner: RunnerSettings
    tags: Mapping[str, str] = field(default_factory=dict)

    def cache_bucket_name(self, account_id: str) -> str:
        """The explicit bucket name, or the one derived from project, stack and account."""
        return self.cache.bucket_name or derived_bucket_name(self.project, self.stack, account_id)


def parse_settings(
    raw: Mapping[str, Any], *, project: str, stack: str, aws_region: str | None
) -> FleetSettings:
    """Validate raw config sections (keyed by config key) into `FleetSettings`.

    Raises `SettingsError` listing every problem found, never a partial model.
    """
    problems: list[Problem] = []
    sections: dict[str, _Section] = {}
    for section_type in _SECTIONS:
        key = section_type.config_key
        try:
            section = section_type.model_validate(raw.get(key) or {})
        except ValidationError as error:
            problems.extend(_describe(key, section_type, error))
            continue
        sections[key] = section
        problems.extend(section.cross_field_problems())

    tags, tag_problems = _parse_tags(raw.get(TAGS_KEY) or {})
    problems.extend(tag_problems)
    if aws_region is None:
        problems.append(
            Problem("aws:region", "required; set it with `pulumi config set aws:region <region>`")
        )
    elif not _AWS_REGION.match(aws_region):
        problems.append(
            Problem("aws:region", f"must be an AWS region like eu-west-1, got {aws_region!r}")
        )

    if not problems:
        problems.extend(_cross_section_problems(sections))
    if problems:
        raise SettingsError(stack, problems)
    return FleetSettings(
        project=project,
        stack=stack,
        aws_region=str(aws_region),
        cache=_section(sections, CacheSettings),
        cache_access=_section(sections, CacheAccessSettings),
        cluster=_section(sections, ClusterSettings),
        runner=_section(sections, RunnerSettings),
        tags=tags,
    )


def load_settings() -> FleetSettings:
    """Read and validate the current stack's configuration from Pulumi config."""
    config = pulumi.Config()
    stack = pulumi.get_stack()
    raw: dict[str, Any] = {}
    problems: list[Problem] = []
    for key in CONFIG_KEYS:
        text = config.get(key)
        if text is None:
            continue
        try:
            raw[key] = json.loads(text)
        except json.JSONDecodeError:
            problems.append(Problem(key, f"must be an object of keys, got {text!r}"))
    if problems:
        raise SettingsError(stack, problems)
    return parse_settings(
        raw,
        project=pulumi.get_project(),
        stack=stack,
        aws_region=pulumi.Config("aws").get("region"),
    )


def _section(sections: Mapping[str, _Section], section_type: type[SectionT]) -> SectionT:
    section = sections[section_type.config_key]
    assert isinstance(section, section_type)
    return section


def _cross_section_problems(sections: Mapping[str, _Section]) -> list[Problem]:
    access = _section(sections, CacheAccessSettings)
    cluster = _section(sections, ClusterSettings)
    problems = []
    if access.mode == "irsa" and cluster.oidc_provider_arn is None:
        problems.append(
            Problem(
                "cluster.oidcProviderArn",
                "required when cacheAccess.mode is irsa; set it to the cluster's IAM OIDC "
                "provider ARN, or set cacheAccess.mode: accessKey for clusters without IRSA",
            )
        )
    return problems


def _parse_tags(raw: Any) -> tuple[dict[str, str], list[Problem]]:
    if not isinstance(raw, Mapping):
        return {}, [Problem(TAGS_KEY, f"must be an object of tag keys to values, got {raw!r}")]
    problems = []
    for key, value in raw.items():
        path = f"{TAGS_KEY}.{key}"
        if key in ALLOCATION_TAG_KEYS:
            problems.append(Problem(path, "is set by the project itself; drop it or rename it"))
        elif key.lower().startswith("aws:") or not 1 <= len(key) <= 128:
            problems.append(
                Problem(path, "tag keys must be 1-128 characters and not start with 'aws:'")
            )
        if not isinstance(value, str) or len(value) > 256:
            problems.append(
                Problem(path, f"must be a string of at most 256 characters, got {value!r}")
            )
    return {str(key): str(value) for key, value in raw.items()}, problems


def _describe(key: str, section_type: type[_Section], error: ValidationError) -> list[Problem]:
    known = ", ".join((info.alias or name) for name, info in section_type.model_fields.items())
    problems = []
    for detail in error.errors():
        path = ".".join([key, *(str(part) for part in detail["loc"])])
        describe = _MESSAGES.get(detail["type"])
        message = describe(detail) if describe else f"{detail['msg']}, got {detail['input']!r}"
        if detail["type"] == "extra_forbidden":
            message += f"; known keys: {known}"
        elif detail["type"] == "model_type":
            path, message = key, f"must be an object with keys {known}, got {detail['input']!r}"
        problems.append(Problem(path, message))
    return problems


_MESSAGES: dict[str, Callable[[Any], str]] = {
    "greater_than_equal": lambda d: f"must be >= {d['ctx']['ge']}, got {d['input']!r}",
    "less_than_equal": lambda d: f"must be <= {d['ctx']['le']}, got {d['input']!r}",
    "extra_forbidden": lambda d: "unknown key (check its spelling)",
    "literal_error": lambda d: f"must be one of {d['ctx']['expected']}, got {d['input']!r}",
    "value_error": lambda d: str(d["ctx"]["error"]),
    "int_parsing": lambda d: f"must be a whole number, got {d['input']!r}",
    "int_from_float": lambda d: f"must be a whole number, got {d['input']!r}",
    "int_type": lambda d: f"must be a whole number, got {d['input']!r}",
    "bool_parsing": lambda d: f"must be true or false, got {d['input']!r}",
    "bool_type": lambda d: f"must be true or false, got {d['input']!r}",
    "string_type": lambda d: f"must be a string, got {d['input']!r}",
}


def reference_table() -> str:
    """The README's config reference as a Markdown table, generated from the model itself."""
    rows = [
        "| key | default | meaning |",
        "| --- | --- | --- |",
        "| `aws:region` | (required) | AWS region of the stack's resources. |",
    ]
    for section_type in _SECTIONS:
        for name, info in section_type.model_fields.items():
            default = "(none)" if info.default is None else f"`{json.dumps(info.default)}`"
            rows.append(
                f"| `{section_type.config_key}.{info.alias or name}` | {default} "
                f"| {info.description} |"
            )
    rows.append(
        f"| `{TAGS_KEY}` | `{{}}` | Extra cost-allocation tags on every AWS resource; "
        f"{', '.join(ALLOCATION_TAG_KEYS)} are set automatically. |"
    )
    return "\n".join(rows)
