"""S3GatewayEndpoint: keeps cache traffic to S3 inside the VPC and off the NAT gateway."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi_aws import ec2, resourcegroupstaggingapi

from ..arguments import check_arguments
from ..naming import ALLOCATION_TAG_KEYS


def identity_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags that tell this stack's endpoint apart and never change between runs.

    The tagging API matches every filter, so a lookup by all tags finds nothing once a user
    tag (`gitlab-runner-fleet:tags`) changes: the endpoint's tables would then look served by
    another endpoint, and the endpoint would no longer be declared and be deleted.
    """
    return {key: tags[key] for key in ALLOCATION_TAG_KEYS if key in tags}


@dataclass(frozen=True)
class EndpointPlan:
    """Which route tables get this stack's endpoint, and which an existing one already serves."""

    create_on: list[str]
    already_served: list[str]

    @property
    def status(self) -> str:
        """What the stack did, for its outputs."""
        if not self.create_on and not self.already_served:
            return "not created: no route table to add it to (see network.routeTableIds)"
        if not self.create_on:
            return "reused: an existing S3 gateway endpoint already serves every route table"
        if self.already_served:
            return (
                f"created for {', '.join(self.create_on)}; reused the existing endpoint of "
                f"{', '.join(self.already_served)}"
            )
        return "created"


def plan_endpoint(
    target_tables: Sequence[str], s3_routed_tables: Sequence[str], own_tables: Sequence[str]
) -> EndpointPlan:
    """Route only the tables no other S3 gateway endpoint serves.

    A second S3 gateway endpoint on a route table that already routes the S3 prefix list fails
    with `RouteAlreadyExists`; the tables this stack's own endpoint serves do not count, so a
    second run keeps its endpoint instead of deleting it (and a third recreating it).
    """
    served_by_others = set(s3_routed_tables) - set(own_tables)
    return EndpointPlan(
        create_on=[table for table in target_tables if table not in served_by_others],
        already_served=[table for table in target_tables if table in served_by_others],
    )


class S3GatewayEndpointArgs(TypedDict):
    """Inputs of S3GatewayEndpoint. Give `route_table_ids`, or `subnet_ids` to look them up."""

    vpc_id: str
    """VPC of the nodes."""
    route_table_ids: NotRequired[list[str]]
    """Route tables that get the S3 route."""
    subnet_ids: NotRequired[list[str]]
    """Node subnets whose explicitly associated route tables get the S3 route."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to the endpoint. Its project, stack and component tags identify it as this
    stack's on later runs; the others may change between runs."""


class S3GatewayEndpoint(pulumi.ComponentResource):
    """A gateway VPC endpoint for S3 on the node subnets' route tables, unless one exists.

    NAT gateways charge for every GB they process and multi-GB cache archives go through them;
    gateway endpoints cost nothing and keep the traffic in the region. Production VPCs usually
    have one already: route tables it serves are left to it (with a warning and a status
    output), so the update never fails half-way on `RouteAlreadyExists`.
    """

    endpoint_id: pulumi.Output[Optional[str]]
    """ID of this stack's endpoint; none when an existing one serves every route table."""
    route_table_ids: pulumi.Output[list[str]]
    """Route tables this stack's endpoint was added to."""
    status: pulumi.Output[str]
    """`created`, or which route tables an existing endpoint already serves."""

    def __init__(
        self,
        name: str,
        args: S3GatewayEndpointArgs,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        check_arguments(
            "S3GatewayEndpoint",
            name,
            args,
            S3GatewayEndpointArgs,
            lambda: (
                []
                if args.get("route_table_ids") or args.get("subnet_ids")
                else ["route_table_ids: give route_table_ids, or subnet_ids to look them up"]
            ),
        )
        super().__init__("gitlab-runner-fleet:index:S3GatewayEndpoint", name, None, opts)
        invoke_opts = pulumi.InvokeOptions(parent=self)
        vpc_id, tags = args["vpc_id"], args.get("tags", {})
        # The service name differs by partition (e.g. cn.com.amazonaws...), so ask for it; the
        # S3 prefix list gateway endpoints route carries the same name.
        service_name = ec2.get_vpc_endpoint_service(
            service="s3", service_type="Gateway", opts=invoke_opts
        ).service_name
        # Looked up synchronously: whether to declare the endpoint must be known before it is.
        plan = plan_endpoint(
            self._target_tables(name, args, invoke_opts),
            self._s3_routed_tables(vpc_id, service_name, invoke_opts),
            self._own_endpoint_tables(vpc_id, identity_tags(tags), invoke_opts),
        )
        if plan.already_served:
            pulumi.log.warn(
                f"network.s3GatewayEndpoint: route tables {', '.join(plan.already_served)} "
                "already route S3 through an existing gateway endpoint, which keeps cache "
                "traffic off the NAT gateway; this stack leaves them to it",
                resource=self,
            )
        endpoint_id: pulumi.Input[Optional[str]] = None
        if plan.create_on:
            endpoint_id = ec2.VpcEndpoint(
                name,
                vpc_id=vpc_id,
                service_name=service_name,
                vpc_endpoint_type="Gateway",
                route_table_ids=plan.create_on,
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self),
            ).id
        self.endpoint_id = pulumi.Output.from_input(endpoint_id)
        self.route_table_ids = pulumi.Output.from_input(plan.create_on)
        self.status = pulumi.Output.from_input(plan.status)
        self.register_outputs(
            {
                "endpoint_id": self.endpoint_id,
                "route_table_ids": self.route_table_ids,
                "status": self.status,
            }
        )

    @staticmethod
    def _target_tables(
        name: str, args: S3GatewayEndpointArgs, invoke_opts: pulumi.InvokeOptions
    ) -> list[str]:
        if explicit := args.get("route_table_ids"):
            return list(explicit)
        tables = ec2.get_route_tables(
            vpc_id=args["vpc_id"],
            filters=[{"name": "association.subnet-id", "values": args["subnet_ids"]}],
            opts=invoke_opts,
        ).ids
        if not tables:
            pulumi.log.warn(
                "S3 gateway endpoint: no route table is explicitly associated with the node "
                "subnets, so the endpoint gets no routes; list the VPC's main route table in "
                "network.routeTableIds"
            )
        return list(tables)

    @staticmethod
    def _s3_routed_tables(
        vpc_id: str, service_name: str, invoke_opts: pulumi.InvokeOptions
    ) -> list[str]:
        prefix_list = ec2.get_prefix_list(name=service_name, opts=invoke_opts)
        return list(
            ec2.get_route_tables(
                vpc_id=vpc_id,
                filters=[{"name": "route.destination-prefix-list-id", "values": [prefix_list.id]}],
                opts=invoke_opts,
            ).ids
        )

    @staticmethod
    def _own_endpoint_tables(
        vpc_id: str, tags: dict[str, str], invoke_opts: pulumi.InvokeOptions
    ) -> list[str]:
        """Route tables of the endpoint an earlier run of this stack created (by `tags`).

        The tagging API answers an empty list when nothing matches; the VPC endpoint data
        source would fail the whole program instead.
        """
        if not tags:
            # No filter would list every endpoint in the account as this stack's.
            return []
        found = resourcegroupstaggingapi.get_resources(
            resource_type_filters=["ec2:vpc-endpoint"],
            tag_filters=[{"key": key, "values": [value]} for key, value in tags.items()],
            opts=invoke_opts,
        )
        tables: list[str] = []
        for mapping in found.resource_tag_mapping_lists:
            endpoint = ec2.get_vpc_endpoint(
                id=mapping.resource_arn.rsplit("/", 1)[-1], opts=invoke_opts
            )
            if endpoint.vpc_id == vpc_id and endpoint.state != "deleted":
                tables.extend(endpoint.route_table_ids)
        return tables
