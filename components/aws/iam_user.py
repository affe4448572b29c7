"""An IAM user with one policy and an access key: for callers that cannot use an IAM role."""

import pulumi
from pulumi_aws import iam


def create_user_with_key(
    parent: pulumi.Resource, name: str, policy_arn: pulumi.Input[str], tags: dict[str, str]
) -> tuple[iam.User, iam.AccessKey]:
    """The user, its policy attachment and its access key, all children of `parent`.

    Pass the key's id and secret on only as Pulumi secrets.
    """
    opts = pulumi.ResourceOptions(parent=parent)
    user = iam.User(f"{name}-user", tags=tags, opts=opts)
    iam.UserPolicyAttachment(
        f"{name}-user-policy", user=user.name, policy_arn=policy_arn, opts=opts
    )
    key = iam.AccessKey(f"{name}-key", user=user.name, opts=opts)
    return user, key
