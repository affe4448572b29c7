"""The threat model: its document is its rendering, and every proof it cites is a real test."""

from __future__ import annotations

import ast
from pathlib import Path

from tools.threat_model import BOUNDARIES, render

REPO = Path(__file__).resolve().parent.parent


def defined_tests(path: Path) -> set[str]:
    """Module-level test functions of a test file, read without importing it."""
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_docs_threat_model_is_the_rendered_table() -> None:
    assert (REPO / "docs" / "threat-model.md").read_text() == render(), (
        "docs/threat-model.md is generated: run "
        "`python tools/threat_model.py > docs/threat-model.md`"
    )


def test_every_test_named_in_the_threat_model_exists() -> None:
    missing = []
    for boundary in BOUNDARIES:
        for node_id in boundary.proven_by:
            file, _, name = node_id.partition("::")
            path = REPO / file
            if not path.is_file() or name not in defined_tests(path):
                missing.append(node_id)
    assert missing == []


def test_every_cannot_names_what_enforces_it_and_a_test_that_proves_it() -> None:
    for boundary in BOUNDARIES:
        if "cannot" in (boundary.rootless, boundary.dind):
            assert boundary.enforced_by, boundary.target
            assert boundary.proven_by, boundary.target
        assert boundary.why.endswith("."), boundary.target
    targets = [boundary.target for boundary in BOUNDARIES]
    assert len(targets) == len(set(targets))


def test_dind_is_counted_as_root_on_its_node() -> None:
    by_target = {boundary.target: boundary for boundary in BOUNDARIES}
    for target in (
        "Root on the node",
        "The node's IAM role credentials (instance metadata service)",
        "Other jobs' files, processes and variables",
    ):
        assert by_target[target].dind == "can"
        assert by_target[target].rootless == "cannot"


def test_dind_reaches_other_projects_cache_objects_but_not_the_cache_credentials() -> None:
    # Presigned URLs are `--url` arguments of the helper's cache commands in the job script
    # (shells/abstract.go), saved in the pod's scripts emptyDir (executors/kubernetes/
    # kubernetes.go saveScriptOnEmptyDir): root on the node reads them.
    boundaries = {boundary.target: boundary for boundary in BOUNDARIES}
    objects = boundaries["Other projects' cache objects"]
    assert (objects.rootless, objects.dind) == ("cannot", "can")
    credentials = boundaries["Cache storage credentials"]
    assert (credentials.rootless, credentials.dind) == ("cannot", "cannot")


def test_every_dind_service_counts_as_privileged_not_only_docker_dind() -> None:
    # executors/kubernetes/kubernetes.go preparePodServices gives every service the same
    # service_container_security_context; common/allowed_images.go admits the runner's own
    # images whatever allowed_services says.
    root = {boundary.target: boundary for boundary in BOUNDARIES}["Root on the node"]
    assert any("every service container is privileged" in item for item in root.enforced_by)
    assert "default job image, and the helper's repository name without a tag" in root.why


def test_the_vpc_cnis_permissions_are_reachable_from_dind_either_way() -> None:
    cni = {boundary.target: boundary for boundary in BOUNDARIES}[
        "Every network interface in the account (the VPC CNI's permissions)"
    ]
    assert (cni.rootless, cni.dind) == ("cannot", "can")
    assert "cluster.nodeCniPolicy" in " ".join(cni.enforced_by)
    assert "projected token" in cni.why


def test_the_metadata_row_names_the_hop_limit_setting_and_the_engine() -> None:
    imds = {boundary.target: boundary for boundary in BOUNDARIES}[
        "The node's IAM role credentials (instance metadata service)"
    ]
    enforced = " ".join(imds.enforced_by)
    assert "pools[i].imdsHopLimit" in enforced
    assert "networkPolicyEnforcement" in enforced
    # Hop limit 2 without an enforcing engine leaves a rootless job a way to the credentials.
    assert "imdsHopLimit: 2" in imds.rootless_unless
    assert "| cannot, unless a pool sets `imdsHopLimit: 2`" in render()
