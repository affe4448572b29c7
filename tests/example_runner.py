"""Runs example programs under Pulumi mocks and prints what each declared, as JSON.

    <python with the wheel installed> tests/example_runner.py '{"<example dir>": {config}}'

Run by tests/test_examples.py with the interpreter of a virtualenv that has the built wheel
installed: the examples import `gitlab_runner_fleet` from there. The mocks are the offline
render's (offline.py, from this repository); the printed `package` says where the imported
package came from.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

EXAMPLES: dict[str, dict[str, str]] = json.loads(sys.argv[1])
sys.path.append(str(Path(__file__).resolve().parent.parent))

import gitlab_runner_fleet  # type: ignore[import-not-found]  # noqa: E402
import yaml  # noqa: E402

from offline import run_program  # noqa: E402


def run(example: Path, config: dict[str, str]) -> dict[str, object]:
    ran = run_program(
        lambda: runpy.run_path(str(example / "__main__.py"), run_name="__main__"),
        config=config,
        stack="example",
        return_error=True,
        project=yaml.safe_load((example / "Pulumi.yaml").read_text())["name"],
    )
    return {
        "package": gitlab_runner_fleet.__file__,
        "error": None if ran.error is None else f"{type(ran.error).__name__}: {ran.error}",
        "resources": [[r.type, r.name] for r in ran.resources],
        "outputs": ran.outputs,
        "secret_outputs": sorted(ran.secret_outputs),
    }


print(json.dumps({name: run(Path(name), config) for name, config in EXAMPLES.items()}, default=str))
