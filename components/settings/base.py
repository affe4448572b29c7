"""What every settings section shares: problems, the error that lists them, the section base.

A problem carries its config key path, the same path `pulumi config set --path` takes
(`cache.expirationDays`, `pools[1].instanceTypes`), and a message that says how to fix it.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import pulumi
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from ..kubernetes_names import checked
from ..naming import bucket_name_problems, go_duration_problems

GoDuration = Annotated[str, checked(go_duration_problems)]
BucketName = Annotated[str, checked(bucket_name_problems)]


@dataclass(frozen=True)
class Problem:
    """One invalid setting: where it is and what to do about it."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class SettingsError(pulumi.RunError):
    """Invalid stack configuration. A RunError, so Pulumi prints the message without a traceback.

    `where` says where the values come from and how to change them; by default the stack file.
    """

    def __init__(self, stack: str, problems: list[Problem], where: str | None = None) -> None:
        self.stack = stack
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        lines = "\n".join(f"  - {problem}" for problem in problems)
        where = where or (
            f"stacks/Pulumi.{stack}.yaml or with `pulumi config set --path <key> <value>`"
        )
        super().__init__(
            f"Invalid configuration for stack '{stack}' ({count}). Fix these in {where}; "
            f"README.md#configuration-reference lists every key.\n{lines}"
        )


class ConfigModel(BaseModel):
    """A config object: camelCase keys, unknown keys refused, immutable once read."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Section(ConfigModel):
    """A top-level stack config section (`gitlab-runner-fleet:<config_key>`)."""

    config_key: ClassVar[str]

    def cross_field_problems(self) -> list[Problem]:
        """Rules that span several keys of this section."""
        return []

    def _problem(self, field_name: str, message: str) -> Problem:
        return Problem(f"{self.config_key}.{to_camel(field_name)}", message)


class Secret:
    """A secret value (from config, or an importing program's Output). Never printed; handed
    to Pulumi only as a secret Output."""

    __slots__ = ("_value",)

    def __init__(self, value: pulumi.Input[str]) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "Secret(****)"

    def output(self) -> pulumi.Output[str]:
        return pulumi.Output.secret(self._value)


def key_path(key: str, location: Sequence[int | str]) -> str:
    """`cache` + `("s3", "bucket")` -> `cache.s3.bucket`; list indexes become `[i]`."""
    path = key
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def describe_errors(key: str, model_type: type[BaseModel], error: ValidationError) -> list[Problem]:
    """pydantic's errors as problems with config key paths and fix-it messages."""
    known = ", ".join((info.alias or name) for name, info in model_type.model_fields.items())
    problems = []
    for detail in error.errors():
        path = key_path(key, detail["loc"])
        describe = _MESSAGES.get(detail["type"])
        message = describe(detail) if describe else f"{detail['msg']}, got {detail['input']!r}"
        if detail["type"] == "extra_forbidden":
            message += _closest_key(detail["loc"], model_type, known)
        elif detail["type"] == "model_type" and not detail["loc"]:
            message = f"must be an object with keys {known}, got {detail['input']!r}"
        problems.append(Problem(path, message))
    return problems


def _closest_key(location: Sequence[int | str], model_type: type[BaseModel], known: str) -> str:
    """For an unknown key, the closest known key of its own object, or the top level's keys."""
    model: type[BaseModel] | None = model_type
    for part in location[:-1]:
        if isinstance(part, str) and model is not None:
            field = next(
                (f for name, f in model.model_fields.items() if part in (name, f.alias)), None
            )
            model = _nested_model(field.annotation) if field else None
    if model is None:
        return ""
    names = [info.alias or name for name, info in model.model_fields.items()]
    close = difflib.get_close_matches(str(location[-1]), names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]}?"
    return f"; known keys: {known}" if len(location) == 1 else ""


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, directly or in a list, tuple, dict or optional."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        if (model := _nested_model(argument)) is not None:
            return model
    return None


_MESSAGES: dict[str, Callable[[Any], str]] = {
    "greater_than_equal": lambda d: f"must be >= {d['ctx']['ge']}, got {d['input']!r}",
    "less_than_equal": lambda d: f"must be <= {d['ctx']['le']}, got {d['input']!r}",
    "extra_forbidden": lambda d: "unknown key (check its spelling)",
    "literal_error": lambda d: f"must be one of {d['ctx']['expected']}, got {d['input']!r}",
    "value_error": lambda d: str(d["ctx"]["error"]),
    "int_parsing": lambda d: f"must be a whole number, got {d['input']!r}",
    "int_from_float": lambda d: f"must be a whole number, got {d['input']!r}",
    "int_type": lambda d: f"must be a whole number, got {d['input']!r}",
    "bool_parsing": lambda d: f"must be true or false, got {d['input']!r}",
    "bool_type": lambda d: f"must be true or false, got {d['input']!r}",
    "string_type": lambda d: (
        f"must be a string, got {d['input']!r}"
        + (
            "; YAML reads an unquoted number as a number (1.30 as 1.3): write it in quotes"
            if isinstance(d["input"], int | float) and not isinstance(d["input"], bool)
            else ""
        )
    ),
    "list_type": lambda d: f"must be a list, got {d['input']!r}",
    "dict_type": lambda d: f"must be an object of keys to values, got {d['input']!r}",
    "model_type": lambda d: f"must be an object, got {d['input']!r}",
    "missing": lambda d: "required; see README.md#configuration-reference",
    "too_long": lambda d: (
        f"must have at most {d['ctx']['max_length']} items, got {d['ctx']['actual_length']}"
    ),
    "too_short": lambda d: (
        f"must have at least {d['ctx']['min_length']} items, got {d['ctx']['actual_length']}"
    ),
}
