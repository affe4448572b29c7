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
exactly `<bucket>/<Path>/project/` onto the hub: the hub is never listed above it, so its
credential needs neither `s3:ListAllMyBuckets` nor a listing of the bucket's root, and a
request walks one directory fewer at the hub.

The hub costs a request time only where a directory's listing is older than the directory
cache: the VFS lists a directory under its lock and the union waits for every upstream
(`vfs/dir.go` `_readDir`, `backend/union/union.go` `List`). Short timeouts for the hub
remote alone bound that wait; a long directory cache makes it rare.

Secrets never appear here: the hub's access key reaches rclone as
`RCLONE_CONFIG_HUB_ACCESS_KEY_ID`/`..._SECRET_ACCESS_KEY` and the server's own key pair as
`RCLONE_AUTH_KEY`, all from a Kubernetes Secret.
"""

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
RUNNER_OBJECTS = "project"
"""The directory below `Path` that holds every object of a runner with `Shared = true`."""

AUTH_KEY_ENV = "RCLONE_AUTH_KEY"
"""`serve s3 --auth-key` as an environment variable: CSV of `"<access key>,<secret key>"`."""
RC_ADDR = "127.0.0.1:5572"
"""The server's remote control (`--rc`), on the pod's loopback: the expiry beside it tells the
server through it which objects it deleted."""
RC_USER = "expiry"
RC_PASS_ENV = "RCLONE_RC_PASS"
"""The server's `--rc-pass`. rclone 1.75 refuses every rc call not marked NoAuth, `vfs/forget`
among them, unless the server has credentials or `--rc-no-auth` (fs/rc/rcserver/rcserver.go)."""
RC_CLIENT_PASS_ENV = "RCLONE_PASS"
"""The same password as `rclone rc --pass` reads it (cmd/rc/rc.go; fs/config/flags sets a
command's flag from `RCLONE_<FLAG>`)."""
HUB_ACCESS_KEY_ENV = f"RCLONE_CONFIG_{HUB_REMOTE.upper()}_ACCESS_KEY_ID"
HUB_SECRET_KEY_ENV = f"RCLONE_CONFIG_{HUB_REMOTE.upper()}_SECRET_ACCESS_KEY"

DEFAULT_UPLINK_HEADROOM = 0.8
"""Share of the uplink the push may use, so jobs and everything else at the site keep some."""
DEFAULT_DIR_CACHE_TIME = "5m"
"""How long the server trusts a directory listing: an object another site pushed to the hub
shows at the edge at most this long after it landed there (the push itself runs every 5
minutes). Every expiry costs the next request into that directory one LIST at the hub, and
when the hub fails, the wait `hub_wait_seconds` bounds."""
DEFAULT_EXPIRE_AFTER = "168h"
"""Local objects older than this are deleted (a week: longer than any pipeline)."""
EXPIRY_INTERVAL_SECONDS = 600
"""The expiry runs every 10 minutes: the store may outgrow its bound by at most 10 minutes of
uploads, which the volume's headroom takes (`volume_plan`)."""
FORGET_BATCH = 100
"""Objects the expiry names to the server per `vfs/forget` call: command lines stay short."""
RC_CONNECT_TIMEOUT_SECONDS = 2
RC_RESPONSE_TIMEOUT_SECONDS = 60
"""How long the expiry waits for the server to forget. Forgetting takes a moment, unless a
directory on the object's path is being listed: the listing holds that directory's lock while
it waits for a failing hub (`hub_wait_seconds`, longer while requests queue for the hub). Past
this the round fails, and the server answers from the old listing until it expires."""
DEFAULT_VFS_CACHE_MAX_AGE = "24h"
"""Objects read from the hub stay in the VFS cache this long after their last use."""
VFS_WRITE_BACK = "1s"
"""Delay between a PUT's completion and its copy into the local store (the push reads the
store). A local copy is cheap, and an upload still pending is recovered from the VFS cache
after a restart, so there is nothing to gain from rclone's default 5s."""

# The hub remote's own networking, as `override.<global option>` in its config section
# (fs/newfs.go `addConfigToContext`; option names from fs/config.go): they apply to the S3
# client the backend builds at start (backend/s3/s3.go `getClient`, fs/fshttp/dialer.go) and
# to nothing else, so the local store and the VFS keep rclone's defaults.
HUB_CONNECT_TIMEOUT_SECONDS = 1.0
"""`contimeout`: the TCP connect, and again the TLS handshake (two timeouts of this length,
fs/fshttp/dialer.go and http.go `TLSHandshakeTimeout`). A WAN round trip to S3 is well under
this."""
HUB_RESPONSE_TIMEOUT_SECONDS = 2.0
"""`timeout`: response headers and every idle read or write. An S3 LIST answers in a fraction
of this; one that takes longer is dropped, and the directory is served from the local store
alone until its listing expires."""
HUB_TRIES = 2
"""Tries per hub request: the s3 backend's pacer always makes two (backend/s3/s3.go `NewFs`,
`SetRetries(2)`), and `override.low_level_retries = 1` keeps the AWS SDK from retrying inside
each of them (`RetryMaxAttempts`)."""
HUB_PACER_MAX_SLEEP_SECONDS = 2.0
"""While hub requests keep failing, the s3 pacer spaces them up to this far apart
(lib/pacer/pacers.go `NewS3`); no option changes it."""

VFS_CACHE_SHARE = 0.3
"""Share of an edge's volume for the VFS cache: objects read from the hub, and a second copy
of every recent upload (a PUT lands in the VFS cache and is then copied into the store)."""
STORE_SHARE_WITH_HUB = 0.5
"""Share of an edge's volume for the local store."""
STORE_SHARE_ALONE = 0.8
"""Share of a cache without a hub for its store (it has no VFS cache)."""
MIN_VOLUME_BYTES = 2**30
"""The smallest cache volume: its VFS cache share must come to whole megabytes, or rclone's
`--vfs-cache-max-size 0M` would set no bound at all (vfs/vfscache/cache.go maxSizeQuotaOK:
0 or less is no quota)."""
NEARLY_FULL_RATIO = 0.9
"""Used share of the volume past which it is nearly full: the planned shares leave 20% for
uploads in flight and for growth between two trims, and half of that is gone."""


@dataclass(frozen=True)
class HubLocation:
    """Where the hub's cache bucket is reached (its name and prefix are the site's own)."""

    region: str
    """The bucket's region."""
    endpoint: str = ""
    """S3 endpoint URL; empty for AWS S3 in `region`."""
    path_style: bool = False
    """Path-style requests (S3-compatible stores); AWS S3 uses virtual-hosted style."""

    @property
    def tls(self) -> bool:
        """Whether rclone reaches the hub over HTTPS: AWS S3, and any endpoint but `http://`
        (rclone puts `https://` before an endpoint without a scheme, backend/s3/s3.go)."""
        return not self.endpoint.startswith("http://")


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


@dataclass(frozen=True)
class VolumePlan:
    """How a cache volume is shared out. Both the VFS cache and the store are bounded, and what
    they may fill together leaves headroom for uploads in flight and for the store's growth
    between two trims."""

    volume_bytes: int
    vfs_cache_bytes: int
    """`--vfs-cache-max-size`; rclone evicts unused, uploaded entries above it."""
    store_bytes: int
    """The store's bound: the expiry deletes the oldest objects above it."""

    @property
    def headroom_bytes(self) -> int:
        """What neither may fill."""
        return self.volume_bytes - self.vfs_cache_bytes - self.store_bytes


def volume_plan(volume_bytes: int, *, has_hub: bool) -> VolumePlan:
    """The VFS cache's and the store's bounds on a volume of `volume_bytes`."""
    if volume_bytes <= 0:
        raise ValueError(f"the cache volume must have a positive size, got {volume_bytes}")
    if has_hub:
        return VolumePlan(
            volume_bytes,
            int(volume_bytes * VFS_CACHE_SHARE),
            int(volume_bytes * STORE_SHARE_WITH_HUB),
        )
    return VolumePlan(volume_bytes, 0, int(volume_bytes * STORE_SHARE_ALONE))


def hub_wait_seconds(listings: int, hub: HubLocation) -> float:
    """The longest a request waits for a hub that refuses, drops or never answers, when
    `listings` directories on its path have to be listed again (their listing is older than the
    directory cache) and no other request is waiting for the hub: every try waits for its
    timeouts (connect, the TLS handshake over HTTPS, the response) and, after the first, for the
    pacer. The pacer is the hub remote's, shared by every request (backend/s3/s3.go, one per
    remote; lib/pacer/pacer.go hands out one call per sleep): while the hub fails, each request
    queued behind another starts up to `HUB_PACER_MAX_SLEEP_SECONDS` later."""
    connect_timeouts = 2 if hub.tls else 1
    per_try = connect_timeouts * HUB_CONNECT_TIMEOUT_SECONDS + HUB_RESPONSE_TIMEOUT_SECONDS
    tries = listings * HUB_TRIES
    return tries * per_try + max(0, tries - 1) * HUB_PACER_MAX_SLEEP_SECONDS


def bucket_dir(bucket: str, objects_dir: str = OBJECTS_DIR) -> str:
    """The served bucket in the local store."""
    return f"{objects_dir}/{bucket}"


def cache_dir(bucket: str, prefix: str, objects_dir: str = OBJECTS_DIR) -> str:
    """The runner's `Path` in the local store: the push's source."""
    return f"{bucket_dir(bucket, objects_dir)}/{prefix}"


def runner_objects_dir(bucket: str, prefix: str, objects_dir: str = OBJECTS_DIR) -> str:
    """`<Path>/project` in the local store, where the union meets the hub. It must exist, and
    so must every directory below it that the server has seen: a directory the local store
    lacks can only be listed at the hub, which fails while the hub is down, and rclone then
    refuses to create anything in it (500). So the expiry deletes objects, never directories."""
    return f"{cache_dir(bucket, prefix, objects_dir)}/{RUNNER_OBJECTS}"


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
    segments = [bucket, *prefix.split("/"), RUNNER_OBJECTS]
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
            "override.contimeout": _duration(HUB_CONNECT_TIMEOUT_SECONDS),
            "override.timeout": _duration(HUB_RESPONSE_TIMEOUT_SECONDS),
            "override.low_level_retries": "1",
        }
    }
    for level, segment in enumerate(segments):
        # The trailing '/' keeps rclone from probing whether `<bucket>/<Path>/project` is a
        # file (a HEAD the hub's credential may not make).
        target = (
            f"{HUB_REMOTE}:{bucket}/{prefix}/{RUNNER_OBJECTS}/"
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


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


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
    rc_addr: str = RC_ADDR,
) -> list[str]:
    """`rclone serve s3` for the site cache; credentials come from `RCLONE_AUTH_KEY`, the remote
    control's password from `RCLONE_RC_PASS`.

    Edge (`hub`): a full VFS cache on the volume makes a hub object cross the WAN once however
    many jobs read it; PUTs are acknowledged once on the volume. The hub's timeouts live in its
    config section (`remote_config`), not here: global flags would reach the local store too.
    In-cluster: no VFS cache (a PUT streams into the store, renamed into place on success).
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
        # The expiry deletes files behind the VFS's back and then names them here
        # (`vfs/forget`), or the server would answer from its listing until it expires.
        "--rc",
        "--rc-addr",
        rc_addr,
        "--rc-user",
        RC_USER,
    ]
    if hub:
        command += [
            "--vfs-cache-mode",
            "full",
            "--cache-dir",
            vfs_cache_dir,
            "--vfs-cache-max-size",
            f"{volume_plan(cache_size_bytes, has_hub=True).vfs_cache_bytes // 1024**2}M",
            "--vfs-cache-max-age",
            DEFAULT_VFS_CACHE_MAX_AGE,
            "--vfs-write-back",
            VFS_WRITE_BACK,
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


def make_store_command(
    *, bucket: str, prefix: str, objects_dir: str = OBJECTS_DIR, config_file: str = CONFIG_FILE
) -> list[str]:
    """Create the store's directories down to `<bucket>/<Path>/project` (`rclone mkdir` makes
    the parents too): `serve s3` serves the directories at its root as buckets, and a fresh or
    emptied store then takes PUTs while the hub is down (`runner_objects_dir`)."""
    return [
        "rclone",
        "mkdir",
        runner_objects_dir(bucket, prefix, objects_dir),
        "--config",
        config_file,
    ]


def expiry_round_command(
    *,
    bucket: str,
    max_bytes: int,
    expire_after: str = DEFAULT_EXPIRE_AFTER,
    objects_dir: str = OBJECTS_DIR,
    config_file: str = CONFIG_FILE,
    rc_addr: str = RC_ADDR,
    forget_batch: int = FORGET_BATCH,
) -> list[str]:
    """One round of the expiry, in the server's pod: delete the local objects older than
    `expire_after`, then the oldest ones (by modification time, that is by upload) until the
    store holds at most `max_bytes`, and after each deletion name the deleted objects to the
    server (`vfs/forget`), so that it lists their directories again at the next request and
    answers 404 instead of serving a file that is gone.

    rclone has no trim command: the rclone image's shell sorts `rclone lsf`'s listing, and
    `rclone delete --files-from-raw` takes the names as they are (spaces, `;`, `#` and `=`
    included). The password for the remote control comes from `RCLONE_PASS`."""
    if max_bytes <= 0:
        raise ValueError(f"max_bytes, the store's bound, must be positive, got {max_bytes}")
    if forget_batch <= 0:
        raise ValueError(f"forget_batch must be positive, got {forget_batch}")
    return [
        "sh",
        "-c",
        _EXPIRY_ROUND_SCRIPT,
        "expiry",
        bucket_dir(bucket, objects_dir),
        bucket,
        expire_after,
        str(max_bytes),
        config_file,
        f"http://{rc_addr}/",
        RC_USER,
        str(forget_batch),
        f"{RC_CONNECT_TIMEOUT_SECONDS}s",
        f"{RC_RESPONSE_TIMEOUT_SECONDS}s",
    ]


def expiry_loop_command(
    round_command: Sequence[str], interval_seconds: float = EXPIRY_INTERVAL_SECONDS
) -> list[str]:
    """The expiry container: a round every `interval_seconds`, the first one that long after
    the start (the server has nothing listed before). A failed round is logged and the next one
    runs on time. SIGTERM ends the wait at once: `sh` as PID 1 would ignore it and hold the pod's
    termination for its whole grace period."""
    return ["sh", "-c", _EXPIRY_LOOP_SCRIPT, "expiry-loop", str(interval_seconds), *round_command]


_EXPIRY_LOOP_SCRIPT = """trap 'exit 0' TERM INT
interval=$1
shift
while :; do
  sleep "$interval" &
  wait $!
  "$@" || echo "expiry: the round failed (exit $?); the next one in ${interval}s" >&2
done
"""

# Arguments: the store's bucket directory, the bucket (the first directory of the server's
# paths), the age, the bound in bytes, the config file, the remote control's URL and user, the
# batch size, the remote control's connect and response timeouts. Listings go to files first
# (no `pipefail` in POSIX sh). The trim: newest first, a running total keeps objects while it
# fits the bound and names the rest; names come after the first two fields, whatever separators
# they contain. Nothing is deleted when a list is empty (an empty `--files-from-raw` must never
# reach rclone; `--files-from-raw` takes no other filter, so the delete trusts the listing). A
# failed delete still has its list forgotten (some of it may be gone), and the round carries on,
# failing at the end.
_EXPIRY_ROUND_SCRIPT = """set -eu
root=$1 bucket=$2 age=$3 limit=$4 config=$5 rc=$6 user=$7 batch=$8 contimeout=$9 timeout=${10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
forget_batch() {
  rclone rc --config "$config" --url "$rc" --user "$user" \\
    --contimeout "$contimeout" --timeout "$timeout" --no-output vfs/forget "$@"
}
forget() {
  list=$1
  set --
  while IFS= read -r name; do
    set -- "$@" "file$#=$bucket/$name"
    if [ $# -ge "$batch" ]; then
      forget_batch "$@" || return 1
      set --
    fi
  done < "$list"
  if [ $# -gt 0 ]; then
    forget_batch "$@"
  fi
}
remove() {
  list=$1
  if [ -s "$list" ]; then
    rclone delete --config "$config" --files-from-raw "$list" "$root" --log-level INFO \\
      || failed=1
    if forget "$list"; then
      echo "expiry: the server forgot $(wc -l < "$list") deleted objects"
    else
      failed=1
    fi
  fi
}
rclone lsf --config "$config" -R --files-only --min-age "$age" "$root" > "$work/expired"
remove "$work/expired"
rclone lsf --config "$config" -R --files-only --format tsp --separator ';' \\
  --time-format '2006-01-02 15:04:05.000000000' "$root" > "$work/all"
LC_ALL=C sort -r "$work/all" | awk -F';' -v limit="$limit" \\
  '{ total += $2; if (total > limit) print substr($0, length($1) + length($2) + 3) }' \\
  > "$work/trimmed"
remove "$work/trimmed"
exit "$failed"
"""


def volume_size_problems(size: str) -> list[str]:
    """Why `size` cannot be an edge or in-cluster cache volume."""
    try:
        size_bytes = quantity_bytes(size)
    except ValueError:
        return ["must be a Kubernetes quantity such as 100Gi"]
    if size_bytes < MIN_VOLUME_BYTES:
        return ["must be at least 1Gi: the volume holds the store and rclone's bounded cache"]
    return []
