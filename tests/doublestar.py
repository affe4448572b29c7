"""The glob semantics of github.com/bmatcuk/doublestar/v4 `Match`, which the runner uses for
`allowed_images` and `allowed_services` (common/allowed_images.go, runner 19.3), for tests.

- `*` matches any run of characters except `/`; `?` one character except `/`;
- `**` as a whole path segment matches zero or more directories (`a/**/b` matches `a/b`, a
  trailing `a/**` or `a/**/` matches `a` and everything below it); elsewhere it is a `*`;
- `[abc]`, `[a-z]`, `[!abc]`, `[^abc]` match one character except `/`;
- `{alt1,alt2}` matches any of the alternatives, which may hold patterns themselves;
- a backslash escapes the next character.

Patterns are translated to regular expressions once; `match` is what `doublestar.Match` answers
for a valid pattern.
"""

from __future__ import annotations

import functools
import re


class PatternError(ValueError):
    """The pattern is malformed (doublestar.ErrBadPattern)."""


def match(pattern: str, name: str) -> bool:
    """Whether `name` matches `pattern` as doublestar.Match decides."""
    return _compiled(pattern).fullmatch(name) is not None


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    translated, rest = _translate(pattern, 0, in_alternative=False)
    if rest != len(pattern):
        raise PatternError(f"unbalanced '}}' in {pattern!r}")
    return re.compile(translated, re.DOTALL)


def _translate(pattern: str, start: int, *, in_alternative: bool) -> tuple[str, int]:
    """The regex for `pattern[start:]` up to the end, or up to the `,`/`}` closing an
    alternative; returns it and the index where it stopped."""
    out: list[str] = []
    index = start
    while index < len(pattern):
        char = pattern[index]
        if in_alternative and char in ",}":
            return "".join(out), index
        if char == "\\":
            if index + 1 >= len(pattern):
                raise PatternError(f"trailing backslash in {pattern!r}")
            out.append(re.escape(pattern[index + 1]))
            index += 2
        elif char == "*":
            index = _star(pattern, index, out)
        elif char == "?":
            out.append("[^/]")
            index += 1
        elif char == "[":
            index = _character_class(pattern, index, out)
        elif char == "{":
            index = _alternatives(pattern, index, out)
        elif char == "}" and not in_alternative:
            return "".join(out), index
        else:
            out.append(re.escape(char))
            index += 1
    if in_alternative:
        raise PatternError(f"unclosed '{{' in {pattern!r}")
    return "".join(out), index


def _star(pattern: str, index: int, out: list[str]) -> int:
    if not pattern.startswith("**", index):
        out.append("[^/]*")
        return index + 1
    end = index + 2
    at_segment_start = index == 0 or pattern[index - 1] == "/"
    at_segment_end = end == len(pattern) or pattern[end] == "/"
    if not (at_segment_start and at_segment_end):
        # A `**` inside a segment is a plain `*`.
        out.append("[^/]*")
        return end
    if end == len(pattern):
        # A trailing `/**` also matches the directory itself: drop the `/` before it.
        if out and out[-1] == "/":
            out.pop()
            out.append("(?:/.*)?")
        else:
            out.append(".*")
        return end
    if end + 1 == len(pattern) and out and out[-1] == "/":
        # A trailing `/**/` matches the directory itself too, with or without the `/`.
        out.pop()
        out.append("(?:/(?:[^/]*/)*)?")
        return end + 1
    # `**/` matches zero or more directories, each ending in `/`.
    out.append("(?:[^/]*/)*")
    return end + 1


def _character_class(pattern: str, index: int, out: list[str]) -> int:
    end = index + 1
    negated = end < len(pattern) and pattern[end] in "!^"
    if negated:
        end += 1
    members: list[str] = []
    first = True
    while end < len(pattern) and (pattern[end] != "]" or first):
        char = pattern[end]
        if char == "\\" and end + 1 < len(pattern):
            char = pattern[end + 1]
            end += 1
        members.append(re.escape(char) if char not in "-" else "-")
        end += 1
        first = False
    if end >= len(pattern):
        raise PatternError(f"unclosed '[' in {pattern!r}")
    body = "".join(members)
    out.append(f"(?![/])[^{body}]" if negated else f"(?![/])[{body}]")
    return end + 1


def _alternatives(pattern: str, index: int, out: list[str]) -> int:
    options: list[str] = []
    position = index + 1
    while True:
        option, position = _translate(pattern, position, in_alternative=True)
        options.append(option)
        if pattern[position] == "}":
            break
        position += 1
    out.append(f"(?:{'|'.join(options)})")
    return position + 1
