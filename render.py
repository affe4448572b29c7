"""Render a stack offline, for review: what `pulumi up` would declare, without cloud or CLI.

    python render.py <stack> [--out DIR]

Writes to DIR (default `out/<stack>`):
  resources.json          every resource: type, name, parent, options and input properties
  runner/<pool>/config.toml  each pool's effective config.toml (URL included, token redacted)
  values/<release>.yaml   the Helm values of each release
  policies/<name>.json    every IAM policy, trust policy and bucket policy document

Secret values are never written: they show as "[secret]". Values the stack would look up in
AWS (account id, an existing cluster's endpoint, subnets) are placeholders from offline.py.
"""

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
import yaml
from pulumi.runtime.rpc import is_rpc_secret

from components.settings import SettingsError
from offline import ProgramRun, Registered, UnknownStackError, evaluate_stack, stack_names

SECRET = "[secret]"
RUNNER_RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
RUNNER_COMPONENT_TYPE = "gitlab-runner-fleet:index:GitlabRunner"
# Inputs holding IAM documents, and the file suffix each one gets.
POLICY_INPUTS = {
    ("aws:iam/policy:Policy", "policy"): "",
    ("aws:iam/role:Role", "assumeRolePolicy"): ".trust",
    ("aws:s3/bucketPolicy:BucketPolicy", "policy"): ".bucket-policy",
}


def redacted(value: Any) -> Any:
    """`value` as the program declared it, with every secret replaced by a marker.

    The engine's wire format carries every number as a float; whole numbers become ints again.
    """
    if is_rpc_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {key: redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redacted(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class _ReviewDumper(yaml.SafeDumper):
    """Writes multi-line strings (embedded config.toml) as readable block literals."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_ReviewDumper.add_representer(str, _represent_str)


def resource_list(run: ProgramRun) -> list[dict[str, Any]]:
    """The resources of a run, with what a reviewer needs to judge each one.

    Sorted by URN: resources register in whatever order their inputs resolve, and two renders
    of one stack must diff only where the stack changed.
    """
    types_by_urn = {resource.urn: resource.type for resource in run.resources}
    listed = []
    for resource in sorted(run.resources, key=lambda resource: resource.urn):
        entry: dict[str, Any] = {"type": resource.type, "name": resource.name}
        if resource.parent in types_by_urn:
            entry["parent"] = types_by_urn[resource.parent]
        for option, value in (
            ("protect", resource.protect),
            ("retainOnDelete", resource.retain_on_delete),
            ("ignoreChanges", resource.ignore_changes),
        ):
            if value:
                entry[option] = value
        if resource.inputs:
            entry["properties"] = redacted(resource.inputs)
        listed.append(entry)
    return listed


def runner_configs(run: ProgramRun) -> dict[str, str]:
    """Each pool's effective config.toml with the GitLab URL, as its manager would hold it."""
    configs = {}
    for component in run.of_type(RUNNER_COMPONENT_TYPE):
        release = next(
            r for r in run.resources if r.type == RUNNER_RELEASE_TYPE and r.parent == component.urn
        )
        config = tomllib.loads(run.component_outputs[component.urn]["config_toml"])
        for entry in config["runners"]:
            entry.update(url=release.inputs["values"]["gitlabUrl"], token=SECRET)
        configs[release.inputs["name"].removeprefix("gitlab-runner-")] = tomli_w.dumps(config)
    return configs


def policy_documents(resources: list[Registered]) -> dict[str, dict[str, Any]]:
    """Every IAM document the stack declares, by file name."""
    documents = {}
    for resource in resources:
        for (resource_type, key), suffix in POLICY_INPUTS.items():
            if resource.type == resource_type and isinstance(resource.inputs.get(key), str):
                documents[f"{resource.name}{suffix}.json"] = json.loads(resource.inputs[key])
    return documents


def write_render(run: ProgramRun, out: Path) -> dict[str, int]:
    """Write the review files; returns how many of each kind were written."""
    out.mkdir(parents=True, exist_ok=True)
    listed = resource_list(run)
    (out / "resources.json").write_text(json.dumps(listed, indent=2, sort_keys=True) + "\n")

    for pool, config in runner_configs(run).items():
        (out / "runner" / pool).mkdir(parents=True, exist_ok=True)
        (out / "runner" / pool / "config.toml").write_text(config)

    releases = [r for r in run.resources if r.type == RUNNER_RELEASE_TYPE]
    (out / "values").mkdir(exist_ok=True)
    for release in releases:
        values = redacted(release.inputs.get("values", {}))
        (out / "values" / f"{release.name}.yaml").write_text(
            yaml.dump(values, Dumper=_ReviewDumper, sort_keys=True, width=100)
        )

    documents = policy_documents(run.resources)
    (out / "policies").mkdir(exist_ok=True)
    for name, document in documents.items():
        (out / "policies" / name).write_text(json.dumps(document, indent=2) + "\n")
    return {"resources": len(listed), "releases": len(releases), "policies": len(documents)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help=f"one of: {', '.join(stack_names())}")
    parser.add_argument("--out", type=Path, help="output directory (default: out/<stack>)")
    args = parser.parse_args(argv)
    try:
        run = evaluate_stack(args.stack, return_error=True)
    except UnknownStackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if isinstance(run.error, SettingsError):
        print(f"error: {run.error}", file=sys.stderr)
        return 1
    if run.error is not None:
        print(f"error: stack {args.stack} failed to evaluate: {run.error}", file=sys.stderr)
        return 1
    out = args.out or Path("out") / args.stack
    counts = write_render(run, out)
    print(
        f"{args.stack}: {counts['resources']} resources, {counts['releases']} Helm releases, "
        f"{counts['policies']} policy documents -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
