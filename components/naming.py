"""Names and tags shared by every component. Pure functions: no Pulumi runtime needed."""

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from typing import TypedDict

S3_BUCKET_NAME_MAX = 63
_BUCKET_NAME_CHARS = re.compile(r"^[a-z0-9-]+$")
# Reserved by AWS for access points, S3 Express, table buckets and similar: creation fails.
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problems(name: str) -> list[str]:
    """Every way `name` breaks the S3 general purpose bucket naming rules (empty when valid).

    Dots are refused although S3 allows them: a dotted name no longer matches the
    `*.s3.amazonaws.com` TLS certificate for virtual-hosted-style requests.
    """
    problems = []
    if not 3 <= len(name) <= S3_BUCKET_NAME_MAX:
        problems.append(f"must be 3 to {S3_BUCKET_NAME_MAX} characters long, not {len(name)}")
    if "." in name:
        problems.append(
            "must not contain dots (they break TLS for virtual-hosted-style S3 requests)"
        )
    if not _BUCKET_NAME_CHARS.match(name.replace(".", "")):
        problems.append("may contain only lowercase letters, digits and hyphens")
    if name and not (name[0].isalnum() and name[-1].isalnum()):
        problems.append("must begin and end with a lowercase letter or digit")
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        problems.append(
            f"must not start with {', '.join(_RESERVED_PREFIXES)} "
            f"or end with {', '.join(_RESERVED_SUFFIXES)} (reserved by AWS)"
        )
    try:
        ipaddress.ip_address(name)
        problems.append("must not be formatted as an IP address")
    except ValueError:
        pass
    return problems


_S3_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$")


def s3_prefix_problems(prefix: str) -> list[str]:
    """Why `prefix` cannot scope cache objects, a lifecycle rule and an IAM policy alike."""
    if _S3_PREFIX.match(prefix):
        return []
    return [
        "must be a non-empty S3 key prefix without leading or trailing '/' and of letters, "
        f"digits and !_.*'()- only, e.g. 'runner-cache', got {prefix!r}"
    ]


_GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")


def go_duration_problems(duration: str) -> list[str]:
    """Why `duration` is not a Go duration (`10m`, `1h30m`), as the runner's and
    cluster-autoscaler's flags take them."""
    return [] if _GO_DURATION.match(duration) else ["must be a duration such as 10m or 1h30m"]


_IAM_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_IAM_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")


def iam_role_arn_problems(arn: str) -> list[str]:
    """Why `arn` is not an IAM role ARN."""
    return [] if _IAM_ROLE_ARN.match(arn) else [f"must be an IAM role ARN, got {arn!r}"]


def iam_principal_arn_problems(arn: str) -> list[str]:
    """Why `arn` is not an IAM role or user ARN (an EKS access entry's principal)."""
    if _IAM_PRINCIPAL_ARN.match(arn):
        return []
    return [
        "each entry must be an IAM role or user ARN such as "
        f"arn:aws:iam::123456789012:role/gitlab-deploy, got {arn!r}"
    ]


def derived_bucket_name(project: str, stack: str, account_id: str) -> str:
    """A deterministic, valid, globally unique-per-account bucket name for a stack's cache.

    `<project>-<stack>-cache-<account id>`, lower-cased with invalid characters turned into
    hyphens. When that exceeds 63 characters the project/stack part is shortened and a short
    hash of the full part keeps two long stack names from colliding.
    """
    suffix = f"-{account_id}"
    stem = re.sub(r"[^a-z0-9]+", "-", f"{project}-{stack}-cache".lower()).strip("-")
    if stem.startswith(_RESERVED_PREFIXES):
        # S3 refuses these prefixes; such a project name would otherwise get no bucket at all.
        stem = f"runner-{stem}"
    room = S3_BUCKET_NAME_MAX - len(suffix)
    if len(stem) > room:
        digest = hashlib.sha256(stem.encode()).hexdigest()[:8]
        stem = f"{stem[: room - len(digest) - 1].rstrip('-')}-{digest}"
    return f"{stem}{suffix}"


def resource_tags(
    project: str, stack: str, component: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Cost-allocation tags for one component's AWS resources.

    The three allocation keys always win over `extra`, so cost reports group every stack alike.
    """
    return {**(extra or {}), "project": project, "stack": stack, "component": component}


ALLOCATION_TAG_KEYS = ("project", "stack", "component")


class TagArgs(TypedDict):
    """One AWS tag, as component arguments take it."""

    key: str
    value: str


def tag_problems(key: str, value: object) -> list[str]:
    """Why AWS refuses a resource tag: keys of 1-128 characters not starting with `aws:`,
    values strings of at most 256 (EC2 and IAM tagging rules)."""
    problems = []
    if key.lower().startswith("aws:") or not 1 <= len(key) <= 128:
        problems.append("tag keys must be 1-128 characters and not start with 'aws:'")
    if not isinstance(value, str) or len(value) > 256:
        problems.append(f"must be a string of at most 256 characters, got {value!r}")
    return problems
