"""Stack files as the Pulumi CLI writes them, and config as it hands it to the program.

`config_set` does to a stack file's document what `pulumi config set [--secret] [--path]`
does (pulumi/pulumi sdk/go/common/resource/config/map.go `Map.Set` and `adjustObjectValue`;
paths as sdk/go/common/resource/properties_path.go `ParsePropertyPath` reads them):

- without `--path` the whole key name is one key, dots and brackets included;
- with `--path` the name is a property path (`a.b`, `a[0]`, `a["b.c"]`); missing maps and
  lists are created, and a plain value `true`/`false` becomes a boolean and a whole number
  without a leading zero an integer;
- a secret is written as a one-key map `secure: v1:...` where the value goes, however deep.

`program_config` is what the program then receives (sdk/go/common/resource/config/value.go):
every value decrypted, objects as JSON text, and each key whose value holds a secret anywhere
listed as secret. The "encryption" here is base64, reversible so the tests can check values;
the passphrase provider's real ciphertexts look the same from the outside (`v1:<...>`).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

PROJECT = "gitlab-runner-fleet"
# What `pulumi stack init` with the passphrase provider writes first (salt and a check value).
ENCRYPTION_SALT = "v1:Nw4iwLM2Rbo=:v1:CdbS3Js7g7c6u1Zb:e0f8S5T0cB6Xz0tW1s5g0CqJ6bG1y5A="
_PATH_TOKEN = re.compile(r'\.?([^.\[\]"]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


def parse_path(name: str) -> list[str | int]:
    """The segments of a property path: `pools[0].maxSize` -> ["pools", 0, "maxSize"]."""
    segments: list[str | int] = []
    position = 0
    while position < len(name):
        match = _PATH_TOKEN.match(name, position)
        if match is None or match.end() == position:
            raise ValueError(f"invalid property path {name!r} at {position}")
        plain, index, quoted = match.groups()
        if index is not None:
            segments.append(int(index))
        else:
            segments.append(plain if plain is not None else quoted.replace('\\"', '"'))
        position = match.end()
    return segments


def encrypt(plaintext: str) -> dict[str, str]:
    return {"secure": "v1:" + base64.b64encode(plaintext.encode()).decode()}


def _adjusted(value: str, *, secret: bool, path: bool) -> Any:
    if secret:
        return encrypt(value)
    if not path:
        return value
    if value in ("true", "false"):
        return value == "true"
    if re.fullmatch(r"0|-?[1-9]\d*", value):
        return int(value)
    return value


def config_set(
    document: dict[str, Any],
    key: str,
    value: str,
    *,
    secret: bool = False,
    path: bool = False,
) -> dict[str, Any]:
    """`pulumi config set [--secret] [--path] <key> <value>` applied to a stack file."""
    if secret and "encryptionsalt" not in document:
        document["encryptionsalt"] = ENCRYPTION_SALT
    config = document.setdefault("config", {})
    namespace, colon, name = key.partition(":")
    if not colon:
        namespace, name = PROJECT, key
    if not path:
        config[f"{namespace}:{name}"] = _adjusted(value, secret=secret, path=False)
        return document
    first, *rest = parse_path(name)
    full_key = f"{namespace}:{first}"
    if not rest:
        config[full_key] = _adjusted(value, secret=secret, path=False)
        return document
    container: Any = config
    member: str | int = full_key
    for segment in rest:
        current = container[member] if _has(container, member) else None
        if current is None or isinstance(current, str):
            current = [] if isinstance(segment, int) else {}
            _put(container, member, current)
        container, member = current, segment
    _put(container, member, _adjusted(value, secret=secret, path=True))
    return document


def _has(container: Any, member: str | int) -> bool:
    if isinstance(container, list):
        return isinstance(member, int) and member < len(container)
    return member in container


def _put(container: Any, member: str | int, value: Any) -> None:
    if isinstance(container, list):
        assert isinstance(member, int)
        if member == len(container):
            container.append(value)
        else:
            container[member] = value
    else:
        container[member] = value


def _decrypted(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return base64.b64decode(value["secure"].removeprefix("v1:")).decode(), True
        pairs = {key: _decrypted(item) for key, item in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(s for _, s in pairs.values())
    if isinstance(value, list):
        items = [_decrypted(item) for item in value]
        return [v for v, _ in items], any(s for _, s in items)
    return value, False


def program_config(document: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The config a Pulumi program receives for a stack file, and its secret keys."""
    config: dict[str, str] = {}
    secret_keys = []
    for key, value in (document.get("config") or {}).items():
        plain, secret = _decrypted(value)
        config[key] = plain if isinstance(plain, str) else json.dumps(plain)
        if secret:
            secret_keys.append(key)
    return config, secret_keys
