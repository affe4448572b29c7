"""Shared fixtures: the mocks harness lives in tests/harness.py."""

from __future__ import annotations

import gc
import json
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes_validate
import pytest
from parliament import analyze_policy_string


@pytest.fixture
def lint_policy() -> Callable[[dict[str, Any]], list[tuple[str, Any]]]:
    """Runs the parliament IAM linter (community auditors included); returns its findings."""

    def lint(document: dict[str, Any]) -> list[tuple[str, Any]]:
        policy = analyze_policy_string(json.dumps(document), include_community_auditors=True)
        return [(finding.issue, finding.detail) for finding in policy.findings]

    return lint


@pytest.fixture
def validate_manifest() -> Callable[[dict[str, Any]], None]:
    """Validates a Kubernetes object against the bundled OpenAPI schema (strict: no unknown keys)."""

    def validate(manifest: dict[str, Any]) -> None:
        kubernetes_validate.validate(manifest, KUBERNETES_SCHEMA_VERSION, strict=True)

    return validate


KUBERNETES_SCHEMA_VERSION = "1.34"


@pytest.fixture(autouse=True, scope="session")
def _collect_mock_event_loops() -> Iterator[None]:
    """Pulumi's mock monitor gives each worker thread an event loop it never closes; collect
    them while pytest still runs, rather than as noise after its summary at interpreter exit."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()
