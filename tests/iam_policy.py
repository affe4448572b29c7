"""A small evaluator of IAM policy documents, for asking what a policy allows.

Enough of IAM's evaluation logic for the project's policies: an explicit Deny wins, else an
Allow whose action, resource, principal and every condition match; nothing matching is an
implicit deny. Actions and resources match with IAM's `*` and `?` wildcards (actions
case-insensitively). Conditions: StringEquals, StringLike, their IfExists forms,
ForAllValues:StringEquals, ArnEquals, ArnLike and Bool; a single-valued key matches when its
value equals any listed value, a missing key fails everything but IfExists and ForAllValues
(IAM User Guide, "Policy evaluation logic" and "Condition operators").
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any

Context = Mapping[str, str | Sequence[str]]


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _like(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    regex = fnmatch.translate(pattern).replace("(?s:", "(?s:" if case_sensitive else "(?si:", 1)
    return re.match(regex, value) is not None


def _condition_holds(operator: str, key: str, expected: Any, context: Context) -> bool:
    wanted = _as_list(expected)
    present = key in context
    if operator.startswith("ForAllValues:"):
        values = _as_list(context.get(key, []))
        return all(value in wanted for value in values)
    if operator.endswith("IfExists"):
        if not present:
            return True
        operator = operator.removesuffix("IfExists")
    if not present:
        return False
    (value,) = _as_list(context[key])
    if operator in ("StringEquals", "ArnEquals", "Bool"):
        return value in wanted
    if operator in ("StringLike", "ArnLike"):
        return any(_like(pattern, value) for pattern in wanted)
    raise NotImplementedError(operator)


def _statement_matches(
    statement: Mapping[str, Any],
    action: str,
    resource: str,
    context: Context,
    principal: str | None,
) -> bool:
    if not any(_like(p, action, case_sensitive=False) for p in _as_list(statement["Action"])):
        return False
    if not any(_like(p, resource) for p in _as_list(statement["Resource"])):
        return False
    if "Principal" in statement:
        given = statement["Principal"]
        if given != "*" and principal not in _as_list(given.get("Service", [])):
            return False
    return all(
        _condition_holds(operator, key, expected, context)
        for operator, conditions in statement.get("Condition", {}).items()
        for key, expected in conditions.items()
    )


def allows(
    document: Mapping[str, Any],
    action: str,
    resource: str,
    context: Context | None = None,
    *,
    principal: str | None = None,
) -> bool:
    """Whether the policy allows `action` on `resource` in this request context."""
    context = context or {}
    matching = [
        statement
        for statement in document["Statement"]
        if _statement_matches(statement, action, resource, context, principal)
    ]
    if any(statement["Effect"] == "Deny" for statement in matching):
        return False
    return any(statement["Effect"] == "Allow" for statement in matching)
