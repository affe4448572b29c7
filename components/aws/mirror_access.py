"""RegistryMirrorAccess: the IAM role the registry mirror stores its layers in S3 with (IRSA)."""

import json
from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi_aws import iam

from ..arguments import check_arguments
from ..naming import s3_prefix_problems
from .iam_documents import registry_mirror_storage_policy
from .irsa_role import IrsaRole


class RegistryMirrorAccessArgs(TypedDict):
    """Inputs of RegistryMirrorAccess."""

    bucket_arn: pulumi.Input[str]
    """ARN of the bucket the mirror stores layers in."""
    prefix: str
    """The mirror's key prefix in the bucket; the role reaches nothing else."""
    oidc_provider_arn: pulumi.Input[str]
    """The cluster's IAM OIDC provider."""
    namespace: str
    """Namespace of the mirror's service account."""
    service_account: str
    """Name of the mirror's service account."""
    kms_key_arn: NotRequired[Optional[str]]
    """The bucket's SSE-KMS key, when it has one."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to the IAM resources."""


class RegistryMirrorAccess(pulumi.ComponentResource):
    """A policy for the mirror's own prefix of the bucket, and an IRSA role with it."""

    role_arn: pulumi.Output[str]
    """ARN of the role; annotate the mirror's service account with it."""

    def __init__(
        self,
        name: str,
        args: RegistryMirrorAccessArgs,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        check_arguments(
            "RegistryMirrorAccess",
            name,
            args,
            RegistryMirrorAccessArgs,
            lambda: [f"prefix: {p}" for p in s3_prefix_problems(args["prefix"])],
        )
        super().__init__("gitlab-runner-fleet:index:RegistryMirrorAccess", name, None, opts)
        tags = args.get("tags", {})
        policy = iam.Policy(
            f"{name}-policy",
            description="Registry mirror: its own prefix of the cache bucket",
            policy=pulumi.Output.from_input(args["bucket_arn"]).apply(
                lambda arn: json.dumps(
                    registry_mirror_storage_policy(arn, args["prefix"], args.get("kms_key_arn"))
                )
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        role = IrsaRole(
            f"{name}-irsa",
            {
                "oidc_provider_arn": args["oidc_provider_arn"],
                "namespace": args["namespace"],
                "service_account": args["service_account"],
                "policy_arn": policy.arn,
                "description": "Registry mirror (IRSA)",
                "tags": tags,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.role_arn = role.role_arn
        self.register_outputs({"role_arn": self.role_arn})
