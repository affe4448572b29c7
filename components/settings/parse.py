"""Raw config values in, one `FleetSettings` or one `SettingsError` out.

Stack files (`stacks/Pulumi.<stack>.yaml`) hold one object per section under the project's
namespace, e.g. `gitlab-runner-fleet:cache: {expirationDays: 7}`, and the list `pools`.
`parse_settings` turns those raw values into `FleetSettings` or raises ONE `SettingsError` that
lists every problem with its config key path (the same path `pulumi config set --path` takes)
and how to fix it. `load_settings` reads the raw values from Pulumi config at `pulumi up`;
the offline render hands the values of a stack file to the same `parse_settings`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

import pulumi
from pydantic import ValidationError

from .autoscaler import ClusterAutoscalerSettings
from .base import Problem, Secret, Section, SettingsError, describe_errors
from .cache import CacheAccessSettings, CacheSettings
from .cache_plan import CACHE_CREDENTIAL_KEYS
from .cluster import EKS_MODES, KUBECONFIG_MODE, ClusterSettings
from .gitlab import GITLAB_API_TOKEN_KEY, GitlabSettings
from .isolation import IsolationSettings
from .karpenter import KarpenterSettings
from .mirror import DOCKER_HUB_TOKEN_KEY, RegistryMirrorSettings
from .model import FleetSettings
from .monitoring import MonitoringSettings
from .network import NetworkSettings
from .pools import POOLS_KEY, PoolSettings, parse_pools
from .rules import TAGS_KEY, Sections, cross_section_problems, parse_tags
from .runner import RunnerSettings
from .secrets import (
    CACHE_CREDENTIALS_KEY,
    ENCRYPTED,
    KUBECONFIG_KEY,
    RUNNER_TOKENS_KEY,
    SECRET_KEYS,
    RawSecret,
    SecretReader,
    parse_cache_credentials,
    parse_docker_hub_token,
    parse_gitlab_api_token,
    parse_kubeconfig,
    parse_runner_tokens,
)
from .site import SiteSettings

_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
SectionT = TypeVar("SectionT", bound=Section)

SECTIONS: tuple[type[Section], ...] = (
    ClusterSettings,
    ClusterAutoscalerSettings,
    NetworkSettings,
    CacheSettings,
    CacheAccessSettings,
    RunnerSettings,
    GitlabSettings,
    IsolationSettings,
    RegistryMirrorSettings,
    SiteSettings,
    MonitoringSettings,
    KarpenterSettings,
)
CONFIG_KEYS = (*(section.config_key for section in SECTIONS), POOLS_KEY, TAGS_KEY)
# Keys of the single-pool settings, and where their values live now.
MOVED_KEYS = {
    "buildNodes": "moved into a pool: put its keys into an entry of `pools` (see "
    "README.md#migrating-to-pools); labels and taints default to ones derived from the pool name",
    "warmCapacity": "moved into a pool as `pools[i].warmCapacity` with `idleJobs` (whole jobs) "
    "instead of `idleCount` (see README.md#migrating-to-pools)",
    "runnerToken": "moved to one token per pool: `pulumi config rm runnerToken`, then "
    "`pulumi config set --secret --path 'runnerTokens.<pool>' glrt-...`",
}


def parse_settings(
    raw: Mapping[str, Any],
    *,
    project: str,
    stack: str,
    aws_region: str | None,
    secrets: Mapping[str, RawSecret] | None = None,
    stand_in_secrets: bool = False,
    where: str | None = None,
    key_problems: Sequence[Problem] = (),
) -> FleetSettings:
    """Validate raw config values (keyed by config key) into `FleetSettings`.

    `secrets` holds the secret config values (`runnerTokens`, `cacheCredentials`,
    `kubeconfig`, ...; see `secrets.RawSecret`). With `stand_in_secrets` (offline renders) a
    required secret the configuration lacks gets a stand-in instead of a problem. Raises
    `SettingsError` listing every problem found, never a partial model; secret values never
    appear in a message. `where` tells the user where to fix them (default: the stack file);
    `key_problems` are problems with the config's keys found before (`project_values`).
    """
    secrets = secrets or {}
    reader = SecretReader(stand_in_absent=stand_in_secrets)
    problems = list(key_problems)
    problems += [Problem(key, message) for key, message in MOVED_KEYS.items() if key in raw]
    problems += [Problem(key, message) for key, message in MOVED_KEYS.items() if key in secrets]
    # Keys already refused (empty, or stored as secrets) are not read: the defaults in their
    # place would add problems that are not the user's.
    refused = {re.split(r"[.\[]", problem.key, maxsplit=1)[0] for problem in key_problems}
    sections, found = _parse_sections(raw, refused)
    problems.extend(found)
    pools, pool_problems = parse_pools(raw.get(POOLS_KEY))
    problems.extend(pool_problems)
    pools_read = POOLS_KEY not in refused and not pool_problems

    tags, tag_problems = parse_tags(_or_empty(raw.get(TAGS_KEY)) if TAGS_KEY not in refused else {})
    problems.extend(tag_problems)
    problems.extend(_region_problems(sections, aws_region))

    runner_tokens: dict[str, Secret] = {}
    gitlab_api_token: Secret | None = None
    gitlab = _optional(sections, GitlabSettings)
    if gitlab is not None and gitlab.create_runners:
        gitlab_api_token, found = parse_gitlab_api_token(
            secrets.get(GITLAB_API_TOKEN_KEY), secrets.get(RUNNER_TOKENS_KEY), reader
        )
        problems.extend(found)
    elif pools_read:
        runner_tokens, found = parse_runner_tokens(
            [pool.name for pool in pools], secrets.get(RUNNER_TOKENS_KEY), reader
        )
        problems.extend(found)
    cache_credentials: dict[str, Secret] = {}
    if (cache := _optional(sections, CacheSettings)) is not None:
        site = _optional(sections, SiteSettings)
        alternatives = () if site and site.is_edge else CACHE_CREDENTIAL_KEYS[cache.type]
        cache_credentials, found = parse_cache_credentials(
            alternatives, cache.type, secrets.get(CACHE_CREDENTIALS_KEY), reader
        )
        problems.extend(found)
    mirror = _optional(sections, RegistryMirrorSettings)
    docker_hub_token, found = parse_docker_hub_token(
        mirror.docker_hub_username if mirror else None, secrets.get(DOCKER_HUB_TOKEN_KEY), reader
    )
    problems.extend(found)
    kubeconfig: Secret | None = None
    if (cluster := _optional(sections, ClusterSettings)) is not None:
        kubeconfig, found = parse_kubeconfig(
            cluster.mode == KUBECONFIG_MODE, secrets.get(KUBECONFIG_KEY), reader
        )
        problems.extend(found)
    if len(sections) == len(SECTIONS) and pools_read:
        problems.extend(
            cross_section_problems(
                _complete(sections),
                pools,
                cache_section_set=bool(raw.get(CacheSettings.config_key)),
            )
        )
    if problems:
        raise SettingsError(stack, problems, where)
    complete = _complete(sections)
    return FleetSettings(
        **{section.name: getattr(complete, section.name) for section in fields(Sections)},
        project=project,
        stack=stack,
        aws_region=aws_region or "",
        pools=tuple(pools),
        runner_tokens=runner_tokens,
        gitlab_api_token=gitlab_api_token,
        docker_hub_token=docker_hub_token,
        cache_credentials=cache_credentials,
        kubeconfig=kubeconfig,
        tags=tags,
        warnings=_warnings(pools, complete.karpenter),
        stand_ins=tuple(reader.stood_in),
        missing_secrets=tuple(reader.absent_keys),
        source=where,
    )


def _parse_sections(
    raw: Mapping[str, Any], refused: set[str]
) -> tuple[dict[str, Section], list[Problem]]:
    """Each section not refused, validated; the problems of those that are not valid."""
    sections: dict[str, Section] = {}
    problems: list[Problem] = []
    for section_type in SECTIONS:
        key = section_type.config_key
        if key in refused:
            continue
        try:
            section = section_type.model_validate(_or_empty(raw.get(key)))
        except ValidationError as error:
            problems.extend(describe_errors(key, section_type, error))
            continue
        sections[key] = section
        problems.extend(section.cross_field_problems())
    return sections, problems


def _or_empty(value: Any) -> Any:
    """A section's value, absent being empty; `false` or `[]` are refused by its model rather
    than read as the defaults (found in review: `pulumi config set clusterAutoscaler false`
    installed the autoscaler)."""
    return {} if value is None else value


def fleet_settings(
    values: Mapping[str, Any], *, secrets: Mapping[str, Any] | None = None
) -> FleetSettings:
    """Settings a Pulumi program builds in code, for `RunnerFleet` in another infra repo.

    `values` holds the config sections as a stack file would (`{"cluster": {...}, "pools":
    [...]}`), `secrets` the secret ones (`{"runnerTokens": {"default": token}}`), whose values
    may be the program's own Outputs (e.g. `pulumi.Config().require_secret(...)`): they stay
    secrets. Project, stack and `aws:region` come from the running program.
    """
    secrets = secrets or {}
    return parse_settings(
        values,
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        aws_region=pulumi.Config("aws").get("region"),
        secrets={key: RawSecret(value, stored_as_secret=True) for key, value in secrets.items()},
        where="the values your program passes to fleet_settings()",
        key_problems=program_key_problems(values, secrets),
    )


def program_key_problems(values: Mapping[str, Any], secrets: Mapping[str, Any]) -> list[Problem]:
    """The key mistakes `project_values` finds in stack files, in a program's own values: a
    misspelt section, a dotted key, a namespace, a secret among the values or the reverse."""
    problems = []
    for name, value in values.items():
        if name in SECRET_KEYS:
            problems.append(Problem(name, "is a secret: pass it in `secrets`, not in `values`"))
        elif ":" in name:
            plain = name.partition(":")[2]
            problems.append(Problem(name, f"takes no namespace here: pass it as '{plain}'"))
        elif name in CONFIG_KEYS:
            problems += _null_problems(name, value, program=True)
        else:
            problems.append(_unknown_key_problem(name, program=True))
    for name in secrets:
        if name in CONFIG_KEYS:
            problems.append(Problem(name, "is not a secret: pass it in `values`"))
        elif name not in SECRET_KEYS:
            problems.append(_unknown_key_problem(name, program=True))
    return problems


def load_settings() -> FleetSettings:
    """Read and validate the current stack's configuration from Pulumi config.

    The CLI hands the program every config key of the stack with its value decrypted, objects
    as JSON text, and the keys holding a secret anywhere in their value listed as secret
    (pulumi/pulumi sdk/go/common/resource/config/value.go: an object with a `secure:` leaf is
    a secure object value).
    """
    config = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    project, stack = pulumi.get_project(), pulumi.get_stack()
    values: dict[str, Any] = {}
    for full_key, text in config.items():
        namespace, _, name = full_key.partition(":")
        values[full_key] = text
        if namespace == project and name in (*CONFIG_KEYS, *MOVED_KEYS):
            # Objects and lists arrive as JSON text; anything else was set as a plain string,
            # which the section then refuses with its expected shape.
            with contextlib.suppress(json.JSONDecodeError):
                values[full_key] = json.loads(text)
    return settings_from_config(
        values, project=project, stack=stack, is_secret=pulumi.runtime.is_config_secret
    )


def settings_from_config(
    config: Mapping[str, Any],
    *,
    project: str,
    stack: str,
    is_secret: Callable[[str], bool],
    stand_in_secrets: bool = False,
) -> FleetSettings:
    """`FleetSettings` from every config value of a stack (full keys, objects decoded).

    Keys of other namespaces are left alone, but one a few letters off the project's is
    refused; every key of the project's namespace is known or refused.
    """
    raw, secrets, problems = project_values(config, project, is_secret)
    region = config.get("aws:region")
    return parse_settings(
        raw,
        project=project,
        stack=stack,
        aws_region=region if isinstance(region, str) else None,
        secrets=secrets,
        stand_in_secrets=stand_in_secrets,
        key_problems=problems,
    )


def project_values(
    config: Mapping[str, Any], project: str, is_secret: Callable[[str], bool]
) -> tuple[dict[str, Any], dict[str, RawSecret], list[Problem]]:
    """The project's settings and secrets out of a stack's config, and the problems of keys
    nobody would read: unknown names, flat keys set without `--path`, a mistyped namespace,
    empty values, and settings stored as secrets although none of them is one.

    A setting stored as a secret is left out (and so not validated): the offline render could
    not read it, so `pulumi up` refuses it too, and its value never reaches a message."""
    raw: dict[str, Any] = {}
    secrets: dict[str, RawSecret] = {}
    problems: list[Problem] = []
    for full_key, value in config.items():
        namespace, colon, name = full_key.partition(":")
        if not colon:
            problems.append(
                Problem(full_key, f"has no namespace; this project's keys are {project}:<key>")
            )
        elif namespace != project:
            if _edit_distance(namespace, project) <= _NAMESPACE_TYPO_DISTANCE:
                problems.append(_foreign_namespace_problem(full_key, project, name))
        elif name in SECRET_KEYS:
            secrets[name] = RawSecret(value, is_secret(full_key))
        elif name in MOVED_KEYS:
            raw[name] = value
        elif name in CONFIG_KEYS:
            if encrypted := encrypted_paths(name, value):
                problems += [
                    Problem(path, _ENCRYPTED_SETTING.format(path=path)) for path in encrypted
                ]
            elif is_secret(full_key):
                problems.append(Problem(name, _SECRET_SETTING.format(key=name)))
            else:
                problems += _null_problems(name, value)
                raw[name] = value
        else:
            problems.append(_unknown_key_problem(name))
    return raw, secrets, problems


_NAMESPACE_TYPO_DISTANCE = 3
_ENCRYPTED_SETTING = (
    "is encrypted in the stack file (`secure:`), but it is not a secret, and neither the "
    "offline render nor a merge request's preview could show it: set it in plain text with "
    "`pulumi config set --path '{path}' <value>`"
)
_SECRET_SETTING = (
    "holds a value set with --secret (`secure:` in the stack file), but none of its settings is "
    "a secret, and neither the offline render nor a merge request's preview could show it: set "
    "that value again in plain text with `pulumi config set --path '{key}.<setting>' <value>`"
)


def encrypted_paths(key: str, value: Any) -> list[str]:
    """The `--path` keys of the encrypted leaves in a value."""
    if value is ENCRYPTED:
        return [key]
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in encrypted_paths(_path(key, k), v)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in encrypted_paths(f"{key}[{i}]", v)]
    return []


def _path(key: str, member: str) -> str:
    return f"{key}.{member}" if re.fullmatch(r"[A-Za-z_][\w-]*", member) else f'{key}["{member}"]'


def _unknown_key_problem(name: str, *, program: bool = False) -> Problem:
    """A key nobody reads: set flat instead of by path, misspelt, or unknown. `program`: in
    the values a program passes to `fleet_settings()` rather than in a stack's config."""
    head = re.split(r"[.\[]", name, maxsplit=1)[0]
    if head != name and head in (*CONFIG_KEYS, *SECRET_KEYS):
        if program:
            return Problem(name, f"is one flat key; nest it inside '{head}' instead")
        secret = " --secret" if head in SECRET_KEYS else ""
        return Problem(
            name,
            f"is one flat key, set without --path; the setting is {name} inside {head}: "
            f"`pulumi config rm '{name}'`, then `pulumi config set{secret} --path '{name}' "
            "<value>`",
        )
    known = sorted((*CONFIG_KEYS, *SECRET_KEYS))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
    remove = "" if program else f" (`pulumi config rm '{name}'`)"
    return Problem(name, f"unknown key, {hint}{remove}")


def _null_problems(name: str, value: Any, *, program: bool = False) -> list[Problem]:
    """An empty value (`key:` with nothing after it in YAML) would silently mean the defaults."""
    if value is not None:
        return []
    remove = "leave the key out" if program else f"`pulumi config rm '{name}'`"
    return [Problem(name, f"is empty (null): give it a value, or {remove} for the defaults")]


def _foreign_namespace_problem(full_key: str, project: str, name: str) -> Problem:
    return Problem(
        full_key,
        f"is not in this project's namespace ({project}), so nothing reads it: "
        f"`pulumi config rm '{full_key}'`, then set it as '{project}:{name}'",
    )


def _edit_distance(first: str, second: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    previous = list(range(len(second) + 1))
    for i, char in enumerate(first, 1):
        current = [i]
        for j, other in enumerate(second, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other))
            )
        previous = current
    return previous[-1]


def _region_problems(sections: Mapping[str, Section], aws_region: str | None) -> list[Problem]:
    if aws_region is None and _uses_aws(sections):
        return [
            Problem("aws:region", "required; set it with `pulumi config set aws:region <region>`")
        ]
    if aws_region is not None and not _AWS_REGION.match(aws_region):
        return [Problem("aws:region", f"must be an AWS region like eu-west-1, got {aws_region!r}")]
    return []


def _uses_aws(sections: Mapping[str, Section]) -> bool:
    """Whether the stack needs an AWS region; False while the sections that decide it are
    invalid themselves (their own problems come first, not a region the stack may not need)."""
    cluster = _optional(sections, ClusterSettings)
    cache = _optional(sections, CacheSettings)
    site = _optional(sections, SiteSettings)
    if cluster is None or site is None:
        return False
    on_eks = cluster.mode in EKS_MODES
    owns_cache = not (site is not None and site.is_edge)
    return on_eks or (owns_cache and cache is not None and cache.type == "s3")


def _optional(sections: Mapping[str, Section], section_type: type[SectionT]) -> SectionT | None:
    section = sections.get(section_type.config_key)
    return section if isinstance(section, section_type) else None


def _complete(sections: Mapping[str, Section]) -> Sections:
    def get(section_type: type[SectionT]) -> SectionT:
        section = _optional(sections, section_type)
        assert section is not None
        return section

    return Sections(
        cluster=get(ClusterSettings),
        cluster_autoscaler=get(ClusterAutoscalerSettings),
        network=get(NetworkSettings),
        cache=get(CacheSettings),
        cache_access=get(CacheAccessSettings),
        runner=get(RunnerSettings),
        gitlab=get(GitlabSettings),
        isolation=get(IsolationSettings),
        registry_mirror=get(RegistryMirrorSettings),
        site=get(SiteSettings),
        monitoring=get(MonitoringSettings),
        karpenter=get(KarpenterSettings),
    )


def _warnings(pools: Sequence[PoolSettings], karpenter: KarpenterSettings) -> tuple[str, ...]:
    warnings = [
        warning
        for pool in pools
        if not (pool.uses_karpenter and not pool.launches_listed_types_only)
        and (warning := pool.unknown_shape_warning)
    ]
    if karpenter.pins_latest and any(pool.uses_karpenter for pool in pools):
        warnings.append(
            "karpenter.amiAlias: al2023@latest replaces every Karpenter node at each new AMI "
            "release (drift, one node at a time as its jobs finish); pin a release for "
            "production (docs/karpenter.md#amis-and-upgrades)"
        )
    return tuple(warnings)
