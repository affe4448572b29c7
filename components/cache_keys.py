"""Cache keys as the runner names its objects, and which of them a site's `replicate` globs
select: rules shared by the settings, the edge's IAM (aws/) and its rclone push (workloads/).
Pure: no Pulumi."""

import re
from collections.abc import Sequence

# GitLab appends one of these to every cache key unless the project turns off separate caches
# for protected branches; the runner's object name ends with it (executors/docker/volume.go
# reads the same suffixes).
PROTECTION_SUFFIXES = ("-protected", "-non_protected")
# rclone filter syntax with no IAM equivalent: character classes, alternatives, regexps,
# escapes (rclone docs/content/filtering.md).
_RCLONE_ONLY_SYNTAX = re.compile(r"[\[\]{}\\]")
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


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
    problems += [
        f"replicate glob {glob!r} is listed more than once"
        for glob in sorted({glob for glob in globs if list(globs).count(glob) > 1})
    ]
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


def replicate_object_patterns(prefix: str, globs: Sequence[str]) -> list[str]:
    """IAM object key patterns (below the bucket) that cover everything the filters select.

    IAM's `*` matches any characters including `/`; rclone's `*` stops at `/` and `**` does
    not. Mapping both to IAM `*` (and `?` to `?`) makes each pattern match a superset of what
    the push selects, never less: IAM is the outer bound, the filter the exact choice.
    """
    return [f"{prefix}/project/*/{glob.replace('**', '*')}" for glob in globs]
