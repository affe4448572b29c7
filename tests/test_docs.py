"""Documentation generated from code stays what the code generates."""

from __future__ import annotations

from tests.harness import REPO
from tools.config_reference import reference_table


def test_readme_config_reference_matches_the_settings_model() -> None:
    assert reference_table() in (REPO / "README.md").read_text()
