"""rclone command lines and remote configuration for a site's runner cache. Pure functions.

A site cache is `rclone serve s3` (rclone 1.75, `cmd/serve/s3`) in front of one of two remotes:

- in-cluster (no hub): a local directory, `store` = an `alias` of the objects directory;
- edge: a `union` (`backend/union`) of the local directory, writable and searched first, and
  the hub's S3 cache prefix, read-only (`:ro`). Creates only ever land on the local upstream;
  a read that misses locally is served from the hub and kept in the VFS cache.

`serve s3` serves every directory at the root of its remote as a bucket (`serve_s3.md`,
Limitations), so both remotes have `<bucket>/<Path>/project/<id>/<key>` under their root, the
object name the runner uses with `Shared = true` (gitlab-runner v19.3.0 `cache/cache.go`).
The hub side of the union is a chain of `combine` remotes (one per path segment) that maps
exactly `<bucket>/<Path>/` onto the hub: the hub is never listed above the cache prefix, so
its credential needs neither `s3:ListAllMyBuckets` nor a listing of the bucket's root.

Secrets never appear here: the hub's access key reaches rclone as
`RCLONE_CONFIG_HUB_ACCESS_KEY_ID`/`..._SECRET_ACCESS_KEY` and the server's own key pair as
`RCLONE_AUTH_KEY`, all from a Kubernetes Secret.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..kubernetes_names import quantity_value

RCLONE_IMAGE = "rclone/rclone:1.75.2"
"""The official image, the same release as the rclone the integration tests run."""
RCLONE_UID = 1009
"""The `rclone` user and group of the official image (its Dockerfile `adduser -u 1009`)."""

SERVE_PORT = 8080
DATA_DIR = "/data"
OBJECTS_DIR = f"{DATA_DIR}/objects"
"""The local store: `<bucket>/<Path>/project/<id>/<key>` files, what this site wrote."""
VFS_CACHE_DIR = f"{DATA_DIR}/vfs-cache"
"""rclone's VFS cache: objects read from the hub (edge) and writes on their way to the store."""
CONFIG_FILE = "/etc/rclone/rclone.conf"

STORE_REMOTE = "store"
HUB_REMOTE = "hub"
HUB_TREE_REMOTE = "hubtree"

AUTH_KEY_ENV = "RCLONE_AUTH_KEY"
"""`serve s3 --auth-key` as an environment variable: CSV of `"<access key>,<secret key>"`."""
HUB_ACCESS_KEY_ENV = f"RCLONE_CONFIG_{HUB_REMOTE.upper()}_ACCESS_KEY_ID"
HUB_SECRET_KEY_ENV = f"RCLONE_CONFIG_{HUB_REMOTE.upper()}_SECRET_ACCESS_KEY"

DEFAULT_UPLINK_HEADROOM = 0.8
"""Share of the uplink the push may use, so jobs and everything else at the site keep some."""
DEFAULT_DIR_CACHE_TIME = "10s"
"""How long the server trusts a directory listing. rclone's default (5m) would hide an object
another site pushed to the hub for up to five minutes; every expiry costs one LIST per level at
the hub on the next request."""
DEFAULT_EXPIRE_AFTER = "168h"
"""Local objects older than this are deleted (a week: longer than any pipeline)."""
DEFAULT_VFS_CACHE_MAX_AGE = "24h"
"""Objects read from the hub stay in the VFS cache this long after their last use."""
VFS_CACHE_SHARE = 0.5
"""Share of the volume the VFS cache may fill; the local store uses the rest."""
VFS_WRITE_BACK = "1s"
"""Delay between a PUT's completion and its copy into the local store (the push reads the
store). A local copy is cheap, and an upload still pending is recovered from the VFS cache
after a restart, so there is nothing to gain from rclone's default 5s."""
HUB_CONNECT_TIMEOUT = "3s"
HUB_IDLE_TIMEOUT = "30s"

# GitLab appends one of these to every cache key unless the project turns off separate caches
# for protected branches; the runner's object name ends with it (executors/docker/volume.go
# reads the same suffixes).
PROTECTION_SUFFIXES = ("-protected", "-non_protected")
# rclone filter syntax with no IAM equivalent: character classes, alternatives, regexps,
# escapes (rclone docs/content/filtering.md).
_RCLONE_ONLY_SYNTAX = re.compile(r"[\[\]{}\\]")
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class HubLocation:
    """Where the hub's cache bucket is reached (its name and prefix are the site's own)."""

    region: str
    """The bucket's region."""
    endpoint: str = ""
    """S3 endpoint URL; empty for AWS S3 in `region`."""
    path_style: bool = False
    """Path-style requests (S3-compatible stores); AWS S3 uses virtual-hosted style."""


def replicate_problems(globs: Sequence[str], *, hash_cache_keys: bool = False) -> list[str]:
    """Why these `replicate` key globs cannot select the runner's cache objects (empty: fine).

    A glob matches a cache key as the runner names the object: the key as written in
    `cache:key`, with GitLab's `-protected`/`-non_protected` suffix, e.g. `build-*-protected`
    or `build-*`. With `FF_HASH_CACHE_KEYS` the object is `project/<id>/<2 hex>/<sha256 hex>`
    (gitlab-runner v19.3.0 `cache/cache.go`, `shells/abstract.go`): no key glob can select it.
    """
    problems = []
    if hash_cache_keys and globs:
        problems.append(
            "FF_HASH_CACHE_KEYS names cache objects by the SHA-256 of their key, so no replicate "
            "glob can select them: turn the flag off for this fleet or replicate nothing"
        )
    for glob in globs:
        problems += [f"replicate glob {glob!r} {problem}" for problem in _glob_problems(glob)]
    return problems


def _glob_problems(glob: str) -> list[str]:
    if not glob:
        return ["must not be empty"]
    problems = []
    if _WHITESPACE_OR_CONTROL.search(glob):
        problems.append("must not contain whitespace or control characters")
    if _RCLONE_ONLY_SYNTAX.search(glob):
        problems.append(
            "may use only '*', '**' and '?' as wildcards: '[', ']', '{', '}' and '\\' have no "
            "IAM equivalent"
        )
    segments = glob.split("/")
    if glob.startswith("/") or glob.endswith("/") or "" in segments:
        problems.append("must be a cache key: no leading, trailing or repeated '/'")
    if any(segment in (".", "..") for segment in segments):
        problems.append("must not contain '.' or '..' path segments")
    if not glob.endswith(("*", *PROTECTION_SUFFIXES)):
        problems.append(
            "can never match: the runner's object names end with GitLab's '-protected' or "
            "'-non_protected' suffix, so end the glob with one of them or with '*'"
        )
    return problems


def replicate_filters(globs: Sequence[str]) -> list[str]:
    """rclone `--filter` rules that select the replicated objects below `<bucket>/<Path>`.

    First match wins: rclone's own temporary files (`.rclone_temp_*` from `serve s3`,
    `*.partial` from copies into the store) are never pushed, then each glob is anchored at
    `project/<id>/`, and everything else is excluded.
    """
    rules = ["- .rclone_temp_*", "- *.partial"]
    rules += [f"+ /project/*/{glob}" for glob in globs]
    rules.append("- **")
    return rules


def replicate_object_patterns(prefix: str, globs: Sequence[str]) -> list[str]:
    """IAM object key patterns (below the bucket) that cover everything the filters select.

    IAM's `*` matches any characters including `/`; rclone's `*` stops at `/` and `**` does
    not. Mapping both to IAM `*` (and `?` to `?`) makes each pattern match a superset of what
    the push selects, never less: IAM is the outer bound, the filter the exact choice.
    """
    return [f"{prefix}/project/*/{glob.replace('**', '*')}" for glob in globs]


def push_bytes_per_second(uplink_mbps: float, headroom: float = DEFAULT_UPLINK_HEADROOM) -> int:
    """The push's bandwidth limit: `headroom` of an uplink of `uplink_mbps` megabits/s."""
    if uplink_mbps <= 0 or not 0 < headroom <= 1:
        raise ValueError(
            f"uplink must be positive and headroom in (0, 1], got {uplink_mbps}, {headroom}"
        )
    return int(uplink_mbps * 1_000_000 / 8 * headroom)


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes storage quantity (`100Gi`, `500M`) in whole bytes."""
    return int(quantity_value(quantity))


def bucket_dir(bucket: str, objects_dir: str = OBJECTS_DIR) -> str:
    """The served bucket in the local store."""
    return f"{objects_dir}/{bucket}"


def cache_dir(bucket: str, prefix: str, objects_dir: str = OBJECTS_DIR) -> str:
    """The runner's `Path` in the local store: the push's source."""
    return f"{bucket_dir(bucket, objects_dir)}/{prefix}"


def auth_key(access_key_id: str, secret_access_key: str) -> str:
    """`RCLONE_AUTH_KEY` for one key pair: CSV with the pair quoted (it contains a comma)."""
    for value in (access_key_id, secret_access_key):
        if not value or not value.isalnum():
            raise ValueError("server keys must be non-empty and alphanumeric")
    return f'"{access_key_id},{secret_access_key}"'


def remote_config(
    bucket: str, prefix: str, hub: HubLocation | None, objects_dir: str = OBJECTS_DIR
) -> str:
    """rclone.conf for the server and its jobs. Holds no secrets (keys come from the env)."""
    if any(char.isspace() for char in objects_dir):
        raise ValueError(f"the objects directory must not contain spaces: {objects_dir!r}")
    if hub is None:
        return _ini({STORE_REMOTE: {"type": "alias", "remote": objects_dir}})
    segments = [bucket, *prefix.split("/")]
    sections: dict[str, dict[str, str]] = {
        HUB_REMOTE: {
            "type": "s3",
            "provider": "Other" if hub.endpoint else "AWS",
            "region": hub.region,
            **({"endpoint": hub.endpoint} if hub.endpoint else {}),
            "force_path_style": str(hub.path_style).lower(),
            # The bucket is the hub's; never try to create it (s3:CreateBucket is not granted).
            "no_check_bucket": "true",
            "env_auth": "false",
        }
    }
    for level, segment in enumerate(segments):
        # The trailing '/' keeps rclone from probing whether `<bucket>/<Path>` is a file (a
        # HEAD outside the prefix the hub's credential may read).
        target = (
            f"{HUB_REMOTE}:{bucket}/{prefix}/"
            if level == len(segments) - 1
            else f"{HUB_TREE_REMOTE}{level + 1}:"
        )
        sections[f"{HUB_TREE_REMOTE}{level}"] = {
            "type": "combine",
            "upstreams": f"{segment}={target}",
        }
    sections[STORE_REMOTE] = {
        "type": "union",
        "upstreams": f"{objects_dir} {HUB_TREE_REMOTE}0::ro",
        # Creates go to the first writable upstream: the local directory (the hub is `:ro`).
        "create_policy": "ff",
        # Deletes and updates act on every writable copy: again only the local one.
        "action_policy": "epall",
        # Reads take the first upstream that has the object: local wins over the hub.
        "search_policy": "ff",
    }
    return _ini(sections)


def _ini(sections: dict[str, dict[str, str]]) -> str:
    return "\n".join(
        "\n".join([f"[{name}]", *(f"{key} = {value}" for key, value in options.items())]) + "\n"
        for name, options in sections.items()
    )


def serve_command(
    *,
    hub: bool,
    cache_size_bytes: int,
    listen: str = f":{SERVE_PORT}",
    config_file: str = CONFIG_FILE,
    vfs_cache_dir: str = VFS_CACHE_DIR,
    dir_cache_time: str = DEFAULT_DIR_CACHE_TIME,
) -> list[str]:
    """`rclone serve s3` for the site cache; credentials come from `RCLONE_AUTH_KEY`.

    Edge (`hub`): a full VFS cache on the volume makes a hub object cross the WAN once however
    many jobs read it; PUTs are acknowledged once on the volume. A hub that fails answers a
    miss fast (one try, short connect timeout) instead of holding the job. In-cluster: no VFS
    cache (a PUT streams into the store, renamed into place on success).
    """
    command = [
        "rclone",
        "serve",
        "s3",
        f"{STORE_REMOTE}:",
        "--config",
        config_file,
        "--addr",
        listen,
        "--dir-cache-time",
        dir_cache_time,
        # No ETag: rclone would hash the whole object (GiBs) on every HEAD and GET; the runner
        # only logs it (commands/helpers/cache_extractor.go).
        "--etag-hash=",
        "--log-level",
        "INFO",
    ]
    if hub:
        command += [
            "--vfs-cache-mode",
            "full",
            "--cache-dir",
            vfs_cache_dir,
            "--vfs-cache-max-size",
            f"{int(cache_size_bytes * VFS_CACHE_SHARE) // 1024**2}M",
            "--vfs-cache-max-age",
            DEFAULT_VFS_CACHE_MAX_AGE,
            "--vfs-write-back",
            VFS_WRITE_BACK,
            "--low-level-retries",
            "1",
            "--contimeout",
            HUB_CONNECT_TIMEOUT,
            "--timeout",
            HUB_IDLE_TIMEOUT,
        ]
    return command


def push_command(
    *,
    bucket: str,
    prefix: str,
    replicate: Sequence[str],
    uplink_mbps: float,
    objects_dir: str = OBJECTS_DIR,
    config_file: str = CONFIG_FILE,
) -> list[str]:
    """Copy the replicated objects of the local store to the hub, within the uplink's budget.

    `--update` keeps a newer object at the hub (the last writer wins, not the last pusher).
    """
    command = [
        "rclone",
        "copy",
        cache_dir(bucket, prefix, objects_dir),
        f"{HUB_REMOTE}:{bucket}/{prefix}/",
        "--config",
        config_file,
        "--update",
        "--bwlimit",
        f"{push_bytes_per_second(uplink_mbps)}B",
        "--log-level",
        "INFO",
        "--stats-one-line",
    ]
    for rule in replicate_filters(replicate):
        command += ["--filter", rule]
    return command


def make_bucket_command(
    *, bucket: str, objects_dir: str = OBJECTS_DIR, config_file: str = CONFIG_FILE
) -> list[str]:
    """Create the bucket directory: `serve s3` serves the directories at its root as buckets,
    and the expiry works below it."""
    return ["rclone", "mkdir", bucket_dir(bucket, objects_dir), "--config", config_file]


def expire_command(
    *,
    bucket: str,
    expire_after: str = DEFAULT_EXPIRE_AFTER,
    objects_dir: str = OBJECTS_DIR,
    config_file: str = CONFIG_FILE,
) -> list[str]:
    """Delete local objects older than `expire_after`."""
    return [
        "rclone",
        "delete",
        bucket_dir(bucket, objects_dir),
        "--config",
        config_file,
        "--min-age",
        expire_after,
        "--log-level",
        "INFO",
    ]


def prune_command(
    *, bucket: str, objects_dir: str = OBJECTS_DIR, config_file: str = CONFIG_FILE
) -> list[str]:
    """Remove the directories the expiry left empty, keeping the bucket directory itself.

    A separate step: `rclone delete --rmdirs` together with `--min-age` also tries the
    directories that still hold younger objects and fails the run (rclone 1.75).
    """
    return [
        "rclone",
        "rmdirs",
        bucket_dir(bucket, objects_dir),
        "--config",
        config_file,
        "--leave-root",
        "--log-level",
        "INFO",
    ]
