"""Shared fixtures: the mocks harness lives in tests/harness.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from parliament import analyze_policy_string


@pytest.fixture
def lint_policy() -> Callable[[dict[str, Any]], list[tuple[str, Any]]]:
    """Runs the parliament IAM linter (community auditors included); returns its findings."""

    def lint(document: dict[str, Any]) -> list[tuple[str, Any]]:
        policy = analyze_policy_string(json.dumps(document), include_community_auditors=True)
        return [(finding.issue, finding.detail) for finding in policy.findings]

    return lint
