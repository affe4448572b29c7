"""Compare the offline renders of a git revision and the working tree, semantically.

    python tools/compare_renders.py <revision> [--stack prod ...] [--ignore-added TYPE ...]
                                               [--ignore-parent TYPE ...]

Renders every stack (or the given ones) twice with `render.py`: once from a checkout of
`<revision>` in a temporary directory, once from the working tree. Then compares what a
reviewer reads: each resource by (type, name) with its parent's type, options and properties;
each pool's config.toml and Helm values; each policy document. Files are parsed before they
are compared, so key order and formatting never count.

`--ignore-added TYPE` accepts new resources of that type (e.g. a new parent component) and
`--ignore-parent TYPE` accepts a resource whose parent became that type (a move that aliases
keep in place). Exit status 0: no other difference; 1: differences, each printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
Key = tuple[str, str]


def render(source: Path, stack: str, out: Path) -> None:
    """`python render.py <stack> --out <out>` run from `source` with this interpreter."""
    result = subprocess.run(
        [sys.executable, "render.py", stack, "--out", str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"render of {stack} in {source} failed:\n{result.stderr}")


def checkout(revision: str, into: Path) -> None:
    """The tree of `revision`, without touching the working tree or the index."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def parsed_files(root: Path) -> dict[str, Any]:
    """Every rendered file but resources.json, parsed, by its path below `root`."""
    files: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name == "resources.json":
            continue
        text = path.read_text()
        relative = str(path.relative_to(root))
        if path.suffix == ".json":
            files[relative] = json.loads(text)
        elif path.suffix == ".toml":
            files[relative] = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            files[relative] = yaml.safe_load(text)
        else:
            files[relative] = text
    return files


def resources(root: Path) -> dict[Key, dict[str, Any]]:
    """Each resource by type and name, its parent by type: renders before 0.2.0 name a parent
    by its type only, later ones by type::name."""
    listed = json.loads((root / "resources.json").read_text())
    for entry in listed:
        if "parent" in entry:
            entry["parent"] = entry["parent"].split("::")[0]
    return {(entry["type"], entry["name"]): entry for entry in listed}


def differences(
    old: Path, new: Path, *, ignore_added: set[str], ignore_parent: set[str]
) -> list[str]:
    """What differs between two renders of one stack, one line per difference."""
    found: list[str] = []
    old_resources, new_resources = resources(old), resources(new)
    for key in sorted(old_resources.keys() - new_resources.keys()):
        found.append(f"removed {key[0]} {key[1]}")
    for key in sorted(new_resources.keys() - old_resources.keys()):
        if key[0] not in ignore_added:
            found.append(f"added {key[0]} {key[1]}")
    for key in sorted(old_resources.keys() & new_resources.keys()):
        before, after = dict(old_resources[key]), dict(new_resources[key])
        if before.get("parent") != after.get("parent"):
            if after.get("parent") not in ignore_parent:
                found.append(
                    f"parent of {key[0]} {key[1]}: {before.get('parent')} -> {after.get('parent')}"
                )
            before.pop("parent", None)
            after.pop("parent", None)
        if before != after:
            changed = sorted(
                k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
            )
            found.append(f"changed {key[0]} {key[1]}: {', '.join(changed)}")
    old_files, new_files = parsed_files(old), parsed_files(new)
    for name in sorted(old_files.keys() | new_files.keys()):
        if name not in new_files:
            found.append(f"file removed: {name}")
        elif name not in old_files:
            found.append(f"file added: {name}")
        elif old_files[name] != new_files[name]:
            found.append(f"file changed: {name}")
    return found


def stack_names(root: Path) -> list[str]:
    return sorted(path.name.split(".")[1] for path in (root / "stacks").glob("Pulumi.*.yaml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="git revision to compare the working tree with")
    parser.add_argument("--stack", action="append", help="a stack to compare (default: all)")
    parser.add_argument("--ignore-added", action="append", default=[], metavar="TYPE")
    parser.add_argument("--ignore-parent", action="append", default=[], metavar="TYPE")
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "base"
        base.mkdir()
        checkout(args.revision, base)
        for stack in args.stack or stack_names(base):
            old, new = Path(scratch) / "old" / stack, Path(scratch) / "new" / stack
            render(base, stack, old)
            render(REPO, stack, new)
            found = differences(
                old,
                new,
                ignore_added=set(args.ignore_added),
                ignore_parent=set(args.ignore_parent),
            )
            print(f"{stack}: {'identical' if not found else f'{len(found)} differences'}")
            for line in found:
                print(f"  {line}")
            failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
