"""Importable components: the pip package's name and the multi-language schema."""

import inspect
import pkgutil
import runpy
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, get_type_hints, is_typeddict

import pulumi
import pytest
import yaml
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.experimental.schema import generate_schema

import components
from components.fleet import RunnerFleet
from tests.harness import REPO, run_program

PROVIDER = runpy.run_path(str(REPO / "provider" / "__main__.py"), run_name="provider")


def defined_components() -> set[type[pulumi.ComponentResource]]:
    """Every ComponentResource class defined in the components package."""
    found: set[type[pulumi.ComponentResource]] = set()
    for module_info in pkgutil.walk_packages(components.__path__, prefix="components."):
        module = __import__(module_info.name, fromlist=["_"])
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, pulumi.ComponentResource) and cls.__module__ == module.__name__:
                found.add(cls)
    return found


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    analyzed = Analyzer(PROVIDER["PACKAGE_NAME"]).analyze(PROVIDER["COMPONENTS"])
    spec = generate_schema(
        name=PROVIDER["PACKAGE_NAME"],
        version="0.1.0",
        namespace=None,
        components=analyzed["component_definitions"],
        type_definitions=analyzed["type_definitions"],
        dependencies=list(analyzed["dependencies"]),
    )
    document: dict[str, Any] = spec.to_json() if hasattr(spec, "to_json") else vars(spec)
    return document


def test_the_provider_hosts_every_component_but_the_python_only_fleet() -> None:
    # RunnerFleet takes the validated settings model, which the schema cannot express (see
    # provider/__main__.py); every other component is served to every language.
    assert set(PROVIDER["COMPONENTS"]) == defined_components() - {RunnerFleet}
    assert len(PROVIDER["COMPONENTS"]) == 17


def component_name(component: object) -> str:
    return component.__name__ if isinstance(component, type) else str(component)


@pytest.mark.parametrize(
    "component", sorted(PROVIDER["COMPONENTS"], key=component_name), ids=component_name
)
def test_schema_is_inferred_for_the_component(
    schema: dict[str, Any], component: type[pulumi.ComponentResource]
) -> None:
    resource = schema["resources"][f"gitlab-runner-fleet:index:{component.__name__}"]
    assert resource["isComponent"] is True
    args_type = get_type_hints(component.__init__)["args"]
    assert is_typeddict(args_type)
    assert set(resource["inputProperties"]) == {camel(key) for key in args_type.__annotations__}
    assert set(resource["requiredInputs"]) == {camel(key) for key in args_type.__required_keys__}
    outputs = {name for name, hint in component.__annotations__.items() if not name.startswith("_")}
    assert set(resource["properties"]) == {camel(name) for name in outputs}
    assert resource["description"]


def test_the_plugin_manifest_points_at_the_provider() -> None:
    manifest = yaml.safe_load((REPO / "PulumiPlugin.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    assert (REPO / manifest["main"] / "__main__.py").is_file()


def test_pip_installs_the_components_as_gitlab_runner_fleet(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "components", source / "components", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("gitlab_runner_fleet-*.whl")
    packages = {
        name.split("/")[0]
        for name in zipfile.ZipFile(wheel).namelist()
        if not name.endswith(".dist-info/") and ".dist-info" not in name
    }
    assert packages == {"gitlab_runner_fleet"}
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from gitlab_runner_fleet.aws.cache_bucket import CacheBucket; "
        "from gitlab_runner_fleet.workloads.gitlab_runner import GitlabRunner; "
        "import gitlab_runner_fleet.settings; "
        "print(CacheBucket.__module__, GitlabRunner.__module__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(target)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.stdout.split() == [
        "gitlab_runner_fleet.aws.cache_bucket",
        "gitlab_runner_fleet.workloads.gitlab_runner",
    ]


def test_the_import_example_runs_against_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # The example imports the installed name; in the repository that package is `components`.
    monkeypatch.setitem(sys.modules, "gitlab_runner_fleet", components)
    run = run_program(
        lambda: runpy.run_path(str(REPO / "examples" / "cache-only" / "__main__.py")),
        config={
            "gitlab-runner-fleet:bucketName": "acme-ci-cache",
            "gitlab-runner-fleet:oidcProviderArn": (
                "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/X"
            ),
        },
    )
    assert run.outputs["bucket"] == "acme-ci-cache"
    assert run.outputs["roleArn"] == "arn:aws:iam::123456789012:role/ci-cache-access-irsa"
