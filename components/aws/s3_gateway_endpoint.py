"""S3GatewayEndpoint: keeps cache traffic to S3 inside the VPC and off the NAT gateway."""

from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi_aws import ec2


class S3GatewayEndpointArgs(TypedDict):
    """Inputs of S3GatewayEndpoint. Give `route_table_ids`, or `subnet_ids` to look them up."""

    vpc_id: pulumi.Input[str]
    """VPC of the nodes."""
    route_table_ids: NotRequired[list[str]]
    """Route tables that get the S3 route."""
    subnet_ids: NotRequired[pulumi.Input[list[str]]]
    """Node subnets whose explicitly associated route tables get the S3 route."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to the endpoint."""


class S3GatewayEndpoint(pulumi.ComponentResource):
    """A gateway VPC endpoint for S3 on the node subnets' route tables.

    NAT gateways charge for every GB they process and multi-GB cache archives go through them;
    gateway endpoints cost nothing and keep the traffic in the region.
    """

    endpoint_id: pulumi.Output[str]
    """ID of the VPC endpoint."""
    route_table_ids: pulumi.Output[list[str]]
    """Route tables the endpoint was added to."""

    def __init__(
        self,
        name: str,
        args: S3GatewayEndpointArgs,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        super().__init__("gitlab-runner-fleet:index:S3GatewayEndpoint", name, None, opts)
        invoke_opts = pulumi.InvokeOutputOptions(parent=self)
        route_table_ids: pulumi.Input[list[str]]
        if explicit := args.get("route_table_ids"):
            route_table_ids = explicit
        elif "subnet_ids" in args:
            route_table_ids = ec2.get_route_tables_output(
                vpc_id=args["vpc_id"],
                filters=[{"name": "association.subnet-id", "values": args["subnet_ids"]}],
                opts=invoke_opts,
            ).ids.apply(_warn_if_none_found)
        else:
            raise ValueError(f"S3GatewayEndpoint {name}: give route_table_ids or subnet_ids")
        # The service name differs by partition (e.g. cn.com.amazonaws...), so ask for it.
        service = ec2.get_vpc_endpoint_service_output(
            service="s3", service_type="Gateway", opts=invoke_opts
        )
        endpoint = ec2.VpcEndpoint(
            name,
            vpc_id=args["vpc_id"],
            service_name=service.service_name,
            vpc_endpoint_type="Gateway",
            route_table_ids=route_table_ids,
            tags=args.get("tags", {}),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.endpoint_id = endpoint.id
        self.route_table_ids = pulumi.Output.from_input(route_table_ids)
        self.register_outputs(
            {"endpoint_id": self.endpoint_id, "route_table_ids": self.route_table_ids}
        )


def _warn_if_none_found(route_table_ids: list[str]) -> list[str]:
    if not route_table_ids:
        pulumi.log.warn(
            "S3 gateway endpoint: no route table is explicitly associated with the node subnets, "
            "so the endpoint gets no routes; list the VPC's main route table in "
            "network.routeTableIds"
        )
    return route_table_ids
