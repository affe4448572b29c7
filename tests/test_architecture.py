"""The package's shape: which folder imports which, and what ships in it."""

from __future__ import annotations

import ast

from tests.harness import REPO

COMPONENTS = REPO / "components"
FOLDERS = sorted(p.name for p in COMPONENTS.iterdir() if p.is_dir() and p.name != "__pycache__")


def folder_imports() -> dict[str, set[str]]:
    """For each folder of components/, the other folders its modules import."""
    imports: dict[str, set[str]] = {folder: set() for folder in FOLDERS}
    for folder in FOLDERS:
        for path in (COMPONENTS / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                    target = node.module.split(".")[0]
                    if target in FOLDERS and target != folder:
                        imports[folder].add(target)
    return imports


def test_no_two_folders_import_each_other() -> None:
    imports = folder_imports()
    cycles = sorted(
        (first, second)
        for first, targets in imports.items()
        for second in targets
        if first < second and first in imports.get(second, set())
    )
    assert cycles == []


def test_aws_and_workloads_share_facts_only_through_the_shared_modules() -> None:
    imports = folder_imports()
    assert "workloads" not in imports["aws"]
    assert "aws" not in imports["workloads"]


def test_only_the_fleet_wires_the_folders_together() -> None:
    imports = folder_imports()
    assert imports["fleet"] >= {"aws", "gitlab", "settings", "workloads"}
    assert all("fleet" not in targets for folder, targets in imports.items() if folder != "fleet")


def test_documentation_generators_are_not_in_the_package() -> None:
    shipped = [p.relative_to(REPO) for p in COMPONENTS.rglob("*.py")]
    assert not [p for p in shipped if "threat_model" in p.name or "config_reference" in p.name]
    assert (REPO / "tools" / "threat_model.py").is_file()
    assert (REPO / "tools" / "config_reference.py").is_file()
