"""S3GatewayEndpoint under Pulumi mocks."""

from __future__ import annotations

import logging

import pytest

import offline
from components.aws.s3_gateway_endpoint import S3GatewayEndpoint
from tests.harness import MOCK_ROUTE_TABLES, run_program


def test_endpoint_on_explicit_route_tables() -> None:
    run = run_program(
        lambda: S3GatewayEndpoint(
            "s3", {"vpc_id": "vpc-1", "route_table_ids": ["rtb-1", "rtb-2"], "tags": {"c": "n"}}
        ),
        region="eu-central-1",
    )
    endpoint = run.one("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["vpcId"] == "vpc-1"
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    assert endpoint.inputs["serviceName"] == "com.amazonaws.eu-central-1.s3"
    assert endpoint.inputs["routeTableIds"] == ["rtb-1", "rtb-2"]
    assert endpoint.inputs["tags"] == {"c": "n"}


def test_route_tables_are_looked_up_from_the_node_subnets() -> None:
    run = run_program(
        lambda: S3GatewayEndpoint("s3", {"vpc_id": "vpc-1", "subnet_ids": ["subnet-1"]})
    )
    endpoint = run.one("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["routeTableIds"] == MOCK_ROUTE_TABLES


def test_neither_route_tables_nor_subnets_is_refused() -> None:
    run = run_program(lambda: S3GatewayEndpoint("s3", {"vpc_id": "vpc-1"}), return_error=True)
    assert "give route_table_ids or subnet_ids" in str(run.error)


def test_no_route_table_found_is_warned(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offline, "MOCK_ROUTE_TABLES", [])
    with caplog.at_level(logging.WARNING):
        run = run_program(
            lambda: S3GatewayEndpoint("s3", {"vpc_id": "vpc-1", "subnet_ids": ["subnet-1"]})
        )
    assert run.one("aws:ec2/vpcEndpoint:VpcEndpoint").inputs.get("routeTableIds", []) == []
    assert "list the VPC's main route table in network.routeTableIds" in caplog.text
