"""`network`: VPC plumbing around the build nodes."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from .base import Section


class NetworkSettings(Section):
    """Network plumbing around the nodes."""

    config_key: ClassVar[str] = "network"

    s3_gateway_endpoint: bool | None = Field(
        None,
        description="Add an S3 gateway VPC endpoint to the node subnets' route tables, so cache "
        "traffic bypasses the NAT gateway. Default: on when cluster.mode is create.",
    )
    route_table_ids: list[str] = Field(
        default_factory=list,
        description="Route tables for the S3 endpoint. Default: the tables explicitly "
        "associated with the node subnets (list the VPC's main table here if it serves them).",
    )
