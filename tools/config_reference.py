"""The README's configuration reference, generated from the settings model itself.

    python tools/config_reference.py          # prints the Markdown table
    python tools/config_reference.py --write  # replaces the table in README.md

README.md holds its output; tests/test_docs.py keeps the two equal.
Not part of the installed package: only documentation needs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.naming import ALLOCATION_TAG_KEYS
from components.settings.parse import SECTIONS
from components.settings.pools import POOLS_KEY, PoolSettings
from components.settings.rules import TAGS_KEY


def reference_table() -> str:
    """The README's config reference as a Markdown table."""
    rows = [
        "| key | default | meaning |",
        "| --- | --- | --- |",
        "| `aws:region` | (required) | AWS region of the stack's resources. |",
    ]
    for section_type in SECTIONS:
        rows.extend(_reference_rows(section_type.config_key, section_type))
    rows.extend(_reference_rows(f"{POOLS_KEY}[i]", PoolSettings))
    rows.append(
        f"| `{TAGS_KEY}` | `{{}}` | Extra cost-allocation tags on every AWS resource; "
        f"{', '.join(ALLOCATION_TAG_KEYS)} are set automatically. |"
    )
    return "\n".join(rows)


def _reference_rows(prefix: str, model: type[Any]) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if info.is_required():
            default = "(required)"
        elif default is None:
            default = "(none)"
        else:
            default = f"`{json.dumps(to_jsonable_python(default), separators=(', ', ': '))}`"
        rows.append(f"| `{prefix}.{info.alias or name}` | {default} | {info.description} |")
    return rows


README = Path(__file__).resolve().parent.parent / "README.md"
_TABLE_START = "| key | default | meaning |"


def readme_with_table(readme: str, table: str) -> str:
    """The README with its configuration reference table (from its header row to the first
    line after it that is not a table row) replaced by `table`."""
    before, found, rest = readme.partition(_TABLE_START)
    if not found:
        raise SystemExit(f"{README}: no table starting with {_TABLE_START!r}")
    lines = rest.split("\n")
    end = next((i for i, line in enumerate(lines) if i and not line.startswith("|")), len(lines))
    return before + table + "\n" + "\n".join(lines[end:])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        README.write_text(readme_with_table(README.read_text(), reference_table()))
    else:
        print(reference_table())
