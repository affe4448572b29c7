"""Component arguments checked where a program passes them, before anything is declared.

Every component calls `check_arguments` first: keys its `...Args` TypedDict does not have
(with the closest known one), required keys that are missing, and the component's own rules,
which are the functions the stack settings use for the same values. All of it is one error
that names the component, its resource name and each argument; a `pulumi.RunError`, so Pulumi
prints it without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, is_typeddict

import pulumi


class ArgumentsError(pulumi.RunError, ValueError):
    """Invalid arguments of a component: a ValueError, printed by Pulumi without a traceback."""

    def __init__(self, component: str, name: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{component} {name!r}: invalid arguments\n{lines}")


def argument_problems(args: Mapping[str, Any], spec: type) -> list[str]:
    """Unknown and missing keys of `args` against a TypedDict."""
    if not isinstance(args, Mapping):
        return [f"args must be a dict of {spec.__name__}, got {type(args).__name__}"]
    assert is_typeddict(spec), spec
    known = list(spec.__annotations__)
    problems = []
    for key in args:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
            problems.append(f"{key}: unknown argument, {hint}")
    required: frozenset[str] = getattr(spec, "__required_keys__", frozenset())
    problems += [f"{key}: required" for key in sorted(required) if key not in args]
    return problems


def check_arguments(
    component: str,
    name: str,
    args: Mapping[str, Any],
    spec: type,
    rules: Callable[[], Iterable[str]] | None = None,
) -> None:
    """Raise `ArgumentsError` for unknown or missing keys, or else for what the component's
    `rules` find (each problem starting with its argument's name)."""
    problems = argument_problems(args, spec)
    if not problems and rules is not None:
        problems = list(rules())
    if problems:
        raise ArgumentsError(component, name, problems)
