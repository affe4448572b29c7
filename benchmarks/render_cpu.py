"""CPU time of an offline render against the CPU time of only importing what it imports.

    python benchmarks/render_cpu.py [--stack prod] [--repetitions 3]

Importing the Pulumi SDKs costs the same whatever the fleet looks like; what grows with pools,
sites, the mirror and monitoring is the evaluation itself. So the figure that matters is the
ratio of two child processes' CPU time (user + system, `getrusage(RUSAGE_CHILDREN)`):

  render   `python render.py <stack> --out <tmp>`, which records the modules it loaded;
  imports  a script that imports exactly those modules and does nothing else.

The best of `--repetitions` runs of each is used, so a busy machine does not decide. The budget
(issue 17) is a ratio of at most 1.3 for prod. A measurement tool, not a test: it prints the
figures and exits non-zero only when the ratio is over `--budget`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs render.py as `python render.py` would and writes the names of the loaded modules.
_RENDER_AND_LIST_MODULES = """
import json, runpy, sys
modules_file, *sys.argv = sys.argv[1:]
try:
    runpy.run_path("render.py", run_name="__main__")
except SystemExit as exit_:
    if exit_.code:
        raise
with open(modules_file, "w") as out:
    json.dump(sorted(name for name in sys.modules if name != "__main__"), out)
"""
_IMPORT_ONLY = """
import importlib, json, sys
for name in json.load(open(sys.argv[1])):
    try:
        importlib.import_module(name)
    except ImportError:
        pass  # a module registered under an alias (e.g. six.moves) has no importable name
"""


def child_cpu_seconds(command: list[str]) -> float:
    """User plus system CPU seconds of one child process run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(stack: str, repetitions: int) -> tuple[float, float, int]:
    """Best render CPU, best import-only CPU, and how many modules the render loaded."""
    with tempfile.TemporaryDirectory() as scratch:
        modules_file = Path(scratch) / "modules.json"
        render = [
            sys.executable,
            "-c",
            _RENDER_AND_LIST_MODULES,
            str(modules_file),
            "render.py",
            stack,
            "--out",
            str(Path(scratch) / "out"),
        ]
        render_cpu = min(child_cpu_seconds(render) for _ in range(repetitions))
        imports = [sys.executable, "-c", _IMPORT_ONLY, str(modules_file)]
        import_cpu = min(child_cpu_seconds(imports) for _ in range(repetitions))
        module_count = len(json.loads(modules_file.read_text()))
    return render_cpu, import_cpu, module_count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--budget", type=float, default=1.3)
    args = parser.parse_args(argv)
    render_cpu, import_cpu, modules = measure(args.stack, args.repetitions)
    ratio = render_cpu / import_cpu
    print(
        f"{args.stack}: render {render_cpu:.2f} s CPU, imports only {import_cpu:.2f} s CPU "
        f"({modules} modules): ratio {ratio:.2f} (budget {args.budget})"
    )
    return 0 if ratio <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
