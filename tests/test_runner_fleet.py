"""RunnerFleet as a component: the whole fleet from one settings model, in place of 0.1.0's
top-level resources, from a stack file or from another program's own settings and cluster."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.arguments import ArgumentsError
from components.fleet import RunnerFleet, stack_outputs
from components.settings import RawSecret, SettingsError, parse_settings
from components.settings.parse import fleet_settings
from tests.harness import (
    PROJECT,
    REPO,
    ProgramRun,
    previous_urns,
    run_program,
    run_stack,
    stack_names,
)

URNS_0_1_0: dict[str, list[str]] = json.loads((REPO / "tests/data/urns-0.1.0.json").read_text())
FLEET_TYPE = "gitlab-runner-fleet:index:RunnerFleet"


# 0.1.0 resources this version deletes on purpose, by stack, with the reason.
DELIBERATELY_REMOVED = {
    "basement": {
        # The edge cache's expiry moves into the server's pod (a second container), which tells
        # the server what it deleted through the server's remote control on the pod's loopback:
        # from a CronJob's pod the server went on serving deleted files from its listing.
        "kubernetes:batch/v1:CronJob::site-cache-expire",
    },
    "dev": {
        # A created cluster's VPC CNI has its own IRSA role now: node roles lose the CNI
        # policy, which let a dind job (root on its node) modify any network interface in the
        # account.
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment::cluster-system-nodes-AmazonEKS_CNI_Policy",
        # dev's only pool runs on Karpenter (issue 22): its spot managed node group goes, with
        # its launch template, node role and Auto Scaling group tags, and cluster-autoscaler
        # with its IRSA role, which has no node group left to scale. A disposable stack takes
        # the switch in one `pulumi up`; docs/karpenter.md#moving-a-pool-between-scalers shows
        # the way that loses no running job.
        "gitlab-runner-fleet:index:SpotNodeGroup::build-nodes-default",
        "aws:eks/nodeGroup:NodeGroup::build-nodes-default",
        "aws:ec2/launchTemplate:LaunchTemplate::build-nodes-default",
        "gitlab-runner-fleet:index:NodeRole::build-nodes-default-role",
        "aws:iam/role:Role::build-nodes-default-role",
        *(
            f"aws:iam/rolePolicyAttachment:RolePolicyAttachment::build-nodes-default-role-{policy}"
            for policy in (
                "AmazonEC2ContainerRegistryReadOnly",
                "AmazonEKSWorkerNodePolicy",
                "AmazonEKS_CNI_Policy",
            )
        ),
        *(
            f"aws:autoscaling/tag:Tag::build-nodes-default-{tag}"
            for tag in (
                "gitlab-runner-fleet/autoscaler",
                "k8s.io/cluster-autoscaler/node-template/label/eks.amazonaws.com/capacityType",
                "k8s.io/cluster-autoscaler/node-template/label/gitlab-runner-fleet/pool",
                "k8s.io/cluster-autoscaler/node-template/label/kubernetes.io/arch",
                "k8s.io/cluster-autoscaler/node-template/resources/ephemeral-storage",
                "k8s.io/cluster-autoscaler/node-template/taint/gitlab-runner-fleet/pool",
            )
        ),
        "gitlab-runner-fleet:index:ClusterAutoscaler::cluster-autoscaler",
        "kubernetes:helm.sh/v3:Release::cluster-autoscaler",
        "aws:iam/policy:Policy::cluster-autoscaler-policy",
        "gitlab-runner-fleet:index:IrsaRole::cluster-autoscaler-irsa",
        "aws:iam/role:Role::cluster-autoscaler-irsa",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment::cluster-autoscaler-irsa-policy",
    },
}


# Resources pulumi-eks's remote Cluster component created inside itself in 0.1.0, which the mock
# engine never sees: with `useDefaultVpcCni` unset it adds the vpc-cni add-on as its child
# `<cluster>-vpc-cni` (pulumi/pulumi-eks nodejs/eks/cluster/cluster.ts createCore).
REMOTE_CHILDREN_0_1_0 = {
    "dev": [
        "urn:pulumi:dev::gitlab-runner-fleet::gitlab-runner-fleet:index:EksCluster"
        "$eks:index:Cluster$eks:index:VpcCniAddon::cluster-vpc-cni"
    ]
}


def _type_and_name(urn: str) -> str:
    parts = urn.split("::")
    return f"{parts[2].split('$')[-1]}::{parts[3]}"


@pytest.mark.parametrize("stack", sorted(URNS_0_1_0))
def test_every_resource_of_0_1_0_is_taken_over_by_exactly_one_resource(stack: str) -> None:
    run = run_stack(stack)
    old = set(URNS_0_1_0[stack]) | set(REMOTE_CHILDREN_0_1_0.get(stack, []))
    taken = previous_urns(run, stack, old)
    by_old: dict[str, list[str]] = {}
    for urn, previous in taken.items():
        if previous is not None:
            by_old.setdefault(previous, []).append(urn)
    lost = {_type_and_name(urn) for urn in old - by_old.keys()}
    assert lost <= DELIBERATELY_REMOVED.get(stack, set())
    assert {urn: news for urn, news in by_old.items() if len(news) > 1} == {}
    # A new resource of an old one's type and name would be a replacement an alias missed.
    old_names = {_type_and_name(urn) for urn in old}
    added = [urn for urn, previous in taken.items() if previous is None]
    assert [urn for urn in added if _type_and_name(urn) in old_names] == []
    assert any(urn.endswith(f"{FLEET_TYPE}::fleet") for urn in added)


def test_the_stacks_of_0_1_0_are_the_stacks_of_today() -> None:
    assert sorted(URNS_0_1_0) == stack_names()


@pytest.mark.parametrize("stack", stack_names())
def test_the_fleet_is_the_ancestor_of_everything_a_stack_declares(stack: str) -> None:
    run = run_stack(stack)
    fleet = run.one(FLEET_TYPE)
    assert fleet.parent.endswith("::pulumi:pulumi:Stack::gitlab-runner-fleet-" + stack)
    assert all(run.descends_from(r, fleet) for r in run.resources if r is not fleet)
    # Only outputs the stack has (found trying it as a new user: five exported as null).
    assert [name for name, value in run.outputs.items() if value is None] == []


def settings(**raw: Any):
    """Settings an importing program builds itself, without a stack file of ours."""
    return parse_settings(
        {"cluster": {"mode": "kubeconfig", "name": "k3s"}, **raw},
        project="platform",
        stack="ci",
        aws_region=None,
        secrets={
            "runnerTokens": RawSecret({"default": pulumi.Output.secret("glrt-x")}, True),
            "kubeconfig": RawSecret('{"clusters": []}', True),
            "cacheCredentials": RawSecret({"accessKey": "a", "secretKey": "b"}, True),
        },
    )


MINIO = {
    "type": "s3Compatible",
    "serverAddress": "https://minio.example.com",
    "bucketName": "ci-cache",
    "pathStyle": True,
}


def fleet_run(program: Any) -> ProgramRun:
    return run_program(program, region=None)


def test_an_importing_program_declares_the_fleet_from_its_own_settings() -> None:
    def program() -> None:
        fleet = RunnerFleet("ci", {"settings": settings(cache=MINIO)})
        for name, value in stack_outputs(fleet, ["default"]).items():
            pulumi.export(name, value)

    run = fleet_run(program)
    assert run.error is None
    assert run.outputs["clusterName"] == "k3s"
    assert run.outputs["runnerNamespace"] == "gitlab-runner"
    assert run.one(FLEET_TYPE).name == "ci"
    token = next(
        s
        for s in run.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"] == "gitlab-runner-default-token"
    )
    # The program's own Output flows into the token Secret, still a secret.
    assert is_rpc_secret(token.inputs["stringData"])
    assert unwrap_rpc_secret(token.inputs["stringData"])["runner-token"] == "glrt-x"


def test_a_given_cluster_and_provider_are_used_instead_of_a_kubeconfig_or_a_lookup() -> None:
    def program() -> None:
        provider = k8s.Provider("platform", kubeconfig="{}")
        RunnerFleet(
            "ci",
            {
                "settings": settings(cache=MINIO),
                "cluster": {"cluster_name": "platform", "kubernetes_provider": provider},
            },
        )

    run = fleet_run(program)
    assert run.error is None
    providers = run.of_type("pulumi:providers:kubernetes")
    assert [p.name for p in providers] == ["platform"]
    in_cluster = [r for r in run.resources if r.type.startswith("kubernetes:")]
    assert in_cluster
    assert all(r.provider.startswith(f"{providers[0].urn}::") for r in in_cluster)


def test_a_bad_mirror_address_fails_before_anything_is_declared() -> None:
    run = run_stack(
        "prod",
        {f"{PROJECT}:registryMirror": {"clusterIp": "172.20.200.1"}},
        return_error=True,
    )
    assert isinstance(run.error, SettingsError)
    assert str(run.error.problems[0]).startswith("registryMirror.clusterIp: 172.20.200.1")
    assert run.resources == []


def test_the_fleet_names_bad_arguments_before_declaring_anything() -> None:
    """As an importing program gets them wrong (found trying it as a new user)."""

    def attempt(args: Any) -> list[str]:
        run = run_program(lambda: RunnerFleet("ci", args()), region=None, return_error=True)
        assert isinstance(run.error, ArgumentsError), run.error
        assert str(run.error).startswith("RunnerFleet 'ci': invalid arguments")
        assert run.resources == []
        return run.error.problems

    assert attempt(lambda: {"setings": settings(cache=MINIO)}) == [
        "setings: unknown argument, did you mean settings?",
        "settings: required",
    ]
    assert attempt(lambda: {"settings": {"cluster": {"mode": "kubeconfig"}}}) == [
        "settings: must be FleetSettings, got dict with keys ['cluster']"
    ]

    def given_without_provider() -> None:
        cluster: Any = {"cluster_name": "platform"}
        RunnerFleet("ci", {"settings": settings(cache=MINIO), "cluster": cluster})

    run = run_program(given_without_provider, region=None, return_error=True)
    assert isinstance(run.error, ArgumentsError)
    assert run.error.problems == ["cluster.kubernetes_provider: required"]


def test_a_given_eks_cluster_needs_its_oidc_provider_for_the_irsa_roles() -> None:
    existing = parse_settings(
        {
            "cluster": {
                "mode": "existing",
                "name": "platform",
                "version": "1.34",
                "nodeSubnetIds": ["subnet-1"],
            }
        },
        project="platform",
        stack="ci",
        aws_region="eu-west-1",
        secrets={"runnerTokens": RawSecret({"default": "glrt-x"}, True)},
    )

    def program() -> None:
        provider = k8s.Provider("platform", kubeconfig="{}")
        RunnerFleet(
            "ci",
            {
                "settings": existing,
                "cluster": {"cluster_name": "platform", "kubernetes_provider": provider},
            },
        )

    run = run_program(program, return_error=True)
    assert isinstance(run.error, ArgumentsError)
    assert run.error.problems == [
        "cluster.oidc_provider_arn: required for IRSA roles of cluster-autoscaler "
        "(clusterAutoscaler.enabled: false turns it off); the registry mirror's S3 access "
        "(registryMirror.storage: filesystem avoids it); the cache's IRSA role "
        "(cacheAccess.mode: accessKey avoids it)"
    ]
    assert [r.type for r in run.resources] == ["pulumi:providers:kubernetes"]


def test_a_programs_own_settings_refuse_the_key_mistakes_a_stack_file_would() -> None:
    """fleet_settings() checks its keys as the stack-file path does (found trying it as a new
    user: a misspelt section silently deployed a second cluster-autoscaler)."""
    good = {"cluster": {"mode": "kubeconfig", "name": "k3s"}, "cache": MINIO}
    secrets = {
        "runnerTokens": {"default": "glrt-x"},
        "kubeconfig": '{"clusters": []}',
        "cacheCredentials": {"accessKey": "a", "secretKey": "b"},
    }
    caught: list[SettingsError] = []

    def attempt(values: dict[str, Any], extra_secrets: dict[str, Any] | None = None) -> None:
        try:
            fleet_settings(values, secrets={**secrets, **(extra_secrets or {})})
        except SettingsError as error:
            caught.append(error)

    def program() -> None:
        attempt({**good, "clusterAutoscalar": {"enabled": False}})
        attempt({**good, "cache.expirationDays": 7})
        attempt({**good, "gitlab-runner-fleet:monitoring": {"enabled": True}})
        attempt({**good, "runnerTokens": {"default": "glrt-y"}})
        attempt(good, {"pools": [{"name": "default"}]})
        attempt({**good, "pools": None})

    run = run_program(program, region=None)
    assert run.error is None
    assert [[str(p) for p in error.problems] for error in caught] == [
        ["clusterAutoscalar: unknown key, did you mean clusterAutoscaler?"],
        ["cache.expirationDays: is one flat key; nest it inside 'cache' instead"],
        ["gitlab-runner-fleet:monitoring: takes no namespace here: pass it as 'monitoring'"],
        [
            "runnerTokens: is a secret: pass it in `secrets`, not in `values`",
        ],
        ["pools: is not a secret: pass it in `values`"],
        ["pools: is empty (null): give it a value, or leave the key out for the defaults"],
    ]
    assert all("fleet_settings()" in str(error) for error in caught)
