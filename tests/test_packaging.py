"""Importable components: the pip package's name and the multi-language schema."""

import inspect
import pkgutil
import runpy
from typing import Any, get_type_hints, is_typeddict

import pulumi
import pytest
import yaml
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.experimental.schema import generate_schema

import components
from components.fleet import RunnerFleet
from tests.harness import REPO

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
    assert len(PROVIDER["COMPONENTS"]) == 20


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
