"""The tests' view of the offline engine (offline.py): run programs under Pulumi's mocks."""

from __future__ import annotations

import functools
import json
from typing import Any

from components.settings import FleetSettings, parse_settings
from components.settings.secrets import STAND_IN_RUNNER_TOKEN
from offline import (
    ACCOUNT_ID,
    DEFAULT_REGION,
    MOCK_CLUSTER_SUBNETS,
    MOCK_ROUTE_TABLES,
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

RUNNER_TOKEN = STAND_IN_RUNNER_TOKEN
"""The runner token every stack run gets, as `pulumi config set --secret` would store it."""

CREATED_CLUSTER = {
    "mode": "create",
    "name": "ci",
    "version": "1.34",
    "vpcId": "vpc-1",
    "privateSubnetIds": ["subnet-a", "subnet-b"],
}
"""The `cluster` section of a stack that creates its EKS cluster, as settings tests give it."""

__all__ = [
    "ACCOUNT_ID",
    "CREATED_CLUSTER",
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


ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


def _urn(stack: str, parent_type: str, type_: str, name: str) -> str:
    qualified = f"{parent_type}${type_}" if parent_type else type_
    return f"urn:pulumi:{stack}::{PROJECT}::{qualified}::{name}"


def _qualified_type(urn: str) -> str:
    """The type chain of a URN (`grandparent$parent$child`), empty for none or the root stack."""
    qualified = urn.split("::")[2] if urn else ""
    return "" if qualified == ROOT_STACK_TYPE else qualified


def engine_urns(run: ProgramRun, stack: str) -> dict[str, str]:
    """Each resource's URN as the engine makes it, by the mock monitor's URN.

    The engine's URN carries the whole chain of the parents' types (pulumi/pulumi
    sdk/go/common/resource/urn.go NewURN, called with the parent's QualifiedType; nothing for
    the root stack's children); the mock monitor puts only the direct parent's type there.
    """
    by_urn = {resource.urn: resource for resource in run.resources}
    found: dict[str, str] = {}

    def engine(urn: str) -> str:
        if urn in found or urn not in by_urn:
            return found.get(urn, "")
        resource = by_urn[urn]
        parent = engine(resource.parent)
        found[urn] = _urn(stack, _qualified_type(parent), resource.type, resource.name)
        return found[urn]

    for resource in run.resources:
        engine(resource.urn)
    return found


def previous_urns(run: ProgramRun, stack: str, old_urns: set[str]) -> dict[str, str | None]:
    """The old URN each resource of `run` takes over from a state holding `old_urns`, or None,
    keyed by the resource's engine URN.

    What the engine does on update (pulumi/pulumi pkg/resource/deploy/step_generator.go,
    generateAliases and inheritedChildAlias): a resource keeps the old resource of its own URN,
    else of the first of its aliases found in the state; its alias specs default to its own
    name, type and parent (`noParent`: none); a resource whose parent took over an old URN by
    alias also gets that URN's type chain as an alias, its name's parent prefix renamed.
    """
    engine = engine_urns(run, stack)
    by_urn = {resource.urn: resource for resource in run.resources}
    taken: dict[str, str | None] = {}
    aliased: dict[str, str] = {}
    for resource in run.resources:
        urn = engine[resource.urn]
        parent = by_urn.get(resource.parent)
        candidates = []
        for alias in resource.aliases:
            if "urn" in alias:
                candidates.append(alias["urn"])
                continue
            spec = alias["spec"]
            if spec["noParent"]:
                parent_type = ""
            elif spec["parentUrn"]:
                parent_type = _qualified_type(engine.get(spec["parentUrn"], spec["parentUrn"]))
            else:
                parent_type = _qualified_type(engine.get(resource.parent, ""))
            candidates.append(
                _urn(
                    stack, parent_type, spec["type"] or resource.type, spec["name"] or resource.name
                )
            )
        if parent is not None and parent.urn in aliased:
            parent_alias = aliased[parent.urn]
            parent_alias_name = parent_alias.split("::")[-1]
            for type_, name in [
                (resource.type, resource.name),
                *((c.split("::")[2].split("$")[-1], c.split("::")[-1]) for c in list(candidates)),
            ]:
                renamed = (
                    parent_alias_name + name.removeprefix(parent.name)
                    if name.startswith(parent.name)
                    else name
                )
                candidates.append(_urn(stack, _qualified_type(parent_alias), type_, renamed))
        if urn in old_urns:
            taken[urn] = urn
            continue
        found = next((candidate for candidate in candidates if candidate in old_urns), None)
        taken[urn] = found
        if found is not None:
            aliased[resource.urn] = found
    return taken


EKS_CLUSTER = {"name": "ci", "version": "1.34", "nodeSubnetIds": ["subnet-p1"]}


def settings_of(
    raw: dict[str, Any], *, stack: str = "test", region: str | None = DEFAULT_REGION
) -> FleetSettings:
    """Validated settings of raw config values (EKS `existing` unless `cluster` is given), with
    stand-ins for every secret they need."""
    return parse_settings(
        {"cluster": EKS_CLUSTER, **raw},
        project=PROJECT,
        stack=stack,
        aws_region=region,
        stand_in_secrets=True,
    )
