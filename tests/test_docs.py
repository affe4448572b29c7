"""Documentation generated from code stays what the code generates."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.harness import REPO
from tools.config_reference import readme_with_table, reference_table


def test_readme_config_reference_matches_the_settings_model() -> None:
    readme = (REPO / "README.md").read_text()
    assert readme_with_table(readme, reference_table()) == readme, (
        "the README's configuration reference is out of date: "
        "run `python tools/config_reference.py --write`"
    )


README = (REPO / "README.md").read_text()


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitLab and GitHub give a document's headings: lower-cased, punctuation but
    hyphens and spaces dropped, spaces as hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#") and " " in line and not line.startswith("#!"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors


def _sources() -> list[Path]:
    return [*(REPO / "components").rglob("*.py"), REPO / "offline.py", REPO / "render.py"]


def test_every_readme_anchor_an_error_points_at_exists() -> None:
    anchors = heading_anchors(README)
    pointed = {
        anchor
        for path in _sources()
        for anchor in re.findall(r"README\.md#([\w-]+)", path.read_text())
    }
    assert pointed >= {"configuration-reference", "migrating-to-pools"}
    assert pointed - anchors == set()


def test_no_message_points_at_a_readme_section_by_its_title() -> None:
    for path in _sources():
        assert not re.search(r"README, '", path.read_text()), path


def test_every_link_to_a_readme_heading_in_the_readme_exists() -> None:
    anchors = heading_anchors(README)
    assert set(re.findall(r"\]\(#([\w-]+)\)", README)) - anchors == set()


def test_installs_pin_what_exists_a_commit_or_a_released_tag() -> None:
    """The version is the package's and the changelog's; an install pins a commit, or a tag
    only of a version the changelog calls released (found trying it as a new user: the tag
    of an unreleased version does not exist); the examples install this checkout."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(r"^## (\S+)", changelog, re.MULTILINE)[1] == version  # type: ignore[index]
    unreleased = set(re.findall(r"^## (\S+) \(unreleased\)", changelog, re.MULTILINE))
    pins = re.findall(r"gitlab-runner-fleet(?:\.git)?@(\S+?)[\"`\s]", README)
    assert pins
    assert all(pin == "<commit>" or pin.removeprefix("v") not in unreleased for pin in pins)
    for requirements in (REPO / "examples").glob("*/requirements.txt"):
        lines = [line for line in requirements.read_text().splitlines() if line[:1] != "#"]
        assert lines == ["../.."], requirements


def test_the_offline_quick_start_installs_what_render_needs_first() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "pip install -r requirements.txt && python render.py" in quick_start
