"""The stack's secret config values: which ones a configuration needs, and their checks.

A secret arrives as a `RawSecret`: its value as read (a string; for `runnerTokens` and
`cacheCredentials` an object of strings, or its JSON text as Pulumi config hands it over) and
whether Pulumi holds it encrypted. A value, or a leaf of an object, may also be

- a `pulumi.Output[str]`: an importing program's own secret (a token it created, a value of its
  own config), taken as is; its content cannot be checked before deployment;
- `ENCRYPTED`: a value a stack file holds encrypted (`secure: v1:...`), which an offline render
  cannot decrypt; it becomes a stand-in (`stand_in`), like a secret absent from a stack file
  when the caller asks for stand-ins.

Secret values never appear in a message. Every parser here returns the parsed secrets and the
problems found, keyed like `pulumi config set --path` keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi

from .base import Problem, Secret
from .gitlab import GITLAB_API_TOKEN_KEY
from .mirror import DOCKER_HUB_TOKEN_KEY

RUNNER_TOKENS_KEY = "runnerTokens"
CACHE_CREDENTIALS_KEY = "cacheCredentials"
KUBECONFIG_KEY = "kubeconfig"
SECRET_KEYS = (
    RUNNER_TOKENS_KEY,
    CACHE_CREDENTIALS_KEY,
    KUBECONFIG_KEY,
    GITLAB_API_TOKEN_KEY,
    DOCKER_HUB_TOKEN_KEY,
)
RUNNER_TOKEN_PREFIX = "glrt-"


class _Encrypted:
    """A value a stack file holds encrypted: set, secret, and not readable here."""

    def __repr__(self) -> str:
        return "ENCRYPTED"


ENCRYPTED: Final = _Encrypted()

STAND_IN_RUNNER_TOKEN = "glrt-offline-placeholder-token"
STAND_IN_GITLAB_API_TOKEN = "glpat-offline-placeholder-token"
STAND_IN_KUBECONFIG = json.dumps(
    {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "offline", "cluster": {"server": "https://offline.invalid"}}],
        "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
        "current-context": "offline",
        "users": [{"name": "offline", "user": {}}],
    }
)


def stand_in(key: str) -> str:
    """The value an offline render uses for the secret at `key` (`runnerTokens.default`)."""
    top, _, leaf = key.partition(".")
    if top == RUNNER_TOKENS_KEY:
        return STAND_IN_RUNNER_TOKEN
    if top == GITLAB_API_TOKEN_KEY:
        return STAND_IN_GITLAB_API_TOKEN
    if top == KUBECONFIG_KEY:
        return STAND_IN_KUBECONFIG
    return f"offline-placeholder-{leaf or top}"


@dataclass(frozen=True)
class RawSecret:
    """A secret config value as read, and whether Pulumi holds it encrypted."""

    value: Any
    stored_as_secret: bool


@dataclass
class SecretReader:
    """Reads leaves of secret values; stands in for unreadable or (optionally) absent ones."""

    stand_in_absent: bool = False
    """Offline renders of stack files without their secrets: absent secrets get stand-ins."""
    stood_in: list[str] = field(default_factory=list)
    """Keys whose value is a stand-in, in the order they were met."""
    absent_keys: list[str] = field(default_factory=list)
    """Of those, the ones not set at all (the others are encrypted)."""

    def secret(self, key: str, leaf: Any) -> Secret:
        """A readable, encrypted or program-supplied leaf as a `Secret`."""
        if leaf is ENCRYPTED:
            self.stood_in.append(key)
            return Secret(stand_in(key))
        return Secret(leaf)

    def absent(self, key: str) -> Secret | None:
        """A stand-in for a required secret that is not set, when stand-ins are allowed."""
        if not self.stand_in_absent:
            return None
        self.stood_in.append(key)
        self.absent_keys.append(key)
        return Secret(stand_in(key))


def known(leaf: Any) -> str | None:
    """A leaf's text when it can be checked here; None for an Output or an encrypted value."""
    return leaf if isinstance(leaf, str) else None


def is_leaf(value: Any) -> bool:
    """A string, a program's Output or an encrypted value: one secret."""
    return isinstance(value, str | pulumi.Output) or value is ENCRYPTED


def object_value(raw: RawSecret) -> Any:
    """An object-valued secret decoded from Pulumi config's JSON text (or as given)."""
    if not isinstance(raw.value, str):
        return raw.value
    try:
        return json.loads(raw.value)
    except json.JSONDecodeError:
        return None


def parse_runner_tokens(
    pool_names: Sequence[str], raw: RawSecret | None, reader: SecretReader
) -> tuple[dict[str, Secret], list[Problem]]:
    def create_runner(pool: str) -> str:
        return (
            "create the pool's runner in GitLab (Settings > CI/CD > Runners > New project "
            "runner, or the POST /user/runners API) and store its glrt- authentication token "
            f"with `pulumi config set --secret --path '{RUNNER_TOKENS_KEY}.{pool}' <token>`"
        )

    if raw is None:
        stand_ins = {name: reader.absent(f"{RUNNER_TOKENS_KEY}.{name}") for name in pool_names}
        if all(stand_ins.values()):
            return {name: secret for name, secret in stand_ins.items() if secret}, []
        return {}, [Problem(RUNNER_TOKENS_KEY, f"required; {create_runner('<pool>')} for each")]
    if not raw.stored_as_secret:
        return {}, [
            Problem(
                RUNNER_TOKENS_KEY,
                "is stored in plain text; remove it from the stack file and set each token with "
                "`pulumi config set --secret --path 'runnerTokens.<pool>' <token>`",
            )
        ]
    # Set whole with --secret and JSON text: encrypted as one value, which `pulumi up`
    # decrypts into the object.
    values = object_value(raw)
    if values is ENCRYPTED:
        values = dict.fromkeys(pool_names, ENCRYPTED)
    if not isinstance(values, Mapping):
        return {}, [
            Problem(
                RUNNER_TOKENS_KEY,
                "must be an object of pool names to tokens, got "
                f"{_kind(values)}; {create_runner('<pool>')} for each",
            )
        ]
    problems = []
    for name in pool_names:
        key = f"{RUNNER_TOKENS_KEY}.{name}"
        token = values.get(name)
        text = known(token)
        if name not in values:
            problems.append(Problem(key, f"required; {create_runner(name)}"))
        elif not is_leaf(token):
            problems.append(
                Problem(
                    key, f"must be one token (glrt-...), got {_kind(token)}; {create_runner(name)}"
                )
            )
        elif text is not None and not text.startswith(RUNNER_TOKEN_PREFIX):
            problems.append(
                Problem(
                    key,
                    "is not a runner authentication token (glrt-...). Registration tokens are "
                    "deprecated, disabled by default since GitLab 17.0 and removed in 20.0; "
                    f"{create_runner(name)}",
                )
            )
    problems += [
        Problem(f"{RUNNER_TOKENS_KEY}.{name}", f"names no pool (pools: {', '.join(pool_names)})")
        for name in values
        if name not in pool_names
    ]
    if problems:
        return {}, problems
    return {
        name: reader.secret(f"{RUNNER_TOKENS_KEY}.{name}", values[name]) for name in pool_names
    }, []


def _kind(value: Any) -> str:
    """What a value is, without showing it (it may be a secret)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, Mapping):
        return f"an object with keys {sorted(map(str, value))}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def parse_cache_credentials(
    alternatives: Sequence[Sequence[str]],
    cache_type: str,
    raw: RawSecret | None,
    reader: SecretReader,
) -> tuple[dict[str, Secret], list[Problem]]:
    """`cacheCredentials`: exactly one of the `alternatives` key sets of the cache type."""
    how = " or ".join("{" + ", ".join(keys) + "}" for keys in alternatives)
    set_it = f"`pulumi config set --secret --path {CACHE_CREDENTIALS_KEY}.<name> <value>`"
    if raw is None:
        if not alternatives:
            return {}, []
        stand_ins = {k: reader.absent(f"{CACHE_CREDENTIALS_KEY}.{k}") for k in alternatives[0]}
        if all(stand_ins.values()):
            return {name: secret for name, secret in stand_ins.items() if secret}, []
        message = f"required when cache.type is {cache_type}: {how}, set with {set_it}"
    elif not alternatives:
        message = f"is not used when cache.type is {cache_type}; remove it"
    elif not raw.stored_as_secret:
        message = f"is stored in plain text; set each value with {set_it}"
    else:
        values = object_value(raw)
        if values is ENCRYPTED:
            # Set whole with --secret and JSON text: `pulumi up` decrypts it into the object.
            values = dict.fromkeys(alternatives[0], ENCRYPTED)
        got = ""
        if isinstance(values, Mapping) and all(is_leaf(v) for v in values.values()):
            if keys := next((k for k in alternatives if set(values) == set(k)), None):
                return {
                    name: reader.secret(f"{CACHE_CREDENTIALS_KEY}.{name}", values[name])
                    for name in keys
                }, []
            got = f", got keys {sorted(values)}"
        message = f"must hold exactly {how} when cache.type is {cache_type}{got}"
    return {}, [Problem(CACHE_CREDENTIALS_KEY, message)]


def parse_gitlab_api_token(
    raw: RawSecret | None, runner_tokens: RawSecret | None, reader: SecretReader
) -> tuple[Secret | None, list[Problem]]:
    set_it = f"`pulumi config set --secret {GITLAB_API_TOKEN_KEY} <token>`"
    problems = []
    if runner_tokens is not None:
        problems.append(
            Problem(
                RUNNER_TOKENS_KEY,
                "is not used with gitlab.createRunners: true (the stack creates the runners and "
                f"their tokens); `pulumi config rm {RUNNER_TOKENS_KEY}`",
            )
        )
    secret: Secret | None = None
    if raw is None:
        secret = reader.absent(GITLAB_API_TOKEN_KEY)
        if secret is None:
            problems.append(
                Problem(
                    GITLAB_API_TOKEN_KEY,
                    "required with gitlab.createRunners: true: a GitLab access token with the "
                    f"create_runner, manage_runner and read_user scopes, set with {set_it}",
                )
            )
    elif not raw.stored_as_secret:
        problems.append(
            Problem(GITLAB_API_TOKEN_KEY, f"is stored in plain text; set it with {set_it}")
        )
    else:
        secret = reader.secret(GITLAB_API_TOKEN_KEY, raw.value)
    return (None if problems else secret), problems


def parse_docker_hub_token(
    username: str | None, raw: RawSecret | None, reader: SecretReader
) -> tuple[Secret | None, list[Problem]]:
    """`dockerHubToken`: set exactly when `registryMirror.dockerHubUsername` is."""
    set_it = f"`pulumi config set --secret {DOCKER_HUB_TOKEN_KEY} <read-only access token>`"
    if raw is None:
        if username is None:
            return None, []
        if (secret := reader.absent(DOCKER_HUB_TOKEN_KEY)) is not None:
            return secret, []
        message = f"required with registryMirror.dockerHubUsername; set it with {set_it}"
    elif username is None:
        message = "is only used with registryMirror.dockerHubUsername; set both or neither"
    elif not raw.stored_as_secret:
        message = f"is stored in plain text; set it with {set_it}"
    else:
        return reader.secret(DOCKER_HUB_TOKEN_KEY, raw.value), []
    return None, [Problem(DOCKER_HUB_TOKEN_KEY, message)]


def parse_kubeconfig(
    needed: bool, raw: RawSecret | None, reader: SecretReader
) -> tuple[Secret | None, list[Problem]]:
    """`kubeconfig`: required exactly when `cluster.mode` is kubeconfig."""
    if raw is None and not needed:
        return None, []
    set_it = "`pulumi config set --secret kubeconfig < path/to/kubeconfig`"
    if not needed:
        message = "is only used when cluster.mode is kubeconfig"
    elif raw is None:
        if (secret := reader.absent(KUBECONFIG_KEY)) is not None:
            return secret, []
        message = f"required when cluster.mode is kubeconfig; {set_it}"
    elif not raw.stored_as_secret:
        message = f"is stored in plain text; set it with {set_it}"
    elif (text := known(raw.value)) is not None and "clusters" not in text:
        message = "must be the contents of a kubeconfig file"
    else:
        return reader.secret(KUBECONFIG_KEY, raw.value), []
    return None, [Problem(KUBECONFIG_KEY, message)]
