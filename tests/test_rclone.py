"""The rclone configuration and command lines of a site cache (pure functions).

What rclone does with them is tested in tests/integration/test_edge_cache.py; these tests pin
the decisions: which globs can ever match a runner object, what the push may use of the
uplink, how the hub is mapped, and that no secret is ever on a command line.
"""

from __future__ import annotations

import configparser

import pytest

from components.cache_keys import replicate_object_patterns, replicate_problems
from components.workloads.rclone import (
    AUTH_KEY_ENV,
    HUB_ACCESS_KEY_ENV,
    HUB_REMOTE,
    HUB_SECRET_KEY_ENV,
    NEARLY_FULL_RATIO,
    OBJECTS_DIR,
    STORE_REMOTE,
    HubLocation,
    auth_key,
    cache_dir,
    expiry_loop_command,
    expiry_round_command,
    hub_wait_seconds,
    make_store_command,
    push_bytes_per_second,
    push_command,
    quantity_bytes,
    remote_config,
    replicate_filters,
    serve_command,
    volume_plan,
)

HUB = HubLocation(region="eu-west-1")
GIB = 1024**3


def flag(command: list[str], name: str) -> str:
    """The value after `name` on a command line."""
    return command[command.index(name) + 1]


def parsed(config: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read_string(config)
    return parser


@pytest.mark.parametrize(
    "glob",
    [
        "build-*-protected",
        "build-*-non_protected",
        "build-*",
        "deps/**",
        "node-?-protected",
        "*",
        "compile/main-protected",
    ],
)
def test_globs_that_can_match_a_runner_object_are_accepted(glob: str) -> None:
    assert replicate_problems([glob]) == []


@pytest.mark.parametrize(
    ("glob", "reason"),
    [
        # GitLab appends -protected/-non_protected to every key (gitlab-runner v19.3.0
        # executors/docker/volume.go reads the suffix back): a literal ending never matches.
        ("build-main", "can never match"),
        ("build-[0-9]*", "no IAM equivalent"),
        ("{build,test}-*", "no IAM equivalent"),
        ("/project/*/build-*", "no leading"),
        ("build-*/", "no leading, trailing"),
        ("a//b*", "repeated"),
        ("../other/*", "'..'"),
        ("build *", "whitespace"),
        ("", "empty"),
    ],
)
def test_globs_that_cannot_select_objects_are_refused(glob: str, reason: str) -> None:
    problems = replicate_problems([glob])
    assert len(problems) >= 1
    assert reason in " ".join(problems)


def test_hashed_cache_keys_and_replication_are_refused_together() -> None:
    # FF_HASH_CACHE_KEYS: the object is project/<id>/<2 hex>/<sha256> (gitlab-runner v19.3.0
    # cache/cache.go `sharded`, shells/abstract.go `newCacheConfig`): no key glob selects it.
    assert "FF_HASH_CACHE_KEYS" in replicate_problems(["build-*"], hash_cache_keys=True)[0]
    assert replicate_problems([], hash_cache_keys=True) == []


def test_the_filters_select_globs_below_each_project_and_skip_temporary_files() -> None:
    rules = replicate_filters(["build-*-protected", "deps/**"])

    assert rules == [
        "- .rclone_temp_*",
        "- *.partial",
        "+ /project/*/build-*-protected",
        "+ /project/*/deps/**",
        "- **",
    ]


def test_the_iam_patterns_sit_under_the_prefix_with_iam_wildcards() -> None:
    patterns = replicate_object_patterns("ci/runner-cache", ["build-*-protected", "deps/**"])

    assert patterns == [
        "ci/runner-cache/project/*/build-*-protected",
        "ci/runner-cache/project/*/deps/*",
    ]


def test_the_push_uses_80_percent_of_the_uplink() -> None:
    # 50 Mbit/s = 6.25 MB/s; 80% = 5 MB/s: 4 GiB then takes 859 s (docs/sites.md).
    assert push_bytes_per_second(50) == 5_000_000
    assert round(4 * GIB / push_bytes_per_second(50)) == 859
    assert push_bytes_per_second(1000, headroom=0.5) == 62_500_000
    with pytest.raises(ValueError, match="positive"):
        push_bytes_per_second(0)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("200Gi", 200 * GIB), ("500G", 500 * 10**9), ("1.5Ti", int(1.5 * 1024**4)), ("1024", 1024)],
)
def test_storage_quantities_are_read_as_kubernetes_does(quantity: str, expected: int) -> None:
    assert quantity_bytes(quantity) == expected


def test_a_malformed_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="quantity"):
        quantity_bytes("200GB")


def test_without_a_hub_the_store_is_the_local_directory() -> None:
    config = parsed(remote_config("runner-cache", "cache", None))

    assert config.sections() == [STORE_REMOTE]
    assert dict(config[STORE_REMOTE]) == {"type": "alias", "remote": OBJECTS_DIR}


def test_an_edge_writes_locally_and_reads_the_hub_read_only_after_the_local_copy() -> None:
    config = parsed(remote_config("hub-bucket", "runner-cache", HUB))
    store = config[STORE_REMOTE]

    assert store["type"] == "union"
    local, hub = store["upstreams"].split()
    assert local == OBJECTS_DIR
    assert hub.endswith(":ro")
    # backend/union/policy: `ff` creates on the first writable upstream and finds the first
    # upstream holding an object; `epall` acts on every writable copy.
    assert (store["create_policy"], store["search_policy"], store["action_policy"]) == (
        "ff",
        "ff",
        "epall",
    )


@pytest.mark.parametrize("prefix", ["runner-cache", "ci/runners/cache"])
def test_the_hub_side_maps_exactly_the_bucket_and_prefix(prefix: str) -> None:
    config = parsed(remote_config("hub-bucket", prefix, HUB))
    hub_upstream = config[STORE_REMOTE]["upstreams"].split()[1].removesuffix(":ro")

    # Walk the combine chain from the union: each level holds one directory.
    path, remote = [], hub_upstream.removesuffix(":")
    while config[remote]["type"] == "combine":
        directory, _, target = config[remote]["upstreams"].partition("=")
        path.append(directory)
        remote = target.split(":")[0]
        final_target = target

    # Down to `project`, where every object of a runner with `Shared = true` lives (gitlab-runner
    # v19.3.0 cache/cache.go): listing `<prefix>/` at the hub would only ever find `project/`.
    assert "/".join(path) == f"hub-bucket/{prefix}/project"
    # The trailing '/' spares a HEAD on `<bucket>/<prefix>/project` (backend/s3/s3.go NewFs).
    assert final_target == f"{HUB_REMOTE}:hub-bucket/{prefix}/project/"


def test_the_hub_remote_never_creates_the_bucket_and_holds_no_keys() -> None:
    aws = parsed(remote_config("hub-bucket", "runner-cache", HUB))[HUB_REMOTE]
    compatible = parsed(
        remote_config(
            "hub-bucket",
            "runner-cache",
            HubLocation(region="us-east-1", endpoint="https://s3.example.com", path_style=True),
        )
    )[HUB_REMOTE]

    assert (aws["provider"], aws["region"], aws["force_path_style"]) == (
        "AWS",
        "eu-west-1",
        "false",
    )
    assert "endpoint" not in aws
    assert (compatible["provider"], compatible["endpoint"], compatible["force_path_style"]) == (
        "Other",
        "https://s3.example.com",
        "true",
    )
    for hub in (aws, compatible):
        assert hub["no_check_bucket"] == "true"
        assert hub["env_auth"] == "false"
        assert not {"access_key_id", "secret_access_key"} & set(hub)


def test_the_hub_alone_gets_short_timeouts_and_one_sdk_attempt() -> None:
    config = parsed(remote_config("hub-bucket", "runner-cache", HUB))

    # `override.<name>` applies a global option while rclone creates that one remote
    # (fs/newfs.go addConfigToContext); the names are rclone's own (fs/config.go: `contimeout`,
    # not the `connect_timeout` docs/content/docs.md lists, which rclone would ignore). What
    # they do is measured against a refusing, dropping and hung hub in
    # tests/integration/test_edge_cache.py.
    assert {name: value for name, value in config[HUB_REMOTE].items() if "." in name} == {
        "override.contimeout": "1000ms",
        "override.timeout": "2000ms",
        "override.low_level_retries": "1",
    }
    for section in config.sections():
        if section != HUB_REMOTE:
            assert not [name for name in config[section] if name.startswith("override.")]


def test_a_request_waits_for_a_failing_hub_at_most_its_tries_timeouts_and_pacing() -> None:
    plain = HubLocation(region="us-east-1", endpoint="http://minio.lan:9000", path_style=True)
    # Per listing: two tries (backend/s3/s3.go SetRetries(2)), each bounded by 1 s to connect
    # and 2 s to answer, 2 s pacing between failing tries (lib/pacer/pacers.go NewS3).
    assert hub_wait_seconds(1, plain) == 2 * 3 + 2
    assert hub_wait_seconds(2, plain) == 4 * 3 + 3 * 2
    # Over HTTPS the handshake has a timeout of its own, `contimeout` again
    # (fs/fshttp/http.go: TLSHandshakeTimeout = ConnectTimeout), after the dial's.
    assert hub_wait_seconds(1, HUB) == 2 * 4 + 2
    assert hub_wait_seconds(2, HUB) == 4 * 4 + 3 * 2


@pytest.mark.parametrize(
    ("endpoint", "tls"),
    [
        ("", True),  # AWS S3
        ("https://s3.example.com", True),
        ("s3.example.com", True),  # rclone adds https:// (backend/s3/s3.go NewFs)
        ("http://minio.lan:9000", False),
    ],
)
def test_the_hub_is_reached_over_tls_unless_its_endpoint_is_plain_http(
    endpoint: str, tls: bool
) -> None:
    assert HubLocation(region="us-east-1", endpoint=endpoint).tls is tls


@pytest.mark.parametrize("has_hub", [True, False])
def test_the_volume_holds_the_vfs_cache_and_the_store_with_headroom(has_hub: bool) -> None:
    plan = volume_plan(500 * GIB, has_hub=has_hub)

    # An upload sits in the VFS cache and in the store until the VFS cache evicts it: both are
    # bounded, and what they may fill together leaves a fifth of the volume free.
    assert plan.vfs_cache_bytes + plan.store_bytes + plan.headroom_bytes == 500 * GIB
    assert plan.headroom_bytes == pytest.approx(100 * GIB, abs=1)
    assert plan.vfs_cache_bytes == (150 * GIB if has_hub else 0)
    assert 1 - plan.headroom_bytes / plan.volume_bytes < NEARLY_FULL_RATIO < 1
    with pytest.raises(ValueError, match="positive"):
        volume_plan(0, has_hub=has_hub)


def test_the_keys_reach_rclone_through_its_environment() -> None:
    # rclone reads RCLONE_CONFIG_<REMOTE>_<OPTION> for a remote's options and RCLONE_AUTH_KEY
    # for `--auth-key` (CSV: the pair is quoted because it contains a comma).
    assert HUB_ACCESS_KEY_ENV == "RCLONE_CONFIG_HUB_ACCESS_KEY_ID"
    assert HUB_SECRET_KEY_ENV == "RCLONE_CONFIG_HUB_SECRET_ACCESS_KEY"
    assert AUTH_KEY_ENV == "RCLONE_AUTH_KEY"
    assert auth_key("AKID", "s3cr3t") == '"AKID,s3cr3t"'
    with pytest.raises(ValueError, match="alphanumeric"):
        auth_key("AKID", "with,comma")


def test_no_command_line_carries_a_key() -> None:
    commands = [
        serve_command(hub=True, cache_size_bytes=200 * GIB),
        serve_command(hub=False, cache_size_bytes=200 * GIB),
        push_command(bucket="b", prefix="p", replicate=["build-*"], uplink_mbps=50),
        expiry_loop_command(expiry_round_command(bucket="b", max_bytes=1)),
    ]
    for command in commands:
        assert not [
            arg
            for arg in command
            if arg.startswith(("--auth-key", "--rc-pass", "--pass")) or "secret" in arg
        ]


def test_an_edge_server_caches_on_its_share_of_the_volume_and_lists_every_five_minutes() -> None:
    command = serve_command(hub=True, cache_size_bytes=200 * GIB)

    assert command[:4] == ["rclone", "serve", "s3", f"{STORE_REMOTE}:"]
    assert flag(command, "--vfs-cache-mode") == "full"
    assert flag(command, "--vfs-cache-max-size") == f"{60 * 1024}M"
    assert flag(command, "--dir-cache-time") == "5m"
    assert "--etag-hash=" in command
    # The remote control the expiry tells what it deleted: loopback only, a user and the
    # password from RCLONE_RC_PASS (never `--rc-no-auth`).
    assert "--rc" in command
    assert (flag(command, "--rc-addr"), flag(command, "--rc-user")) == ("127.0.0.1:5572", "expiry")
    # Timeouts and retries are the hub's own (its config section): global flags would also
    # reach the local store and the VFS cache's uploads into it.
    assert not {"--low-level-retries", "--contimeout", "--timeout"} & set(command)


def test_an_in_cluster_server_streams_writes_to_its_store() -> None:
    command = serve_command(hub=False, cache_size_bytes=200 * GIB)

    assert "--vfs-cache-mode" not in command
    assert "--low-level-retries" not in command


def test_the_push_copies_the_cache_prefix_to_the_same_place_at_the_hub() -> None:
    command = push_command(
        bucket="hub-bucket", prefix="runner-cache", replicate=["build-*"], uplink_mbps=50
    )

    assert command[:4] == [
        "rclone",
        "copy",
        cache_dir("hub-bucket", "runner-cache"),
        f"{HUB_REMOTE}:hub-bucket/runner-cache/",
    ]
    assert flag(command, "--bwlimit") == "5000000B"
    assert "--update" in command
    filters = [command[i + 1] for i, arg in enumerate(command) if arg == "--filter"]
    assert filters == replicate_filters(["build-*"])


def test_the_store_is_made_down_to_the_runners_objects_and_expired_below_the_bucket() -> None:
    # The init container creates `<bucket>/<Path>/project` (rclone mkdir makes the parents):
    # the directory where the union meets the hub exists before the first request.
    assert make_store_command(bucket="b", prefix="ci/cache")[:3] == [
        "rclone",
        "mkdir",
        f"{OBJECTS_DIR}/b/ci/cache/project",
    ]
    expiry = expiry_round_command(bucket="b", max_bytes=1000)
    assert expiry[:2] == ["sh", "-c"]
    # The store's bucket directory, and the bucket as the server's paths start with it.
    assert expiry[3:] == [
        "expiry",
        f"{OBJECTS_DIR}/b",
        "b",
        "168h",
        "1000",
        "/etc/rclone/rclone.conf",
        "http://127.0.0.1:5572/",
        "expiry",
        "100",
        "2s",
        "60s",
    ]
    with pytest.raises(ValueError, match="max_bytes, the store's bound, must be positive"):
        expiry_round_command(bucket="b", max_bytes=0)
    with pytest.raises(ValueError, match="forget_batch must be positive"):
        expiry_round_command(bucket="b", max_bytes=1000, forget_batch=0)


def test_the_expiry_loop_waits_its_interval_before_each_round() -> None:
    round_command = expiry_round_command(bucket="b", max_bytes=1000)
    loop = expiry_loop_command(round_command)

    assert loop[:2] == ["sh", "-c"]
    assert loop[3:] == ["expiry-loop", "600", *round_command]
    assert expiry_loop_command(round_command, 0.2)[4] == "0.2"


def test_a_glob_listed_twice_is_refused():
    """It would grant one IAM resource twice (found trying it as a new user)."""
    assert replicate_problems(["deps-*", "deps-*"]) == [
        "replicate glob 'deps-*' is listed more than once"
    ]
