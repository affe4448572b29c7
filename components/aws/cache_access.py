"""CacheAccess: the least-privilege IAM identity the runner manager uses for the cache bucket."""

import json
from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi_aws import iam

from ..arguments import check_arguments
from ..conventions import DEFAULT_RUNNER_NAMESPACE, DEFAULT_RUNNER_SERVICE_ACCOUNT
from ..naming import s3_prefix_problems
from .iam_documents import cache_access_policy
from .iam_user import create_user_with_key
from .irsa_role import IrsaRole

IRSA_MODE = "irsa"
ACCESS_KEY_MODE = "accessKey"
IDENTITY_MODES = (IRSA_MODE, ACCESS_KEY_MODE)


class CacheAccessArgs(TypedDict):
    """Inputs of CacheAccess. A TypedDict so Pulumi's component provider can pass a plain dict."""

    bucket_arn: pulumi.Input[str]
    """ARN of the cache bucket."""
    cache_prefix: str
    """Key prefix the identity may read and write under."""
    mode: str
    """`irsa` (an IAM role for a Kubernetes service account) or `accessKey` (an IAM user)."""
    kms_key_arn: NotRequired[Optional[pulumi.Input[str]]]
    """The bucket's SSE-KMS key, when it has one: grants use of this key only."""
    oidc_provider_arn: NotRequired[Optional[pulumi.Input[str]]]
    """The cluster's IAM OIDC provider ARN; required for `irsa`."""
    service_account_namespace: NotRequired[str]
    """Namespace of the runner manager's service account (IRSA trust). Default `gitlab-runner`."""
    service_account_name: NotRequired[str]
    """Name of the runner manager's service account (IRSA trust). Default `gitlab-runner`."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to the IAM resources."""


class CacheAccess(pulumi.ComponentResource):
    """An IAM policy for exactly the runner cache's S3 (and KMS) calls, and an identity with it.

    `irsa`: a role only the runner manager's service account can assume through the cluster's
    OIDC provider (both `sub` and `aud` conditions). `accessKey`: an IAM user with an access key,
    for clusters without IRSA; the key is a Pulumi secret.
    """

    policy_arn: pulumi.Output[str]
    """ARN of the cache access policy."""
    role_arn: pulumi.Output[Optional[str]]
    """ARN of the IRSA role (`irsa` mode), to annotate the runner's service account with."""
    user_name: pulumi.Output[Optional[str]]
    """Name of the IAM user (`accessKey` mode)."""
    access_key_id: pulumi.Output[Optional[str]]
    """Access key id (`accessKey` mode); secret."""
    secret_access_key: pulumi.Output[Optional[str]]
    """Secret access key (`accessKey` mode); secret."""

    def __init__(
        self, name: str, args: CacheAccessArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments("CacheAccess", name, args, CacheAccessArgs, lambda: _problems(args))
        super().__init__("gitlab-runner-fleet:index:CacheAccess", name, None, opts)
        mode = args["mode"]
        oidc_provider_arn = args.get("oidc_provider_arn")
        tags = args.get("tags", {})

        policy = self._create_policy(
            name, args["bucket_arn"], args["cache_prefix"], args.get("kms_key_arn"), tags
        )
        no_value: pulumi.Output[Optional[str]] = pulumi.Output.from_input(None)
        self.policy_arn = policy.arn
        self.role_arn = no_value
        self.user_name = no_value
        self.access_key_id = no_value
        self.secret_access_key = no_value
        if mode == IRSA_MODE:
            assert oidc_provider_arn is not None
            namespace = args.get("service_account_namespace", DEFAULT_RUNNER_NAMESPACE)
            service_account = args.get("service_account_name", DEFAULT_RUNNER_SERVICE_ACCOUNT)
            role = IrsaRole(
                f"{name}-irsa",
                {
                    "oidc_provider_arn": oidc_provider_arn,
                    "namespace": namespace,
                    "service_account": service_account,
                    "policy_arn": policy.arn,
                    "description": f"GitLab Runner cache access for {namespace}/{service_account}",
                    "tags": tags,
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.role_arn = role.role_arn
        else:
            user, key = create_user_with_key(self, name, policy.arn, tags)
            self.user_name = user.name
            self.access_key_id = pulumi.Output.secret(key.id)
            self.secret_access_key = pulumi.Output.secret(key.secret)

        self.register_outputs(
            {
                "policy_arn": self.policy_arn,
                "role_arn": self.role_arn,
                "user_name": self.user_name,
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key,
            }
        )

    def _create_policy(
        self,
        name: str,
        bucket_arn: pulumi.Input[str],
        cache_prefix: str,
        kms_key_arn: Optional[pulumi.Input[str]],
        tags: dict[str, str],
    ) -> iam.Policy:
        document = pulumi.Output.all(bucket_arn, kms_key_arn).apply(
            lambda values: json.dumps(cache_access_policy(values[0], cache_prefix, values[1]))
        )
        return iam.Policy(
            f"{name}-policy",
            description="GitLab Runner distributed cache: objects under one prefix of one bucket",
            policy=document,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )


def _problems(args: CacheAccessArgs) -> list[str]:
    problems = []
    mode = args["mode"]
    if mode not in IDENTITY_MODES:
        problems.append(f"mode: must be one of {', '.join(IDENTITY_MODES)}, got {mode!r}")
    if mode == IRSA_MODE and args.get("oidc_provider_arn") is None:
        problems.append("oidc_provider_arn: required in irsa mode (the role trusts it)")
    problems += [f"cache_prefix: {p}" for p in s3_prefix_problems(args["cache_prefix"])]
    return problems
