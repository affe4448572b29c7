"""EdgeAccess: the hub's credential for one edge site's cache (read the prefix, write replicas)."""

import json
from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi_aws import iam

from ..arguments import check_arguments
from ..cache_keys import replicate_object_patterns, replicate_problems
from ..naming import s3_prefix_problems
from .iam_documents import edge_cache_policy
from .iam_user import create_user_with_key


class EdgeAccessArgs(TypedDict):
    """Inputs of EdgeAccess."""

    edge_name: str
    """The edge site's name, for the policy's description."""
    bucket_arn: pulumi.Input[str]
    """ARN of the hub's cache bucket."""
    cache_prefix: str
    """The cache's key prefix (the runners' `Path`)."""
    replicate: list[str]
    """Cache key globs the edge may write back (see `cache_keys.replicate_problems`);
    empty for a read-only edge."""
    kms_key_arn: NotRequired[Optional[pulumi.Input[str]]]
    """The bucket's SSE-KMS key, when it has one."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to the IAM resources."""


class EdgeAccess(pulumi.ComponentResource):
    """An IAM user with an access key for one edge site's cache, created in the hub's account.

    Its policy reads every object under the cache prefix (read-through), lists only below the
    prefix, and writes only objects whose names match the replicated key globs. The key is
    exported as Pulumi secrets for the edge stack to read through a StackReference.
    """

    user_name: pulumi.Output[str]
    """Name of the IAM user."""
    policy_arn: pulumi.Output[str]
    """ARN of the edge's policy."""
    access_key_id: pulumi.Output[str]
    """Access key id; secret."""
    secret_access_key: pulumi.Output[str]
    """Secret access key; secret."""

    def __init__(
        self, name: str, args: EdgeAccessArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments(
            "EdgeAccess",
            name,
            args,
            EdgeAccessArgs,
            lambda: [
                *(f"replicate: {p}" for p in replicate_problems(args["replicate"])),
                *(f"cache_prefix: {p}" for p in s3_prefix_problems(args["cache_prefix"])),
            ],
        )
        super().__init__("gitlab-runner-fleet:index:EdgeAccess", name, None, opts)
        tags = args.get("tags", {})
        patterns = replicate_object_patterns(args["cache_prefix"], args["replicate"])
        document = pulumi.Output.all(args["bucket_arn"], args.get("kms_key_arn")).apply(
            lambda values: json.dumps(
                edge_cache_policy(values[0], args["cache_prefix"], patterns, values[1])
            )
        )
        policy = iam.Policy(
            f"{name}-policy",
            description=f"GitLab Runner cache of edge site {args['edge_name']}: read the cache, "
            "write replicated keys",
            policy=document,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        user, key = create_user_with_key(self, name, policy.arn, tags)

        self.user_name = user.name
        self.policy_arn = policy.arn
        self.access_key_id = pulumi.Output.secret(key.id)
        self.secret_access_key = pulumi.Output.secret(key.secret)
        self.register_outputs(
            {
                "user_name": self.user_name,
                "policy_arn": self.policy_arn,
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key,
            }
        )
