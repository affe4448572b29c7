"""The tests' view of the offline engine (offline.py): run programs under Pulumi's mocks."""

from __future__ import annotations

import functools
import json
from typing import Any

from offline import (
    ACCOUNT_ID,
    DEFAULT_REGION,
    MOCK_CLUSTER_SUBNETS,
    MOCK_ROUTE_TABLES,
    PLACEHOLDER_RUNNER_TOKEN,
    PROJECT,
    REPO,
    ProgramRun,
    Registered,
    config_from_stack_file,
    evaluate_stack,
    mock_issuer,
    run_program,
    stack_names,
)

RUNNER_TOKEN = PLACEHOLDER_RUNNER_TOKEN
"""The runner token every stack run gets, as `pulumi config set --secret` would store it."""

__all__ = [
    "ACCOUNT_ID",
    "DEFAULT_REGION",
    "MOCK_CLUSTER_SUBNETS",
    "MOCK_ROUTE_TABLES",
    "PROJECT",
    "REPO",
    "RUNNER_TOKEN",
    "ProgramRun",
    "Registered",
    "config_from_stack_file",
    "evaluate_stack",
    "mock_issuer",
    "policy_document",
    "run_program",
    "run_stack",
    "settings_config",
    "stack_names",
]


@functools.cache
def _stack_as_filed(stack: str) -> ProgramRun:
    return evaluate_stack(stack)


def run_stack(stack: str, overrides: dict[str, Any] | None = None, **options: Any) -> ProgramRun:
    """`evaluate_stack`; a stack file as it is is evaluated once per test session (the tests
    only read what it declared)."""
    if overrides or options:
        return evaluate_stack(stack, overrides, **options)
    return _stack_as_filed(stack)


def settings_config(**sections: Any) -> dict[str, Any]:
    """Stack config for the project's own sections, keyed as the CLI would (`<project>:<key>`)."""
    return {f"{PROJECT}:{key}": value for key, value in sections.items()}


def policy_document(resource: Registered, key: str = "policy") -> dict[str, Any]:
    """A JSON policy input of a registered resource, parsed."""
    document: dict[str, Any] = json.loads(resource.inputs[key])
    return document
