"""S3GatewayEndpoint under Pulumi mocks."""

from __future__ import annotations

import logging
from typing import Any

import pulumi
import pytest

import offline
from components.aws.s3_gateway_endpoint import S3GatewayEndpoint, identity_tags, plan_endpoint
from offline import MOCK_CLUSTER_VPC
from tests.harness import DEFAULT_REGION, MOCK_ROUTE_TABLES, ProgramRun, run_program


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
    assert "route_table_ids: give route_table_ids, or subnet_ids to look them up" in str(run.error)


def test_no_route_table_found_is_warned(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offline, "MOCK_ROUTE_TABLES", [])
    with caplog.at_level(logging.WARNING):
        run = run_program(
            lambda: S3GatewayEndpoint("s3", {"vpc_id": "vpc-1", "subnet_ids": ["subnet-1"]})
        )
    assert run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") == []
    assert "list the VPC's main route table in network.routeTableIds" in caplog.text


def declare_in_vpc(**mocks: Any) -> ProgramRun:
    def program() -> None:
        endpoint = S3GatewayEndpoint(
            "s3",
            {"vpc_id": MOCK_CLUSTER_VPC, "route_table_ids": ["rtb-a", "rtb-b"], "tags": TAGS},
        )
        pulumi.export("status", endpoint.status)
        pulumi.export("endpoint_id", endpoint.endpoint_id)

    return run_program(program, mocks=offline.FleetMocks(DEFAULT_REGION, **mocks))


TAGS = {"project": "gitlab-runner-fleet", "stack": "prod", "component": "network"}


def test_an_endpoint_that_already_serves_every_table_is_reused_not_duplicated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A second S3 gateway endpoint on a route table that already routes the S3 prefix list
    # fails with RouteAlreadyExists in the middle of `pulumi up`.
    with caplog.at_level(logging.WARNING):
        run = declare_in_vpc(s3_routed_tables=["rtb-a", "rtb-b", "rtb-other"])
    assert run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") == []
    assert run.outputs["status"].startswith("reused")
    assert run.outputs["endpoint_id"] is None
    assert "rtb-a, rtb-b already route S3 through an existing gateway endpoint" in caplog.text


def test_only_tables_no_other_endpoint_serves_get_this_stacks_endpoint() -> None:
    run = declare_in_vpc(s3_routed_tables=["rtb-a"])
    endpoint = run.one("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["routeTableIds"] == ["rtb-b"]
    assert run.outputs["status"] == ("created for rtb-b; reused the existing endpoint of rtb-a")


def test_the_stacks_own_endpoint_from_an_earlier_run_is_kept() -> None:
    # The endpoint this stack created routes its tables; found by the stack's tags it does not
    # count as a foreign one, so the second run keeps it (a third would otherwise recreate it).
    run = declare_in_vpc(
        s3_routed_tables=["rtb-a", "rtb-b"], own_s3_endpoint_tables=["rtb-a", "rtb-b"]
    )
    endpoint = run.one("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["routeTableIds"] == ["rtb-a", "rtb-b"]
    assert endpoint.inputs["tags"] == TAGS
    assert run.outputs["status"] == "created"


def test_plan_routes_only_what_no_other_endpoint_serves() -> None:
    plan = plan_endpoint(["a", "b", "c"], s3_routed_tables=["a", "b", "x"], own_tables=["b"])
    assert plan.create_on == ["b", "c"]
    assert plan.already_served == ["a"]


def test_the_stacks_own_endpoint_survives_a_change_of_user_tags() -> None:
    # The tagging API returns a resource only when it carries every filter's key and value
    # (resourcegroupstaggingapi GetResources TagFilters). An endpoint created with the old
    # cost-center must still be found as this stack's, or its tables look served by another
    # endpoint, the endpoint is not declared and Pulumi deletes it.
    old_tags = {**TAGS, "cost-center": "platform-prod"}

    def program() -> None:
        S3GatewayEndpoint(
            "s3",
            {
                "vpc_id": MOCK_CLUSTER_VPC,
                "route_table_ids": ["rtb-a", "rtb-b"],
                "tags": {**TAGS, "cost-center": "platform-shared"},
            },
        )

    run = run_program(
        program,
        mocks=offline.FleetMocks(
            DEFAULT_REGION,
            s3_routed_tables=["rtb-a", "rtb-b"],
            own_s3_endpoint_tables=["rtb-a", "rtb-b"],
            own_s3_endpoint_tags=old_tags,
        ),
    )
    endpoint = run.one("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["routeTableIds"] == ["rtb-a", "rtb-b"]
    assert endpoint.inputs["tags"]["cost-center"] == "platform-shared"


def test_an_endpoint_of_another_stack_is_not_taken_for_this_stacks() -> None:
    other_stack = {**TAGS, "stack": "staging"}
    run = declare_in_vpc(
        s3_routed_tables=["rtb-a"],
        own_s3_endpoint_tables=["rtb-a"],
        own_s3_endpoint_tags=other_stack,
    )
    assert run.one("aws:ec2/vpcEndpoint:VpcEndpoint").inputs["routeTableIds"] == ["rtb-b"]


def test_without_identity_tags_no_endpoint_is_looked_up_as_this_stacks() -> None:
    # An empty tag filter would list every endpoint in the account.
    assert identity_tags({"cost-center": "x"}) == {}
    assert identity_tags({**TAGS, "cost-center": "x"}) == TAGS
