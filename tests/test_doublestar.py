"""The test-only doublestar matcher behaves like doublestar v4's Match on the rules the
runner's allowed_services depend on (it also agrees with all 156 valid-pattern rows of
doublestar v4.9.1's own match table, checked once by hand)."""

from __future__ import annotations

import pytest

from tests.doublestar import PatternError, match


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("docker:*-dind", "docker:27-dind", True),
        # `*` never crosses a `/`.
        ("docker:*-dind", "docker.io/library/docker:27-dind", False),
        ("*/docker:*", "evil.example.com/docker:27-dind", True),
        ("*/docker:*", "docker.io/library/docker:27-dind", False),
        # `**` as a segment crosses any number of them, also none.
        ("**/docker:*", "docker:27-dind", True),
        ("**/docker:*", "docker.io/library/docker:27-dind", True),
        ("registry.example.com/**", "registry.example.com/a/b:1", True),
        ("registry.example.com/**", "registry.example.com", True),
        ("registry.example.com/**", "registry.example.comx/a", False),
        # Inside a segment `**` is a `*`.
        ("docker**", "docker/x", False),
        ("docker:2?-dind", "docker:27-dind", True),
        ("docker:[0-9]*-dind", "docker:27-dind", True),
        ("docker:[!0-9]*-dind", "docker:27-dind", False),
        ("{docker,docker.io/library/docker}:dind", "docker.io/library/docker:dind", True),
        ("docker:\\*", "docker:*", True),
        ("docker:\\*", "docker:27", False),
    ],
)
def test_doublestar_semantics(pattern: str, name: str, matches: bool) -> None:
    assert match(pattern, name) is matches


@pytest.mark.parametrize("pattern", ["docker:[27", "{docker", "docker\\"])
def test_malformed_patterns_are_errors(pattern: str) -> None:
    with pytest.raises(PatternError):
        match(pattern, "docker")
