"""Evaluates a Pulumi program offline: no Pulumi CLI, no cloud credentials, no cluster.

The program runs under the Pulumi SDK's mocks (`pulumi.runtime.set_mocks`), the same engine the
unit tests use, and every registration is recorded with its inputs and resource options.
Mocks answer like AWS would for the few computed properties the program reads (ARNs, names,
ids, regions) with placeholder values (account 123456789012); everything else comes back as the
program sent it. `run_program` gives each run a fresh event loop, root stack and config.
"""

from __future__ import annotations

import asyncio
import json
import re
import runpy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pydantic
import yaml
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.settings import ROOT
from pulumi.runtime.settings import SETTINGS as PULUMI_SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.fleet.sites import EDGE_CREDENTIALS_OUTPUT, stand_in_hub_outputs
from components.settings import ENCRYPTED, SettingsError
from components.settings.cache_plan import cache_bucket_name
from components.settings.parse import settings_from_config
from components.settings.secrets import stand_in

REPO = Path(__file__).resolve().parent
PROJECT = "gitlab-runner-fleet"
ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "eu-west-1"
VPC_CNI_ADDON = {"configurationValues": json.dumps({"enableNetworkPolicy": "true"})}
"""What eks:DescribeAddon answers for an existing cluster's vpc-cni add-on by default: it
enforces NetworkPolicies and runs with the node role."""
_SDK_STACK_TRACE = pulumi_resource._get_stack_trace


def _no_stack_trace() -> source_pb2.StackTrace:
    return source_pb2.StackTrace()


@dataclass
class Registered:
    """One resource the program declared, as the engine would have received it."""

    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    protect: bool
    retain_on_delete: bool
    dependencies: list[str]
    provider: str
    ignore_changes: list[str]
    aliases: list[dict[str, Any]] = field(default_factory=list)
    """Alias specs (`{"spec": {...}}`) or URNs (`{"urn": ...}`) as the engine receives them."""


@dataclass
class ProgramRun:
    """What one program run declared and exported."""

    resources: list[Registered]
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """What each component passed to `register_outputs`, by URN."""
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    error: BaseException | None = None
    missing_secrets: tuple[str, ...] = ()
    """Secrets the stack needs and its file does not set: rendered with stand-ins."""

    def of_type(self, type_: str) -> list[Registered]:
        return [resource for resource in self.resources if resource.type == type_]

    def one(self, type_: str) -> Registered:
        matches = self.of_type(type_)
        assert len(matches) == 1, f"expected one {type_}, found {[r.name for r in matches]}"
        return matches[0]

    def by_urn(self, urn: str) -> Registered:
        return next(resource for resource in self.resources if resource.urn == urn)

    def descends_from(self, resource: Registered, ancestor: Registered) -> bool:
        """Whether `ancestor` is `resource`'s parent, grandparent, and so on."""
        parents = {r.urn: r.parent for r in self.resources}
        urn = resource.parent
        while urn:
            if urn == ancestor.urn:
                return True
            urn = parents.get(urn, "")
        return False


def mock_issuer(region: str, cluster_name: str) -> str:
    """The OIDC issuer (host/path) the mocks give a cluster."""
    return f"oidc.eks.{region}.amazonaws.com/id/MOCK{cluster_name.upper().replace('-', '')}"


MOCK_CLUSTER_VPC = "vpc-0cluster000000000"
OWN_ENDPOINT = "vpce-0own000000000000"
MOCK_SERVICE_CIDR = "172.20.0.0/16"
MOCK_VPC_OF_OWN_ENDPOINT = MOCK_CLUSTER_VPC
MOCK_CLUSTER_SUBNETS = ["subnet-0cluster0000000001", "subnet-0cluster0000000002"]
MOCK_CLUSTER_SECURITY_GROUP = "sg-0cluster000000000"
"""The security group EKS creates for a cluster (`eks-cluster-sg-<name>-<id>`)."""
MOCK_ROUTE_TABLES = ["rtb-0mock000000000001", "rtb-0mock000000000002"]


ResourceAnswer = Callable[[pulumi.runtime.MockResourceArgs, dict[str, Any]], str | None]
"""Fills a mocked resource's computed outputs into its state; may return its ID."""


class FleetMocks(pulumi.runtime.Mocks):
    """Answers resource registrations and invokes the way AWS would, for one account and region."""

    def __init__(
        self,
        region: str,
        partition: str = "aws",
        cluster_version: str = "1.34",
        s3_routed_tables: Sequence[str] = (),
        own_s3_endpoint_tables: Sequence[str] | None = None,
        *,
        own_s3_endpoint_tags: Mapping[str, str] | None = None,
        vpc_cidr_blocks: Sequence[str] = ("10.0.0.0/16",),
        vpc_cni_addon: Mapping[str, Any] | None = None,
        hub_outputs: Mapping[str, Any] | None = None,
    ) -> None:
        self.region = region
        self.hub_outputs = hub_outputs
        """What an edge's hub stack reference reads (`hub_stand_in`); None: the shipped hub's."""
        self.partition = partition
        self.cluster_version = cluster_version
        self.s3_routed_tables = list(s3_routed_tables)
        """Route tables that already route the S3 prefix list (some gateway endpoint's)."""
        self.own_s3_endpoint_tables = own_s3_endpoint_tables
        """Route tables of an S3 endpoint tagged as this stack's; None: there is none."""
        self.own_s3_endpoint_tags = own_s3_endpoint_tags
        """The tags that endpoint carries; the tagging API then finds it only when every tag
        filter matches them. None: it matches any filter."""
        self.vpc_cidr_blocks = list(vpc_cidr_blocks)
        """The VPC's IPv4 CIDR blocks, the primary one first."""
        self.vpc_cni_addon = VPC_CNI_ADDON if vpc_cni_addon is None else vpc_cni_addon
        """What eks:DescribeAddon answers for an existing cluster's vpc-cni add-on (camelCase
        fields); empty: the cluster has none and the lookup fails like AWS's."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        # Custom resources echo their inputs like most providers; components (pulumi-eks's are
        # remote) return only the outputs set below, never input resource references.
        state = dict(args.inputs) if args.custom else {}
        computed = {
            "aws:s3/bucket:Bucket": self._bucket,
            "aws:iam/policy:Policy": self._iam_named("policy"),
            "aws:iam/role:Role": self._iam_named("role"),
            "aws:iam/user:User": self._iam_named("user"),
            "aws:iam/accessKey:AccessKey": self._access_key,
            "aws:iam/openIdConnectProvider:OpenIdConnectProvider": self._oidc_provider_resource,
            "eks:index:Cluster": self._eks_cluster,
            "aws:eks/nodeGroup:NodeGroup": self._node_group,
            "aws:ec2/launchTemplate:LaunchTemplate": self._launch_template,
            "kubernetes:core/v1:Secret": self._kubernetes_secret,
            "aws:ec2/vpcEndpoint:VpcEndpoint": lambda _args, _state: "vpce-0mock00000000000",
            "gitlab:index/userRunner:UserRunner": self._user_runner,
            "time:index/rotating:Rotating": self._rotating,
            "random:index/randomPassword:RandomPassword": self._random_password,
            "pulumi:pulumi:StackReference": self._hub_stack_reference,
            "aws:sqs/queue:Queue": self._sqs_queue,
            "aws:cloudwatch/eventRule:EventRule": self._event_rule,
        }.get(args.typ)
        resource_id = computed(args, state) if computed else None
        return resource_id or f"{args.name}-id", state

    def _bucket(self, _: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> str:
        name = str(state["bucket"])
        state.update(arn=f"arn:{self.partition}:s3:::{name}", region=self.region)
        return name

    def _iam_named(self, kind: str) -> ResourceAnswer:
        def answer(args: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> None:
            state.update(arn=f"arn:{self.partition}:iam::{ACCOUNT_ID}:{kind}/{args.name}")
            state.update(name=args.name)

        return answer

    @staticmethod
    def _access_key(_: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> str:
        state.update(secret="mock-secret-access-key")
        return "AKIAMOCKACCESSKEY000"

    def _oidc_provider_resource(
        self, _: pulumi.runtime.MockResourceArgs, state: dict[str, Any]
    ) -> None:
        host_path = state["url"].removeprefix("https://")
        state.update(arn=f"arn:{self.partition}:iam::{ACCOUNT_ID}:oidc-provider/{host_path}")

    def _eks_cluster(self, args: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> None:
        cluster_name = args.inputs["name"]
        issuer = mock_issuer(self.region, cluster_name)
        state.update(
            kubeconfigJson=json.dumps({"clusters": [{"name": cluster_name}]}),
            oidcProviderArn=f"arn:{self.partition}:iam::{ACCOUNT_ID}:oidc-provider/{issuer}",
            oidcProviderUrl=f"https://{issuer}",
            oidcIssuer=issuer,
        )

    @staticmethod
    def _node_group(args: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> None:
        state.update(
            nodeGroupName=f"{args.name}-20261123",
            resources=[{"autoscalingGroups": [{"name": f"eks-{args.name}-mock-asg"}]}],
        )

    @staticmethod
    def _launch_template(_: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> None:
        # EC2 numbers a new launch template's first version 1.
        state.update(latestVersion=1, defaultVersion=1)

    @staticmethod
    def _kubernetes_secret(args: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> None:
        # The API server's version of the object; a changed Secret gets a new one.
        state["metadata"] = {**state["metadata"], "resourceVersion": f"{len(args.name)}01"}

    @staticmethod
    def _user_runner(args: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> None:
        # GitLab answers a created runner with its authentication token.
        state["token"] = f"glrt-mock-{args.name}"

    @staticmethod
    def _rotating(_: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> str:
        # time_rotating's ID is its base timestamp (terraform-provider-time).
        state["rfc3339"] = "2026-11-23T08:00:00Z"
        return "2026-11-23T08:00:00Z"

    def _hub_stack_reference(
        self, args: pulumi.runtime.MockResourceArgs, state: dict[str, Any]
    ) -> str:
        """A hub stack's outputs as an edge reads them (placeholder credentials, secret): those
        given, else the shipped hub's, prod (site `cloud`, edge `basement`)."""
        state["outputs"] = self.hub_outputs or stand_in_hub_outputs(
            name="cloud",
            bucket=f"gitlab-runner-fleet-prod-cache-{ACCOUNT_ID}",
            region=self.region,
            prefix="runner-cache",
            replicate=["deps-*"],
            edges=["basement"],
        )
        state["secretOutputNames"] = [EDGE_CREDENTIALS_OUTPUT]
        return str(args.inputs.get("name", args.name))

    def _sqs_queue(self, args: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> str:
        # Without a name, the provider names the queue after the resource (autonaming).
        name = str(state.setdefault("name", args.name))
        state.update(
            arn=f"arn:{self.partition}:sqs:{self.region}:{ACCOUNT_ID}:{name}",
            url=f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{name}",
        )
        return str(state["url"])

    def _event_rule(self, args: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> str:
        name = str(state.setdefault("name", args.name))
        state["arn"] = f"arn:{self.partition}:events:{self.region}:{ACCOUNT_ID}:rule/{name}"
        return name

    @staticmethod
    def _random_password(args: pulumi.runtime.MockResourceArgs, state: dict[str, Any]) -> None:
        # A generated password of the requested length, letters and digits only.
        alphanumeric = "".join(char for char in args.name.upper() if char.isalnum())
        state["result"] = (alphanumeric * 64)[: int(args.inputs["length"])]

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        answer = {
            "aws:index/getCallerIdentity:getCallerIdentity": self._caller_identity,
            "aws:index/getPartition:getPartition": self._partition,
            "aws:eks/getCluster:getCluster": self._cluster,
            "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider": self._oidc_provider,
            "aws:ec2/getRouteTables:getRouteTables": self._route_tables,
            "aws:ec2/getPrefixList:getPrefixList": self._prefix_list,
            "aws:ec2/getVpcEndpoint:getVpcEndpoint": self._own_vpc_endpoint,
            "aws:resourcegroupstaggingapi/getResources:getResources": self._tagged_resources,
            "aws:ec2/getVpcEndpointService:getVpcEndpointService": self._endpoint_service,
            "aws:ec2/getVpc:getVpc": self._vpc,
            "aws:eks/getAddon:getAddon": self._addon,
        }.get(args.token)
        if answer is None:
            raise NotImplementedError(f"no mock for invoke {args.token}")
        if args.token == "aws:eks/getAddon:getAddon" and not self.vpc_cni_addon:
            # The provider's answer for a cluster without the add-on: a failed invoke.
            query = args.args
            reason = (
                f"reading EKS Add-On ({query['clusterName']}:{query['addonName']}): couldn't "
                "find resource"
            )
            return {}, [("addonName", reason)]
        return answer(args.args), []

    def _caller_identity(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "accountId": ACCOUNT_ID,
            "arn": f"arn:{self.partition}:iam::{ACCOUNT_ID}:user/ci",
            "userId": "AIDAMOCK",
            "id": ACCOUNT_ID,
        }

    def _partition(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"partition": self.partition, "dnsSuffix": "amazonaws.com", "id": self.partition}

    def _cluster(self, query: dict[str, Any]) -> dict[str, Any]:
        name = query["name"]
        return {
            "id": name,
            "name": name,
            "arn": f"arn:{self.partition}:eks:{self.region}:{ACCOUNT_ID}:cluster/{name}",
            "endpoint": f"https://{name.upper()}.gr7.{self.region}.eks.amazonaws.com",
            "certificateAuthorities": [{"data": "LS0tLS1CRUdJTi1NT0NL"}],
            "identities": [{"oidcs": [{"issuer": f"https://{mock_issuer(self.region, name)}"}]}],
            "vpcConfig": {
                "vpcId": MOCK_CLUSTER_VPC,
                "subnetIds": MOCK_CLUSTER_SUBNETS,
                "clusterSecurityGroupId": MOCK_CLUSTER_SECURITY_GROUP,
            },
            "kubernetesNetworkConfigs": [
                {"ipFamily": "ipv4", "serviceIpv4Cidr": MOCK_SERVICE_CIDR, "serviceIpv6Cidr": ""}
            ],
            "version": self.cluster_version,
        }

    def _oidc_provider(self, query: dict[str, Any]) -> dict[str, Any]:
        host_path = query["url"].removeprefix("https://")
        arn = f"arn:{self.partition}:iam::{ACCOUNT_ID}:oidc-provider/{host_path}"
        return {"arn": arn, "url": host_path, "id": arn, "clientIdLists": ["sts.amazonaws.com"]}

    def _route_tables(self, query: dict[str, Any]) -> dict[str, Any]:
        filter_names = {f["name"] for f in query.get("filters", [])}
        if "route.destination-prefix-list-id" in filter_names:
            return {"ids": self.s3_routed_tables, "id": self.region}
        return {"ids": MOCK_ROUTE_TABLES, "id": self.region}

    def _prefix_list(self, query: dict[str, Any]) -> dict[str, Any]:
        return {"id": "pl-6ea54007", "name": query["name"], "cidrBlocks": []}

    def _tagged_resources(self, query: dict[str, Any]) -> dict[str, Any]:
        """The stack's own S3 endpoint, when an earlier run created one (found by its tags).

        Like the tagging API's GetResources: a resource matches when it carries every filter's
        key with one of the filter's values.
        """
        arn = f"arn:{self.partition}:ec2:{self.region}:{ACCOUNT_ID}:vpc-endpoint/{OWN_ENDPOINT}"
        carried = self.own_s3_endpoint_tags
        matches = self.own_s3_endpoint_tables is not None and (
            carried is None
            or all(
                carried.get(tag_filter["key"]) in tag_filter.get("values", [])
                for tag_filter in query.get("tagFilters", [])
            )
        )
        return {
            "id": self.region,
            "resourceTagMappingLists": [
                {"resourceArn": arn, "tags": dict(carried or {}), "complianceDetails": []}
                for arn in ([arn] if matches else [])
            ],
        }

    def _own_vpc_endpoint(self, query: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": query["id"],
            "routeTableIds": self.own_s3_endpoint_tables or [],
            "vpcId": MOCK_VPC_OF_OWN_ENDPOINT,
            "state": "available",
        }

    def _vpc(self, query: dict[str, Any]) -> dict[str, Any]:
        primary, *_ = self.vpc_cidr_blocks
        return {
            "id": query["id"],
            "cidrBlock": primary,
            "cidrBlockAssociations": [
                {
                    "associationId": f"vpc-cidr-assoc-{index}",
                    "cidrBlock": block,
                    "state": "associated",
                }
                for index, block in enumerate(self.vpc_cidr_blocks)
            ],
        }

    def _addon(self, query: dict[str, Any]) -> dict[str, Any]:
        return {
            "addonName": query["addonName"],
            "clusterName": query["clusterName"],
            "id": f"{query['clusterName']}:{query['addonName']}",
            "addonVersion": "v1.21.1-eksbuild.1",
            "configurationValues": "",
            "serviceAccountRoleArn": "",
            "podIdentityAssociations": [],
            **self.vpc_cni_addon,
        }

    def _endpoint_service(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"serviceName": f"com.amazonaws.{self.region}.s3", "id": "s3"}


class RecordingMonitor(MockMonitor):
    """A MockMonitor that also keeps each registration's inputs and resource options."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registered] = []
        self.component_outputs: dict[str, dict[str, Any]] = {}

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        self.component_outputs[request.urn] = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registered(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    inputs=rpc.deserialize_properties(request.object),
                    state=self.resources[response.urn].state if request.custom else {},
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    dependencies=list(request.dependencies),
                    provider=request.provider,
                    ignore_changes=list(request.ignoreChanges),
                    aliases=[_alias(alias) for alias in request.aliases],
                )
            )
        return response


def _alias(alias: Any) -> dict[str, Any]:
    if alias.HasField("urn"):
        return {"urn": alias.urn}
    spec = alias.spec
    return {
        "spec": {
            "name": spec.name,
            "type": spec.type,
            "stack": spec.stack,
            "project": spec.project,
            "parentUrn": spec.parentUrn,
            "noParent": spec.noParent,
        }
    }


def stack_names() -> list[str]:
    """The stacks that have a file in stacks/."""
    return sorted(path.name.split(".")[1] for path in (REPO / "stacks").glob("Pulumi.*.yaml"))


class UnknownStackError(LookupError):
    """No `stacks/Pulumi.<stack>.yaml` exists."""


class StackFileError(ValueError):
    """A file that is not a stack file; the message names the file and, for YAML, the line."""


# What `Pulumi.<stack>.yaml` may hold besides `config` (pulumi/pulumi
# sdk/go/common/workspace/project.go, ProjectStack): the secrets provider's keys and ESC
# environments.
STACK_FILE_KEYS = ("config", "encryptionsalt", "secretsprovider", "encryptedkey", "environment")


class _StackFileLoader(yaml.SafeLoader):
    """YAML as the Pulumi CLI reads it (gopkg.in/yaml.v3 into `any`): a key given twice in one
    mapping is an error, not silently the last one; plain scalars resolve as YAML 1.2's core
    schema does (`yes`, `on` and `1:30` stay strings; only true/false are booleans); and a
    timestamp stays the string it was written as (yaml.v3 decode.go: "for backward
    compatibility reasons we set it as a string")."""

    # Its own table (PyYAML's resolvers are per class), keeping only merge keys of SafeLoader's.
    yaml_implicit_resolvers = {  # noqa: RUF012
        first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:merge"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _StackFileLoader.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first)
    )


def stack_file(stack: str) -> Path:
    path = REPO / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise UnknownStackError(f"no stack {stack!r}: stacks/ has {', '.join(stack_names())}")
    return path


def read_stack_file(path: Path) -> dict[str, Any]:
    """The `config:` block of a stack file, or a `StackFileError` saying what is wrong where."""
    try:
        document = yaml.load(path.read_text(), Loader=_StackFileLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = error.problem or error.context or "not valid YAML"
        raise StackFileError(f"{where}: {problem} (YAML)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise StackFileError(f"{path}: not valid YAML: {error}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise StackFileError(f"{path}: a stack file is a mapping with a `config:` block")
    if "runtime" in document and "config" not in document:
        raise StackFileError(
            f"{path}: is the project file (it names a runtime), not a stack file: give "
            "stacks/Pulumi.<stack>.yaml"
        )
    if unknown := sorted(str(key) for key in document if key not in STACK_FILE_KEYS):
        raise StackFileError(
            f"{path}: unknown top-level key {', '.join(unknown)}; a stack file holds "
            f"{', '.join(STACK_FILE_KEYS)} (settings go under `config:`)"
        )
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise StackFileError(f"{path}: `config:` must be a mapping of keys to values")
    if bad := [key for key in config if not isinstance(key, str)]:
        raise StackFileError(f"{path}: config keys must be strings such as aws:region, got {bad}")
    return {_current_key_form(key): value for key, value in config.items()}


def _current_key_form(key: str) -> str:
    """`<namespace>:config:<name>`, the legacy form the CLI still reads as `<namespace>:<name>`
    (pulumi/pulumi sdk/go/common/resource/config/key.go ParseKey)."""
    parts = key.split(":")
    return f"{parts[0]}:{parts[2]}" if len(parts) == 3 and parts[1] == "config" else key


def imported_environments(path: Path) -> list[str]:
    """The Pulumi ESC environments a stack file imports (`environment:`), whose config the
    offline render cannot read."""
    document = yaml.load(path.read_text(), Loader=_StackFileLoader)
    imports = document.get("environment") if isinstance(document, dict) else None
    if isinstance(imports, dict):
        # A whole environment definition (project.go Environment.UnmarshalYAML).
        imports = imports.get("imports") or ["(defined inline)"]
    return [str(item) for item in imports] if isinstance(imports, list) else []


def config_from_stack_file(stack: str) -> dict[str, Any]:
    """The `config:` block of `stacks/Pulumi.<stack>.yaml`, as the stack file holds it."""
    return read_stack_file(stack_file(stack))


def run_program(
    program: Callable[[], Any],
    *,
    config: Mapping[str, Any] | None = None,
    stack: str = "test",
    secret_keys: Sequence[str] = (),
    region: str | None = DEFAULT_REGION,
    return_error: bool = False,
    mocks: FleetMocks | None = None,
    project: str = PROJECT,
) -> ProgramRun:
    """Run `program` as a Pulumi program under mocks and return what it declared and exported.

    `config` maps full keys (`gitlab-runner-fleet:cache`, `aws:region`) to values; objects
    and lists are passed JSON-encoded like the CLI does. `aws:region` defaults to `region`
    (None: unset, as in a stack without AWS).
    With `return_error`, an exception from the program is returned in `ProgramRun.error`
    (with whatever was declared before it) instead of raised. `mocks` replaces the default
    answers (e.g. a VPC that already has an S3 gateway endpoint). `project` is the program's
    Pulumi project (its config namespace).
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # The SDK sends each registration the Python stack that declared it, read line by line
    # from the source files (pulumi/runtime/resource.py, _get_stack_trace), for the engine to
    # show where a resource came from. The mocks drop it; under pytest's deep stacks it was a
    # fifth of a render's time.
    pulumi_resource._get_stack_trace = _no_stack_trace
    try:
        return _run_on_current_loop(
            program,
            config=config or {},
            stack=stack,
            secret_keys=secret_keys,
            region=region,
            return_error=return_error,
            mocks=mocks or FleetMocks(region or DEFAULT_REGION),
            project=project,
        )
    finally:
        pulumi_resource._get_stack_trace = _SDK_STACK_TRACE
        # A program that failed inside an apply leaves its outputs' tasks in Pulumi's global
        # settings, which the next run would await on this closed loop.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        with PULUMI_SETTINGS.lock:
            PULUMI_SETTINGS.outputs.clear()
        loop.close()


def _run_on_current_loop(
    program: Callable[[], Any],
    *,
    config: Mapping[str, Any],
    stack: str,
    secret_keys: Sequence[str],
    region: str | None,
    return_error: bool,
    mocks: FleetMocks,
    project: str,
) -> ProgramRun:
    ROOT.set(None)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(
        {
            key: value if isinstance(value, str) else json.dumps(value, default=str)
            for key, value in {**({"aws:region": region} if region else {}), **config}.items()
        },
        list(secret_keys),
    )
    try:
        _sync_await(run_pulumi_func(program))
    except Exception as error:
        if not return_error:
            raise
        return ProgramRun(
            resources=monitor.registrations,
            component_outputs=monitor.component_outputs,
            error=error,
        )

    root = ROOT.get()
    assert isinstance(root, pulumi.runtime.stack.Stack)
    run = ProgramRun(resources=monitor.registrations, component_outputs=monitor.component_outputs)
    for name, value in root.outputs.items():
        output = pulumi.Output.from_input(value)
        run.outputs[name] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            run.secret_outputs.add(name)
    return run


def encrypted_leaves(value: Any) -> Any:
    """A stack file's value with every encrypted leaf (`{secure: v1:...}`) as `ENCRYPTED`.

    `pulumi config set --secret [--path]` writes a secret as a one-key map `secure:` wherever
    it sits: the whole value, a map member or a list item (pulumi/pulumi
    sdk/go/common/resource/config/value.go, isSecureValue; map.go, Set).
    """
    if isinstance(value, dict):
        if set(value) == {"secure"} and isinstance(value["secure"], str):
            return ENCRYPTED
        return {key: encrypted_leaves(item) for key, item in value.items()}
    if isinstance(value, list):
        return [encrypted_leaves(item) for item in value]
    return value


def _with_stand_ins(key: str, value: Any) -> Any:
    """`value` with each encrypted leaf replaced by the settings' stand-in for its path."""
    if value is ENCRYPTED:
        return stand_in(key)
    if isinstance(value, dict):
        return {k: _with_stand_ins(f"{key}.{k}", item) for k, item in value.items()}
    if isinstance(value, list):
        return [_with_stand_ins(f"{key}[{i}]", item) for i, item in enumerate(value)]
    return value


@dataclass(frozen=True)
class OfflineConfig:
    """A stack's config as the program gets it offline, and what was stood in for."""

    config: dict[str, Any]
    secret_keys: list[str]
    missing_secrets: tuple[str, ...]
    """Secrets the configuration needs and the stack file does not set at all."""
    warnings: tuple[str, ...]


def offline_config(
    config: Mapping[str, Any], *, stack: str, secret_keys: Sequence[str] = ()
) -> OfflineConfig:
    """The config a stack file gives its program offline: encrypted values and the secrets it
    lacks get stand-ins, which the settings parser chooses (it knows which secrets the
    configuration needs). Raises the parser's `SettingsError` for a bad configuration."""
    decoded = {key: encrypted_leaves(value) for key, value in config.items()}
    secret = {key for key, value in decoded.items() if key in secret_keys or value != config[key]}
    settings = settings_from_config(
        decoded,
        project=PROJECT,
        stack=stack,
        is_secret=lambda key: key in secret,
        stand_in_secrets=True,
    )
    program_config = {
        key: _with_stand_ins(key.split(":", 1)[-1], value) for key, value in decoded.items()
    }
    # Every secret the settings stood in for, absent or encrypted: an object's members each
    # get theirs, also where the whole object was encrypted as one JSON text.
    for key in settings.stand_ins:
        top, _, member = key.partition(".")
        full_key = f"{PROJECT}:{top}"
        if member:
            members = program_config.get(full_key)
            if not isinstance(members, dict):
                members = program_config[full_key] = {}
            members[member] = stand_in(key)
        else:
            program_config[full_key] = stand_in(key)
        secret.add(full_key)
    return OfflineConfig(
        config=program_config,
        secret_keys=sorted(secret),
        missing_secrets=settings.missing_secrets,
        warnings=settings.warnings,
    )


@dataclass(frozen=True)
class HubStandIn:
    """What an edge's offline render reads for its hub stack, and where it came from."""

    outputs: Mapping[str, Any]
    source: str
    """For the render's warning: the hub's stack file, or that none was found."""


VPC_CNI_STAND_IN_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/offline-placeholder-vpc-cni"
NODE_CNI_POLICY_STAND_IN = (
    "cluster.nodeCniPolicy: false is checked at `pulumi up` against the cluster's vpc-cni "
    "add-on, which must have a role of its own (IRSA or Pod Identity); this render assumed it has"
)


def vpc_cni_stand_in(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The existing cluster's vpc-cni add-on as the render assumes it: with a role of its own
    when the stack says its build nodes need no CNI policy (`cluster.nodeCniPolicy: false`),
    which only the real add-on can confirm; else None, FleetMocks' default (no role)."""
    cluster = config.get(f"{PROJECT}:cluster")
    if not isinstance(cluster, Mapping):
        return None
    try:
        # As the settings read it: `"false"` too.
        node_cni_policy = pydantic.TypeAdapter(bool).validate_python(cluster.get("nodeCniPolicy"))
    except pydantic.ValidationError:
        return None
    if node_cni_policy:
        return None
    return {**VPC_CNI_ADDON, "serviceAccountRoleArn": VPC_CNI_STAND_IN_ROLE}


def hub_stand_in(config: Mapping[str, Any]) -> HubStandIn | None:
    """The outputs an edge's hub stack would give, from the hub's own stack file in `stacks/`
    when it is there (its site name, replicate globs, edges, cache prefix and derived bucket;
    credentials are placeholders); else outputs naming only this edge. None for a stack that
    is no edge."""
    site = config.get(f"{PROJECT}:site")
    if not isinstance(site, Mapping) or site.get("role") != "edge":
        return None
    edge, hub_stack = str(site.get("name", "")), str(site.get("hubStack", ""))
    hub_name = hub_stack.rsplit("/", 1)[-1]
    region = str(config.get("aws:region") or DEFAULT_REGION)
    try:
        hub_config = read_stack_file(stack_file(hub_name))
        decoded = {key: encrypted_leaves(value) for key, value in hub_config.items()}
        settings = settings_from_config(
            decoded,
            project=PROJECT,
            stack=hub_name,
            is_secret=lambda key: decoded[key] != hub_config[key],
            stand_in_secrets=True,
        )
    except (UnknownStackError, StackFileError, SettingsError):
        return HubStandIn(
            stand_in_hub_outputs(
                name="hub",
                bucket=f"offline-placeholder-hub-bucket-{ACCOUNT_ID}",
                region=region,
                prefix="runner-cache",
                replicate=[],
                edges=[edge],
            ),
            f"no readable stack file for the hub {hub_stack!r} in stacks/: its outputs are "
            "placeholders, replicating nothing",
        )
    outputs = stand_in_hub_outputs(
        name=settings.site.name or hub_name,
        bucket=cache_bucket_name(settings.cache, PROJECT, hub_name, ACCOUNT_ID),
        region=settings.aws_region or region,
        prefix=settings.cache.prefix,
        replicate=settings.site.replicate,
        edges=settings.site.edges,
    )
    return HubStandIn(
        outputs,
        f"the hub {hub_stack!r} is read from stacks/Pulumi.{hub_name}.yaml: its bucket name "
        "is derived and its credentials are placeholders",
    )


def evaluate_config(
    config: Mapping[str, Any],
    *,
    stack: str,
    return_error: bool = False,
    secret_keys: Sequence[str] = (),
    mocks: FleetMocks | None = None,
) -> ProgramRun:
    """Evaluate `__main__.py` end to end with a stack's config (full keys, as in its file).

    Secret values the stack needs but cannot show (encrypted `secure:` values, and secrets that
    are set with `pulumi config set --secret` only) get stand-ins from the settings parser;
    keys in `secret_keys` are marked secret too.
    """
    try:
        prepared = offline_config(config, stack=stack, secret_keys=secret_keys)
    except SettingsError as error:
        if not return_error:
            raise
        return ProgramRun(resources=[], error=error)
    region = config.get("aws:region")
    if mocks is None:
        hub = hub_stand_in(config)
        mocks = FleetMocks(
            region or DEFAULT_REGION,
            hub_outputs=hub.outputs if hub else None,
            vpc_cni_addon=vpc_cni_stand_in(config),
        )
    run = run_program(
        lambda: runpy.run_path(str(REPO / "__main__.py"), run_name="__main__"),
        config=prepared.config,
        stack=stack,
        region=region,
        return_error=return_error,
        secret_keys=prepared.secret_keys,
        mocks=mocks,
    )
    run.missing_secrets = prepared.missing_secrets
    return run


def evaluate_stack(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    return_error: bool = False,
    secret_keys: Sequence[str] = (),
    mocks: FleetMocks | None = None,
) -> ProgramRun:
    """`evaluate_config` of `stacks/Pulumi.<stack>.yaml` (plus overrides)."""
    return evaluate_config(
        {**config_from_stack_file(stack), **(overrides or {})},
        stack=stack,
        return_error=return_error,
        secret_keys=secret_keys,
        mocks=mocks,
    )
