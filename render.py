"""Render a stack offline, for review: what `pulumi up` would declare, without cloud or CLI.

    python render.py <stack> [--out DIR]
    python render.py --stack-file PATH [--stack NAME] [--out DIR]

Writes to DIR (default `out/<stack>`):
  resources.json             every resource: type, name, parent, options and input properties
  outputs.json               the stack's outputs (secret ones as "[secret]")
  runner/<pool>/config.toml  each pool's effective config.toml (URL included, token redacted)
  values/<release>.yaml      the Helm values of each release
  policies/<name>.json       every IAM policy, trust policy and bucket policy document
  files/<Kind>/<namespace>/  each Kubernetes object's spec as YAML, and each ConfigMap's files
                             (rclone.conf, the mirror's config.yml, daemon.json, the dashboard)
  user-data/<template>/      each launch template's user data: its MIME parts, and the files
                             its scripts write (containerd's hosts.toml)

Secret values are never written: they show as "[secret]". Values the stack would look up in
AWS (account id, an existing cluster's endpoint, subnets) are placeholders from offline.py, and
secrets the stack file does not hold are stand-ins (a warning names each one).
"""

from __future__ import annotations

import argparse
import base64
import email
import json
import re
import shutil
import sys
import tomllib
from email.message import Message
from pathlib import Path
from typing import Any

import tomli_w
import yaml
from pulumi.runtime.rpc import is_rpc_secret

from components.settings import SettingsError
from offline import (
    NODE_CNI_POLICY_STAND_IN,
    ProgramRun,
    Registered,
    StackFileError,
    UnknownStackError,
    evaluate_config,
    hub_stand_in,
    imported_environments,
    read_stack_file,
    stack_file,
    stack_names,
    vpc_cni_stand_in,
)

SECRET = "[secret]"
RUNNER_RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
RUNNER_COMPONENT_TYPE = "gitlab-runner-fleet:index:GitlabRunner"
LAUNCH_TEMPLATE_TYPE = "aws:ec2/launchTemplate:LaunchTemplate"
NODE_CLASS_TYPE = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
# Inputs holding IAM documents, and the file suffix each one gets.
POLICY_INPUTS = {
    ("aws:iam/policy:Policy", "policy"): "",
    ("aws:iam/role:Role", "assumeRolePolicy"): ".trust",
    ("aws:s3/bucketPolicy:BucketPolicy", "policy"): ".bucket-policy",
    ("aws:sqs/queuePolicy:QueuePolicy", "policy"): ".queue-policy",
}
# `cat > <path> <<'<END>'` ... `<END>`: a file a user data script writes (mirror_config.py).
_HEREDOC = re.compile(
    r"^cat > (?P<path>\S+) <<'(?P<end>\w+)'\n(?P<body>.*?)^(?P=end)$", re.M | re.S
)
# Stack names may hold dots (pulumi/pulumi sdk/go/common/tokens/stack_name.go).
_STACK_FILE_NAME = re.compile(r"^Pulumi\.(?P<stack>.+)\.ya?ml$")
_RENDER_MARK = "resources.json"
"""The file every render writes: a directory holding it is a render, replaced as a whole."""


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


# libyaml's emitter is several times faster than PyYAML's own and writes the same values; the
# text differs only in how a quoted string over 100 columns (tabs, trailing spaces, non-ASCII)
# is folded, which no shipped stack has. PyYAML built without libyaml has only its own.
_SafeDumper = yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper


class _ReviewDumper(_SafeDumper):  # type: ignore[valid-type,misc]
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
    # A parent by type and name: three pools have three components of one type.
    parents = {resource.urn: f"{resource.type}::{resource.name}" for resource in run.resources}
    listed = []
    for resource in sorted(run.resources, key=lambda resource: resource.urn):
        entry: dict[str, Any] = {"type": resource.type, "name": resource.name}
        if resource.parent in parents:
            entry["parent"] = parents[resource.parent]
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


def stack_outputs(run: ProgramRun) -> dict[str, Any]:
    """The stack's outputs, secret ones redacted."""
    return {
        name: SECRET if name in run.secret_outputs else redacted(value)
        for name, value in sorted(run.outputs.items())
    }


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


def _readable(key: str, text: str) -> str:
    """A file's text, a JSON document pretty-printed (the dashboard is one long line)."""
    if key.endswith(".json"):
        try:
            return json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
        except json.JSONDecodeError:
            return text
    return text


def carried_files(resources: list[Registered]) -> dict[str, str]:
    """The files ConfigMaps hold, and the specs of custom resources (alert rules), by path."""
    files = {}
    for resource in resources:
        inputs = redacted(resource.inputs)
        metadata = inputs.get("metadata") or {}
        name = metadata.get("name") or resource.name
        namespace = metadata.get("namespace") or "cluster"
        kind = resource.type.rsplit(":", 1)[-1]
        if resource.type == "kubernetes:core/v1:ConfigMap":
            for key, text in (inputs.get("data") or {}).items():
                if isinstance(text, str):
                    files[f"{kind}/{namespace}/{name}/{key}"] = _readable(key, text)
        elif resource.type.startswith("kubernetes:") and "spec" in inputs:
            kind = str(inputs.get("kind", kind))
            files[f"{kind}/{namespace}/{name}.yaml"] = yaml.dump(
                inputs["spec"], Dumper=_ReviewDumper, sort_keys=True, width=100
            )
    return files


def _user_data(resource: Registered) -> str | None:
    """A launch template's user data (base64, as EC2 takes it) or an EC2NodeClass's (as text,
    which Karpenter merges with its own before its NodeConfig)."""
    if resource.type == LAUNCH_TEMPLATE_TYPE:
        encoded = resource.inputs.get("userData")
        return base64.b64decode(encoded).decode() if isinstance(encoded, str) else None
    if resource.type == NODE_CLASS_TYPE:
        text = (resource.inputs.get("spec") or {}).get("userData")
        return text if isinstance(text, str) else None
    return None


def user_data_files(resources: list[Registered]) -> dict[str, str]:
    """Each launch template's and EC2NodeClass's user data: every MIME part, and the files its
    scripts write."""
    files = {}
    for resource in resources:
        document = _user_data(resource)
        if document is None:
            continue
        files[f"{resource.name}/user-data.mime"] = document
        message = email.message_from_string(document)
        parts: list[Message] = [part for part in message.walk() if not part.is_multipart()] or [
            message
        ]
        for index, part in enumerate(parts, 1):
            body = str(part.get_payload())
            suffix = ".sh" if part.get_content_type() == "text/x-shellscript" else ".txt"
            files[f"{resource.name}/part-{index}{suffix}"] = body
            for written in _HEREDOC.finditer(body):
                files[f"{resource.name}/{written['path'].lstrip('/')}"] = written["body"]
    return files


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def write_render(run: ProgramRun, out: Path) -> dict[str, int]:
    """Write the review files, replacing an earlier render in `out` as a whole (files of
    removed pools or resources must not linger); returns how many of each kind were written.
    Raises `RenderTargetError` for a directory that holds something else."""
    if out.exists() and any(out.iterdir()) and not (out / _RENDER_MARK).is_file():
        raise RenderTargetError(
            f"--out {out}: holds files that are not a render; give an empty or new directory"
        )
    staging = out.with_name(f".{out.name}.rendering")
    shutil.rmtree(staging, ignore_errors=True)
    counts = _write_render(run, staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return counts


class RenderTargetError(Exception):
    """An output directory the render must not replace."""


def _write_render(run: ProgramRun, out: Path) -> dict[str, int]:
    out.mkdir(parents=True)
    listed = resource_list(run)
    (out / "resources.json").write_text(json.dumps(listed, indent=2, sort_keys=True) + "\n")
    (out / "outputs.json").write_text(
        json.dumps(stack_outputs(run), indent=2, sort_keys=True) + "\n"
    )
    _write(
        out / "runner",
        {f"{pool}/config.toml": config for pool, config in runner_configs(run).items()},
    )
    releases = [r for r in run.resources if r.type == RUNNER_RELEASE_TYPE]
    (out / "values").mkdir(exist_ok=True)
    _write(
        out / "values",
        {
            f"{release.name}.yaml": yaml.dump(
                redacted(release.inputs.get("values", {})),
                Dumper=_ReviewDumper,
                sort_keys=True,
                width=100,
            )
            for release in releases
        },
    )
    documents = policy_documents(run.resources)
    (out / "policies").mkdir(exist_ok=True)
    _write(
        out / "policies",
        {name: json.dumps(document, indent=2) + "\n" for name, document in documents.items()},
    )
    files = carried_files(run.resources)
    _write(out / "files", files)
    user_data = user_data_files(run.resources)
    _write(out / "user-data", user_data)
    return {
        "resources": len(listed),
        "releases": len(releases),
        "policies": len(documents),
        "files": len(files) + len(user_data),
    }


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", nargs="?", help=f"one of: {', '.join(stack_names())}")
    parser.add_argument("--stack-file", type=Path, help="a stack file anywhere")
    parser.add_argument("--stack", dest="stack_name", help="the stack's name (with --stack-file)")
    parser.add_argument("--out", type=Path, help="output directory (default: out/<stack>)")
    args = parser.parse_args(argv)
    if (args.stack is None) == (args.stack_file is None):
        parser.error("give a stack name or --stack-file PATH")
    if args.stack_file is not None:
        named = _STACK_FILE_NAME.match(args.stack_file.name)
        args.stack = args.stack_name or (named["stack"] if named else None)
        if args.stack_file.name in ("Pulumi.yaml", "Pulumi.yml"):
            parser.error(
                f"{args.stack_file} is the project file, not a stack file: give "
                "stacks/Pulumi.<stack>.yaml"
            )
        if args.stack is None:
            parser.error("--stack NAME: the file name is not Pulumi.<stack>.yaml")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        _render(args)
    except _RenderRefusedError as refused:
        print(f"error: {refused.message}", file=sys.stderr)
        return refused.status
    return 0


class _RenderRefusedError(Exception):
    """Why the render stops: its message and exit status (2 for the files, 1 for the stack)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _render(args: argparse.Namespace) -> None:
    try:
        path = args.stack_file or stack_file(args.stack)
        config = read_stack_file(path)
        environments = imported_environments(path)
    except (UnknownStackError, StackFileError) as error:
        raise _RenderRefusedError(2, str(error)) from None
    except OSError as error:
        raise _RenderRefusedError(2, f"{args.stack_file}: {error.strerror}") from None
    for environment in environments:
        print(
            f"warning: {path} imports the ESC environment {environment}; its config is not in "
            "this render, which shows the stack file's own config only",
            file=sys.stderr,
        )
    run = evaluate_config(config, stack=args.stack, return_error=True)
    if isinstance(run.error, SettingsError):
        empty = "" if config else " (it holds no config yet)"
        where = f"{path}{empty} or with `pulumi config set --path <key> <value>`"
        raise _RenderRefusedError(1, str(SettingsError(run.error.stack, run.error.problems, where)))
    if run.error is not None:
        raise _RenderRefusedError(1, f"stack {args.stack} failed to evaluate: {run.error}")
    for warning in _stand_in_warnings(run, path, config):
        print(f"warning: {warning}", file=sys.stderr)
    out = args.out or Path("out") / args.stack
    try:
        counts = write_render(run, out)
    except RenderTargetError as error:
        raise _RenderRefusedError(2, str(error)) from None
    except OSError as error:
        raise _RenderRefusedError(2, f"--out {out}: {error.strerror}") from None
    print(
        f"{args.stack}: {_counted(counts['resources'], 'resource')}, "
        f"{_counted(counts['releases'], 'Helm release')}, "
        f"{_counted(counts['policies'], 'policy document')}, "
        f"{_counted(counts['files'], 'file')} -> {out}"
    )


def _stand_in_warnings(run: ProgramRun, path: Path, config: dict[str, Any]) -> list[str]:
    """What the render shows that `pulumi up` would take from elsewhere."""
    warnings = []
    for missing in run.missing_secrets:
        set_it = f"--path '{missing}' <value>" if "." in missing else f"{missing} <value>"
        warnings.append(
            f"{missing} is not set in {path}; rendered with a stand-in. `pulumi up` needs it: "
            f"`pulumi config set --secret {set_it}`"
        )
    if (hub := hub_stand_in(config)) is not None:
        warnings.append(hub.source)
    if vpc_cni_stand_in(config) is not None:
        warnings.append(NODE_CNI_POLICY_STAND_IN)
    return warnings


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


if __name__ == "__main__":
    sys.exit(main())
