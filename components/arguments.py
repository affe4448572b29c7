"""Component arguments checked where a program passes them, before anything is declared.

Every component calls `check_arguments` first: keys its `...Args` TypedDict does not have
(with the closest known one), required keys that are missing, and the component's own rules,
which are the functions the stack settings use for the same values. All of it is one error
that names the component, its resource name and each argument; a `pulumi.RunError`, so Pulumi
prints it without a traceback.
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import re
import types
import typing
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
    """Unknown and missing keys of `args` against a TypedDict, and values of the wrong type."""
    return unknown_argument_problems(args, spec) + shape_problems(args, spec)


def unknown_argument_problems(args: Mapping[str, Any], spec: type) -> list[str]:
    """Keys of `args` the TypedDict does not have, each with the closest known one."""
    if not isinstance(args, Mapping):
        return []
    known = list(spec.__annotations__)
    problems = []
    for key in args:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
            problems.append(f"{key}: unknown argument, {hint}")
    return problems


def shape_problems(args: Mapping[str, Any], spec: type) -> list[str]:
    """Required keys missing from `args` and values whose type is not the declared one: with
    these a component's own rules cannot run."""
    if not isinstance(args, Mapping):
        return [f"args must be a dict of {spec.__name__}, got {type(args).__name__}"]
    assert is_typeddict(spec), spec
    # pulumi.Input names its Output and type variable as forward references.
    hints = typing.get_type_hints(
        spec, localns={"Output": pulumi.Output, "T": Any}, include_extras=True
    )
    # From the hints, not `__required_keys__`: under `from __future__ import annotations` a
    # TypedDict cannot see the NotRequired in its string annotations.
    required_by_class: frozenset[str] = getattr(spec, "__required_keys__", frozenset())
    required = {
        key
        for key, hint in hints.items()
        if typing.get_origin(hint) is typing.Required
        or (typing.get_origin(hint) is not typing.NotRequired and key in required_by_class)
    }
    problems = [f"{key}: required" for key in sorted(required) if key not in args]
    for key, value in args.items():
        if key in hints:
            hint = hints[key]
            if typing.get_origin(hint) in (typing.NotRequired, typing.Required):
                hint = typing.get_args(hint)[0]
            problems += type_problems(value, hint, key)
    return problems


def type_problems(value: Any, hint: Any, path: str) -> list[str]:
    """Where `value` does not have the type `hint` declares: a program passing `"10"` for an
    int or one string for a list gets its argument named rather than a TypeError from deep
    inside the component. An Output or awaitable passes anywhere (its value is known only at
    deployment), as Pulumi resolves them inside lists and dicts too."""
    if isinstance(value, pulumi.Output) or inspect.isawaitable(value) or hint is Any:
        return []
    origin, parameters = typing.get_origin(hint), typing.get_args(hint)
    if origin in (collections.abc.Awaitable, pulumi.Output) or hint is pulumi.Output:
        # pulumi.Input's other alternatives; a plain value is none of them.
        return [f"{path}: must be an Output or awaitable, got {_shown(value, path)}"]
    if origin in (typing.Union, types.UnionType):
        alternatives = [type_problems(value, option, path) for option in parameters]
        return [] if any(not found for found in alternatives) else min(alternatives, key=len)
    if origin is typing.Literal or is_typeddict(hint):
        return _declared_problems(value, hint, parameters, path)
    if origin in (list, collections.abc.Sequence, dict, collections.abc.Mapping):
        return _collection_problems(value, origin, parameters, path)
    return _scalar_problems(value, hint, path)


def _declared_problems(value: Any, hint: Any, parameters: tuple[Any, ...], path: str) -> list[str]:
    """A Literal's values or a TypedDict's keys."""
    if not is_typeddict(hint):
        return (
            [] if value in parameters else [f"{path}: must be one of {parameters}, got {value!r}"]
        )
    if not isinstance(value, Mapping):
        return [f"{path}: must be a dict of {hint.__name__}, got {_shown(value, path)}"]
    return [f"{path}.{problem}" for problem in argument_problems(value, hint)]


def _collection_problems(
    value: Any, origin: Any, parameters: tuple[Any, ...], path: str
) -> list[str]:
    if origin in (list, collections.abc.Sequence):
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            return [f"{path}: must be a list, got {_shown(value, path)}"]
        item = parameters[0] if parameters else Any
        return [p for i, v in enumerate(value) for p in type_problems(v, item, f"{path}[{i}]")]
    if not isinstance(value, Mapping):
        return [f"{path}: must be a dict, got {_shown(value, path)}"]
    key_type, value_type = parameters or (Any, Any)
    return [
        problem
        for k, v in value.items()
        for problem in (
            *type_problems(k, key_type, f"{path} key {k!r}"),
            *type_problems(v, value_type, f"{path}[{k!r}]"),
        )
    ]


def _scalar_problems(value: Any, hint: Any, path: str) -> list[str]:
    if hint is type(None):
        return [] if value is None else [f"{path}: must be None, got {_shown(value, path)}"]
    if hint in (int, float) and isinstance(value, bool):
        return [f"{path}: must be a number, got {_shown(value, path)}"]
    expected = int | float if hint is float else hint
    # Classes only: anything else a hint may be (a Protocol, a NewType) is left unchecked.
    if isinstance(expected, type | types.UnionType) and not isinstance(value, expected):
        return [f"{path}: must be {_type_name(hint)}, got {_shown(value, path)}"]
    return []


def _type_name(hint: Any) -> str:
    names = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


_SECRET_ARGUMENT = re.compile(r"token|secret|password|kubeconfig|credential", re.IGNORECASE)


def _shown(value: Any, path: str) -> str:
    """The wrong value's type, and the value itself unless the argument may hold a secret."""
    if isinstance(value, Mapping):
        return f"{type(value).__name__} with keys {sorted(map(str, value))}"[:160]
    if _SECRET_ARGUMENT.search(path):
        return type(value).__name__
    return f"{type(value).__name__} {value!r}"[:120]


def check_arguments(
    component: str,
    name: str,
    args: Mapping[str, Any],
    spec: type,
    rules: Callable[[], Iterable[str]] | None = None,
) -> None:
    """Raise `ArgumentsError` for unknown keys, missing keys and values of the wrong type, and
    for what the component's `rules` find (each problem starting with its argument's name),
    which run once every value has its declared type."""
    shape = shape_problems(args, spec)
    problems = unknown_argument_problems(args, spec) + shape
    if not shape and rules is not None:
        problems += rules()
    if problems:
        raise ArgumentsError(component, name, problems)
