"""Bucket names and tags."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from components.naming import bucket_name_problems, derived_bucket_name, resource_tags

ACCOUNT = "123456789012"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ab", "3 to 63 characters"),
        ("a" * 64, "3 to 63 characters"),
        ("My-Cache", "lowercase letters, digits and hyphens"),
        ("cache_bucket", "lowercase letters, digits and hyphens"),
        ("-cache", "begin and end"),
        ("cache-", "begin and end"),
        ("my.cache", "must not contain dots"),
        ("192.168.5.4", "IP address"),
        ("xn--cache", "reserved by AWS"),
        ("sthree-cache", "reserved by AWS"),
        ("cache-s3alias", "reserved by AWS"),
        ("cache--ol-s3", "reserved by AWS"),
    ],
)
def test_invalid_bucket_names_are_explained(name: str, fragment: str) -> None:
    assert any(fragment in problem for problem in bucket_name_problems(name))


@pytest.mark.parametrize("name", ["abc", "gitlab-runner-cache", "a" * 63, "0cache9"])
def test_valid_bucket_names_have_no_problems(name: str) -> None:
    assert bucket_name_problems(name) == []


def test_derived_name_is_project_stack_and_account() -> None:
    assert derived_bucket_name("gitlab-runner-fleet", "prod", ACCOUNT) == (
        "gitlab-runner-fleet-prod-cache-123456789012"
    )


def test_long_stack_names_are_shortened_with_a_distinguishing_hash() -> None:
    first = derived_bucket_name("gitlab-runner-fleet", "eu-central-1-production-blue", ACCOUNT)
    second = derived_bucket_name("gitlab-runner-fleet", "eu-central-1-production-green", ACCOUNT)
    assert len(first) == len(second) == 63
    assert first != second
    assert first.endswith(f"-{ACCOUNT}")
    assert second.endswith(f"-{ACCOUNT}")


names = st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=80).filter(
    lambda text: any(char.isalnum() for char in text)
)


@given(project=names, stack=names)
@example(project="AMZN:S3:DEMO", stack="0")  # found by hypothesis: a prefix S3 reserves
@example(project="sthree", stack="prod")
@settings(derandomize=True)  # the same examples on every run, CI included
def test_derived_names_are_always_valid_and_deterministic(project: str, stack: str) -> None:
    name = derived_bucket_name(project, stack, ACCOUNT)
    assert bucket_name_problems(name) == []
    assert name == derived_bucket_name(project, stack, ACCOUNT)


def test_allocation_tags_win_over_extra_tags() -> None:
    tags = resource_tags("p", "prod", "cache-bucket", {"stack": "spoofed", "cost-center": "42"})
    assert tags == {
        "project": "p",
        "stack": "prod",
        "component": "cache-bucket",
        "cost-center": "42",
    }
