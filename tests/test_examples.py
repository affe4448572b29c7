"""The built wheel, installed as another infra repo would install it, runs every example.

One wheel is built from this checkout and installed with `pip install --no-deps` into a fresh
virtualenv whose other packages are this test environment's (its site-packages stand in for
`--system-site-packages`, so nothing is downloaded). Each folder of examples/ is a complete
Pulumi program; it runs there under the offline render's mocks, importing
`gitlab_runner_fleet` from the virtualenv, never this repository's `components`.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO

EXAMPLES = REPO / "examples"
ACCOUNT_CLUSTER = "platform-prod"
OIDC_PROVIDER_ARN = (
    "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
)


def made_once_per_run(
    tmp_path_factory: pytest.TempPathFactory,
    worker_id: str,
    name: str,
    make: Callable[[Path], None],
) -> Path:
    """A folder `make` fills once per pytest run: the first xdist worker to ask makes it while
    the others wait on a lock, then every worker reads the same folder (in the run's own
    temporary directory, which holds one per worker)."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    folder = shared / name
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".made").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".made").touch()
    return folder


def build_wheel(folder: Path) -> None:
    """The wheel of this checkout, built as `pip wheel` builds it from a clone."""
    source = folder / "source"
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
            str(folder),
            str(source),
        ],
        check=True,
        cwd=folder,
    )


def install_wheel(wheel: Path, root: Path) -> None:
    """A fresh virtualenv with the wheel installed."""
    venv.EnvBuilder(with_pip=False).create(root)
    (packages,) = (root / "lib").glob("python3*/site-packages")
    # This environment's packages (pulumi, pulumi-aws, ...) play the system site-packages.
    (packages / "test-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
    )


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    (built,) = made_once_per_run(tmp_path_factory, worker_id, "wheel", build_wheel).glob(
        "gitlab_runner_fleet-*.whl"
    )
    return built


@pytest.fixture(scope="session")
def python(wheel: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The interpreter of the virtualenv the wheel is installed in."""
    root = made_once_per_run(
        tmp_path_factory, worker_id, "venv", lambda root: install_wheel(wheel, root)
    )
    return root / "bin" / "python"


def test_the_wheel_holds_only_the_gitlab_runner_fleet_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if ".dist-info" not in name}
    assert packages == {"gitlab_runner_fleet"}
    assert "gitlab_runner_fleet/fleet/runner_fleet.py" in names


CONFIG = {
    "fleet-existing-cluster": {
        "aws:region": "eu-west-1",
        "ci-runners:clusterName": ACCOUNT_CLUSTER,
        "ci-runners:nodeSubnetIds": json.dumps(["subnet-0aaaaaaaaaaaaaaa1"]),
        "ci-runners:runnerToken": "glrt-example",
    },
    "cache-only": {
        "ci-runner-cache:bucketName": "acme-ci-cache",
        "ci-runner-cache:oidcProviderArn": OIDC_PROVIDER_ARN,
    },
    "spot-pool": {
        "ci-spot-pool:clusterName": ACCOUNT_CLUSTER,
        "ci-spot-pool:subnetIds": json.dumps(["subnet-0aaaaaaaaaaaaaaa1"]),
    },
}


def run_every_example(python: Path, folder: Path) -> None:
    """Every example, run in one process of the virtualenv (imports are paid once)."""
    result = subprocess.run(
        [
            str(python),
            str(REPO / "tests" / "example_runner.py"),
            json.dumps({str(EXAMPLES / name): config for name, config in CONFIG.items()}),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    (folder / "outcomes.json").write_text(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def examples(
    python: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> dict[str, dict[str, Any]]:
    folder = made_once_per_run(
        tmp_path_factory, worker_id, "examples", lambda folder: run_every_example(python, folder)
    )
    ran: dict[str, dict[str, Any]] = json.loads((folder / "outcomes.json").read_text())
    return {Path(path).name: outcome for path, outcome in ran.items()}


def run_example(examples: dict[str, dict[str, Any]], python: Path, name: str) -> dict[str, Any]:
    ran = examples[name]
    assert ran["error"] is None, ran["error"]
    assert Path(ran["package"]).is_relative_to(python.parent.parent), ran["package"]
    return ran


def test_every_example_is_a_complete_program_of_its_own() -> None:
    folders = sorted(path.name for path in EXAMPLES.iterdir() if path.is_dir())
    assert folders == ["cache-only", "fleet-existing-cluster", "spot-pool"]
    for folder in folders:
        assert {"Pulumi.yaml", "__main__.py", "requirements.txt"} <= {
            path.name for path in (EXAMPLES / folder).iterdir()
        }


def test_the_whole_fleet_goes_into_an_existing_cluster(
    examples: dict[str, dict[str, Any]], python: Path
) -> None:
    ran = run_example(examples, python, "fleet-existing-cluster")
    types = {resource_type for resource_type, _ in ran["resources"]}
    assert "gitlab-runner-fleet:index:RunnerFleet" in types
    assert "gitlab-runner-fleet:index:SpotNodeGroup" in types
    assert "gitlab-runner-fleet:index:CacheBucket" in types
    assert "gitlab-runner-fleet:index:ClusterAutoscaler" not in types
    assert ran["outputs"]["clusterName"] == ACCOUNT_CLUSTER
    assert ran["outputs"]["cacheBucketName"] == "ci-runners-example-cache-123456789012"


def test_a_cache_alone(examples: dict[str, dict[str, Any]], python: Path) -> None:
    ran = run_example(examples, python, "cache-only")
    assert ran["outputs"]["bucket"] == "acme-ci-cache"
    assert ran["outputs"]["roleArn"] == "arn:aws:iam::123456789012:role/ci-cache-access-irsa"


def test_one_spot_pool(examples: dict[str, dict[str, Any]], python: Path) -> None:
    ran = run_example(examples, python, "spot-pool")
    tags = ran["outputs"]["scaleFromZeroTags"]
    assert tags["k8s.io/cluster-autoscaler/node-template/label/kubernetes.io/arch"] == "arm64"
    assert tags["k8s.io/cluster-autoscaler/node-template/taint/ci.example.com/pool"] == (
        "arm64:NoSchedule"
    )
    assert ran["outputs"]["autoscalingGroup"] == "eks-arm64-builds-mock-asg"


CONSUMER = """
import pulumi
from gitlab_runner_fleet.aws.spot_node_group import SpotNodeGroup, SpotNodeGroupArgs

args: SpotNodeGroupArgs = {
    "cluster_name": "ci",
    "kubernetes_version": "1.34",
    "subnet_ids": ["subnet-1"],
    "instance_types": ["c7g.2xlarge"],
    "max_size": %s,
}
pool = SpotNodeGroup("arm64", args)
name: pulumi.Output[str] = pool.node_group_name
"""
# The heavy provider SDKs stay out of this check: it is about the package's own types.
MYPY_CONFIG = """
[mypy]
strict = True
[mypy-pulumi_aws.*,pulumi_kubernetes.*,pulumi_eks.*,pulumi_gitlab.*,pulumi_random.*,pulumiverse_time.*,grafana_foundation_sdk.*]
follow_imports = skip
ignore_missing_imports = True
"""


def test_a_consumers_type_checker_checks_the_components_arguments(
    python: Path, tmp_path: Path
) -> None:
    (tmp_path / "mypy.ini").write_text(MYPY_CONFIG)
    # The checkout's own cache (`.ci/run` runs mypy first) spares re-reading pulumi and
    # pydantic; mypy rechecks whatever the consumer's options or paths make stale.
    if (REPO / ".mypy_cache").is_dir():
        shutil.copytree(REPO / ".mypy_cache", tmp_path / ".mypy_cache")
    (tmp_path / "typed.py").write_text(CONSUMER % "10")
    (tmp_path / "mistyped.py").write_text(CONSUMER % '"ten"')
    result = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--config-file", "mypy.ini"),
            *("--python-executable", str(python), "typed.py", "mistyped.py"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
        check=False,
    )
    # Without py.typed mypy would refuse both imports ("missing library stubs or py.typed").
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout
    assert errors[0].startswith("mistyped.py:")
    assert 'TypedDict item "max_size" has type "int"' in errors[0]
