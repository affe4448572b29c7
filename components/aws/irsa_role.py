"""IrsaRole: an IAM role that exactly one Kubernetes service account can assume (IRSA)."""

import json
from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi_aws import iam

from ..arguments import check_arguments
from ..kubernetes_names import namespace_problems, object_name_problems
from .iam_documents import irsa_trust_policy


class IrsaRoleArgs(TypedDict):
    """Inputs of IrsaRole."""

    oidc_provider_arn: pulumi.Input[str]
    """The cluster's IAM OIDC provider."""
    namespace: str
    """Namespace of the service account."""
    service_account: str
    """Name of the service account."""
    policy_arn: pulumi.Input[str]
    """Policy attached to the role."""
    description: str
    """What the role is for; shown in the IAM console."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to the role."""


class IrsaRole(pulumi.ComponentResource):
    """A role trusted for `sts:AssumeRoleWithWebIdentity` by the cluster's OIDC provider, with
    both `<issuer>:sub` (the one service account) and `<issuer>:aud` (STS) conditions."""

    role_arn: pulumi.Output[str]
    """ARN of the role; annotate the service account with it."""
    role_name: pulumi.Output[str]
    """Name of the role."""

    def __init__(
        self, name: str, args: IrsaRoleArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments(
            "IrsaRole",
            name,
            args,
            IrsaRoleArgs,
            lambda: [
                *(f"namespace: {p}" for p in namespace_problems(args["namespace"])),
                *(
                    f"service_account: {p}"
                    for p in object_name_problems("service account")(args["service_account"])
                ),
            ],
        )
        super().__init__("gitlab-runner-fleet:index:IrsaRole", name, None, opts)
        namespace, service_account = args["namespace"], args["service_account"]
        trust = pulumi.Output.from_input(args["oidc_provider_arn"]).apply(
            lambda arn: json.dumps(irsa_trust_policy(arn, namespace, service_account))
        )
        role = iam.Role(
            name,
            description=args["description"],
            assume_role_policy=trust,
            tags=args.get("tags", {}),
            opts=pulumi.ResourceOptions(parent=self),
        )
        attachment = iam.RolePolicyAttachment(
            f"{name}-policy",
            role=role.name,
            policy_arn=args["policy_arn"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        # A pod given the role before its policy is attached starts with AccessDenied.
        self.role_arn = pulumi.Output.all(role.arn, attachment.id).apply(
            lambda values: str(values[0])
        )
        self.role_name = role.name
        self.register_outputs({"role_arn": self.role_arn, "role_name": self.role_name})
