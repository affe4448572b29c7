"""IAM and bucket policy documents as plain dicts. Pure functions: no Pulumi runtime needed.

Every ARN is passed in (the bucket's own ARN, the OIDC provider's ARN), so the documents carry
whichever partition the provider reports instead of a hard-coded `arn:aws`.
"""

from __future__ import annotations

from typing import Any

from ..conventions import MIRROR_OBJECT_ACL
from ..karpenter import EKS_CLUSTER_NAME_TAG, NODE_CLAIM_TAG, NODE_CLASS_TAG, NODE_POOL_TAG

PolicyDocument = dict[str, Any]

POLICY_VERSION = "2012-10-17"
STS_AUDIENCE = "sts.amazonaws.com"

# The object actions behind the runner's presigned GET/HEAD/PUT URLs and cache cleanup.
CACHE_OBJECT_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject")
# S3 calls KMS on the caller's behalf: GenerateDataKey to write an SSE-KMS object (also for
# multipart parts), Decrypt to read one. Encrypt/ReEncrypt/DescribeKey are never used by S3.
CACHE_KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


def cache_objects_arn(bucket_arn: str, cache_prefix: str) -> str:
    """The ARN pattern covering every object under the cache prefix."""
    return f"{bucket_arn}/{cache_prefix}/*"


def cache_access_policy(
    bucket_arn: str, cache_prefix: str, kms_key_arn: str | None = None
) -> PolicyDocument:
    """Least-privilege identity policy for the runner cache: one prefix of one bucket."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "CacheObjects",
            "Effect": "Allow",
            "Action": list(CACHE_OBJECT_ACTIONS),
            "Resource": cache_objects_arn(bucket_arn, cache_prefix),
        },
        {
            # Without s3:ListBucket on the bucket S3 answers a missing object with 403 instead
            # of 404, and the helper reports a failed download instead of a clean cache miss.
            # A prefix condition does not help: S3 evaluates the 404-or-403 decision without an
            # s3:prefix in the request context. The bucket holds only the cache, so listing its
            # keys reveals nothing else.
            "Sid": "ListCacheBucket",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
        },
    ]
    if kms_key_arn:
        statements.append(
            {
                "Sid": "CacheEncryptionKey",
                "Effect": "Allow",
                "Action": list(CACHE_KMS_ACTIONS),
                "Resource": kms_key_arn,
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def tls_only_bucket_policy(bucket_arn: str) -> PolicyDocument:
    """Bucket policy that refuses every request made without TLS, whoever makes it."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def oidc_issuer_host_path(issuer_or_provider_arn: str) -> str:
    """The issuer as IAM condition keys need it: host and path, without `https://`.

    Accepts the issuer URL (`https://oidc.eks.<region>.amazonaws.com/id/<ID>`), the bare
    host/path, or the IAM OIDC provider ARN (whose resource part is that host/path). Writing the
    scheme into the condition key is a classic cause of AccessDenied on AssumeRoleWithWebIdentity.
    """
    value = issuer_or_provider_arn.strip()
    if value.startswith("arn:") and ":oidc-provider/" in value:
        value = value.split(":oidc-provider/", 1)[1]
    for scheme in ("https://", "http://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
    return value.rstrip("/")


def service_account_subject(namespace: str, service_account: str) -> str:
    """The `sub` claim Kubernetes puts in a service account's projected token."""
    return f"system:serviceaccount:{namespace}:{service_account}"


def irsa_trust_policy(
    oidc_provider_arn: str, namespace: str, service_account: str
) -> PolicyDocument:
    """Trust policy letting exactly one Kubernetes service account assume the role (IRSA).

    Both conditions are required: `sub` pins the service account, `aud` pins the token to STS.
    """
    issuer = oidc_issuer_host_path(oidc_provider_arn)
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "ServiceAccountWebIdentity",
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{issuer}:sub": service_account_subject(namespace, service_account),
                        f"{issuer}:aud": STS_AUDIENCE,
                    }
                },
            }
        ],
    }


def ec2_trust_policy() -> PolicyDocument:
    """Trust policy letting EC2 instances (EKS worker nodes) assume a role."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "Ec2Nodes",
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def arn_partition_and_account(arn: str) -> tuple[str, str]:
    """The partition and account id of an ARN such as an IAM OIDC provider's."""
    parts = arn.split(":")
    return parts[1], parts[4]


# Read-only calls cluster-autoscaler makes to discover groups and build node templates; none of
# them supports resource-level permissions except eks:DescribeNodegroup, scoped below.
AUTOSCALER_DESCRIBE_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
)
AUTOSCALER_SCALING_ACTIONS = (
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
)


def cluster_autoscaler_policy(
    oidc_provider_arn: str, region: str, cluster_name: str, discovery_tag: tuple[str, str]
) -> PolicyDocument:
    """What cluster-autoscaler needs: describe everything, scale only this stack's pools.

    EKS names every managed node group's Auto Scaling group `eks-<node group>-<id>`; the
    scaling actions also require this stack's discovery tag. EKS's own
    `k8s.io/cluster-autoscaler/<cluster>` tag is on every group of the cluster, other teams'
    included, so it cannot scope anything on a shared cluster.
    """
    tag_key, tag_value = discovery_tag
    partition, account = arn_partition_and_account(oidc_provider_arn)
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "DiscoverNodeGroups",
                "Effect": "Allow",
                "Action": list(AUTOSCALER_DESCRIBE_ACTIONS),
                "Resource": "*",
            },
            {
                # Lets the autoscaler read labels and taints of a group that is at size 0.
                "Sid": "DescribeThisClustersNodeGroups",
                "Effect": "Allow",
                "Action": "eks:DescribeNodegroup",
                "Resource": f"arn:{partition}:eks:{region}:{account}:nodegroup/{cluster_name}/*/*",
            },
            {
                "Sid": "ScaleThisStacksPools",
                "Effect": "Allow",
                "Action": list(AUTOSCALER_SCALING_ACTIONS),
                "Resource": (
                    f"arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:"
                    "autoScalingGroupName/eks-*"
                ),
                "Condition": {"StringEquals": {f"aws:ResourceTag/{tag_key}": tag_value}},
            },
        ],
    }


# An edge site reads the hub's cache and writes back only what it replicates. PutObject also
# covers the multipart calls rclone makes for large objects; AbortMultipartUpload cleans up a
# push that failed half-way.
EDGE_WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload")


def edge_cache_policy(
    bucket_arn: str,
    cache_prefix: str,
    writable_key_patterns: list[str],
    kms_key_arn: str | None = None,
) -> PolicyDocument:
    """What an edge site's cache may do at the hub: read the cache prefix, list below it, and
    write only objects matching `writable_key_patterns` (keys below the bucket, IAM wildcards;
    see `cache_keys.replicate_object_patterns`). No pattern: a read-only edge.

    """
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadCacheObjects",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": cache_objects_arn(bucket_arn, cache_prefix),
        },
        {
            # As for the runners (cache_access_policy): without ListBucket on the bucket a key
            # missing at the hub answers 403, which the edge's rclone takes for an error rather
            # than a miss to report as 404. A prefix condition would not help, S3 decides
            # 404-or-403 without one; the bucket holds only the cache.
            "Sid": "ListCacheBucket",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
        },
    ]
    if writable_key_patterns:
        statements.append(
            {
                "Sid": "WriteReplicatedObjects",
                "Effect": "Allow",
                "Action": list(EDGE_WRITE_ACTIONS),
                "Resource": [f"{bucket_arn}/{pattern}" for pattern in writable_key_patterns],
            }
        )
    if kms_key_arn:
        statements.append(
            {
                "Sid": "CacheEncryptionKey",
                "Effect": "Allow",
                "Action": list(CACHE_KMS_ACTIONS) if writable_key_patterns else "kms:Decrypt",
                "Resource": kms_key_arn,
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


# Every call the registry's s3-aws storage driver makes (distribution v3.1.1
# registry/storage/driver/s3-aws/s3.go): Get/Head, Put, multipart upload and copy, ListParts,
# AbortMultipartUpload, DeleteObjects (Move is copy + delete; the proxy's expiry and upload purging
# delete).
REGISTRY_MIRROR_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)


def registry_mirror_storage_policy(
    bucket_arn: str, mirror_prefix: str, kms_key_arn: str | None = None
) -> PolicyDocument:
    """Identity policy of the registry mirror's IRSA role: its own prefix of the bucket only."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "MirrorObjects",
            "Effect": "Allow",
            "Action": list(REGISTRY_MIRROR_OBJECT_ACTIONS),
            "Resource": f"{bucket_arn}/{mirror_prefix}/*",
        },
        {
            "Sid": "MirrorObjectAcl",
            "Effect": "Allow",
            "Action": "s3:PutObjectAcl",
            "Resource": f"{bucket_arn}/{mirror_prefix}/*",
            "Condition": {"StringEquals": {"s3:x-amz-acl": MIRROR_OBJECT_ACL}},
        },
        {
            # The storage health check and directory walks list below the prefix.
            "Sid": "ListMirrorPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{mirror_prefix}/", f"{mirror_prefix}/*"]}},
        },
        {
            # A resumed upload looks for its multipart upload by key; this action takes no
            # s3:prefix condition, and reveals only keys of uploads in progress.
            "Sid": "FindMirrorUploads",
            "Effect": "Allow",
            "Action": "s3:ListBucketMultipartUploads",
            "Resource": bucket_arn,
        },
    ]
    if kms_key_arn:
        statements.append(
            {
                "Sid": "BucketEncryptionKey",
                "Effect": "Allow",
                "Action": list(CACHE_KMS_ACTIONS),
                "Resource": kms_key_arn,
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


# What Karpenter's controller describes in its region: instance types, offerings and spot
# prices, the subnets, security groups and AMIs its EC2NodeClasses select, its launch templates,
# and instance health (required since 1.12: pkg/controllers/interruption/
# instancestatus_controller.go). None of these actions supports resource-level permissions.
KARPENTER_DESCRIBE_ACTIONS = (
    "ec2:DescribeCapacityReservations",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceStatus",
    "ec2:DescribeInstanceTypeOfferings",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstances",
    "ec2:DescribeLaunchTemplates",
    "ec2:DescribePlacementGroups",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSpotPriceHistory",
    "ec2:DescribeSubnets",
)
KARPENTER_LAUNCH_ACTIONS = ("ec2:RunInstances", "ec2:CreateFleet")
# What one EC2 Fleet launch creates, each tagged in the same call (pkg/providers/instance,
# pkg/providers/launchtemplate).
KARPENTER_CREATED_RESOURCES = (
    "fleet",
    "instance",
    "volume",
    "network-interface",
    "launch-template",
    "spot-instances-request",
)
KARPENTER_INTERRUPTION_ACTIONS = ("sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage")


def karpenter_cluster_tag(cluster_name: str) -> str:
    """The tag Karpenter puts on everything it creates for a cluster, with the value `owned`
    (pkg/utils/utils.go); its IAM permissions are scoped by it."""
    return f"kubernetes.io/cluster/{cluster_name}"


def karpenter_controller_policy(
    *,
    partition: str,
    account: str,
    region: str,
    cluster_name: str,
    node_role_arns: list[str],
    interruption_queue_arn: str,
) -> PolicyDocument:
    """What Karpenter's controller may do, for one cluster: launch and tag instances only with
    the cluster's and a NodePool's tags in the request, touch and terminate only what carries
    them, pass only the given node roles, manage only instance profiles it tagged, read only its
    cluster and its interruption queue.

    Scoped as Karpenter's own policy for 1.14 (karpenter-provider-aws v1.14.1
    website/content/en/preview/getting-started/getting-started-with-karpenter/
    cloudformation.yaml), narrowed further: this account's security groups and subnets only, no
    capacity reservations or placement groups (no EC2NodeClass selects any), only the EKS AMI
    parameters from SSM, and no zonal shift (the feature stays off).
    """
    ec2 = f"arn:{partition}:ec2:{region}"
    owned = {f"aws:ResourceTag/{karpenter_cluster_tag(cluster_name)}": "owned"}
    any_node_pool = {f"aws:ResourceTag/{NODE_POOL_TAG}": "*"}
    requested = {
        f"aws:RequestTag/{karpenter_cluster_tag(cluster_name)}": "owned",
        f"aws:RequestTag/{EKS_CLUSTER_NAME_TAG}": cluster_name,
    }
    created = [f"{ec2}:{account}:{kind}/*" for kind in KARPENTER_CREATED_RESOURCES]
    instance_profiles = f"arn:{partition}:iam::{account}:instance-profile/*"
    profile_requested = {
        **requested,
        "aws:RequestTag/topology.kubernetes.io/region": region,
    }
    profile_owned = {**owned, "aws:ResourceTag/topology.kubernetes.io/region": region}
    ec2_service = "ec2.amazonaws.com.cn" if partition == "aws-cn" else "ec2.amazonaws.com"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "LaunchFromRegionalImagesAndNetworks",
            "Effect": "Allow",
            "Action": list(KARPENTER_LAUNCH_ACTIONS),
            "Resource": [
                f"{ec2}::image/*",
                f"{ec2}::snapshot/*",
                f"{ec2}:{account}:security-group/*",
                f"{ec2}:{account}:subnet/*",
            ],
        },
        {
            "Sid": "LaunchFromThisClustersTemplates",
            "Effect": "Allow",
            "Action": list(KARPENTER_LAUNCH_ACTIONS),
            "Resource": f"{ec2}:{account}:launch-template/*",
            "Condition": {"StringEquals": owned, "StringLike": any_node_pool},
        },
        {
            "Sid": "CreateThisClustersNodes",
            "Effect": "Allow",
            "Action": [*KARPENTER_LAUNCH_ACTIONS, "ec2:CreateLaunchTemplate"],
            "Resource": created,
            "Condition": {
                "StringEquals": requested,
                "StringLike": {f"aws:RequestTag/{NODE_POOL_TAG}": "*"},
            },
        },
        {
            "Sid": "TagWhatItCreates",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": created,
            "Condition": {
                "StringEquals": {
                    **requested,
                    "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                },
                "StringLike": {f"aws:RequestTag/{NODE_POOL_TAG}": "*"},
            },
        },
        {
            # After launch Karpenter only names its instances and records their NodeClaim.
            "Sid": "NameThisClustersNodes",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": f"{ec2}:{account}:instance/*",
            "Condition": {
                "StringEquals": owned,
                "StringLike": any_node_pool,
                "StringEqualsIfExists": {f"aws:RequestTag/{EKS_CLUSTER_NAME_TAG}": cluster_name},
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": [EKS_CLUSTER_NAME_TAG, NODE_CLAIM_TAG, "Name"]
                },
            },
        },
        {
            "Sid": "TerminateThisClustersNodes",
            "Effect": "Allow",
            "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
            "Resource": [f"{ec2}:{account}:instance/*", f"{ec2}:{account}:launch-template/*"],
            "Condition": {"StringEquals": owned, "StringLike": any_node_pool},
        },
        {
            "Sid": "PassOnlyTheNodeRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": sorted(node_role_arns),
            "Condition": {"StringEquals": {"iam:PassedToService": ec2_service}},
        },
        {
            "Sid": "CreateThisClustersInstanceProfiles",
            "Effect": "Allow",
            "Action": "iam:CreateInstanceProfile",
            "Resource": instance_profiles,
            "Condition": {
                "StringEquals": profile_requested,
                "StringLike": {f"aws:RequestTag/{NODE_CLASS_TAG}": "*"},
            },
        },
        {
            "Sid": "TagThisClustersInstanceProfiles",
            "Effect": "Allow",
            "Action": "iam:TagInstanceProfile",
            "Resource": instance_profiles,
            "Condition": {
                "StringEquals": {**profile_owned, **profile_requested},
                "StringLike": {
                    f"aws:ResourceTag/{NODE_CLASS_TAG}": "*",
                    f"aws:RequestTag/{NODE_CLASS_TAG}": "*",
                },
            },
        },
        {
            "Sid": "ManageThisClustersInstanceProfiles",
            "Effect": "Allow",
            "Action": [
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:DeleteInstanceProfile",
            ],
            "Resource": instance_profiles,
            "Condition": {
                "StringEquals": profile_owned,
                "StringLike": {f"aws:ResourceTag/{NODE_CLASS_TAG}": "*"},
            },
        },
        {
            "Sid": "ReadInstanceProfiles",
            "Effect": "Allow",
            "Action": "iam:GetInstanceProfile",
            "Resource": instance_profiles,
        },
        {
            # Karpenter's instance profile garbage collection lists them; no resource scope.
            "Sid": "ListInstanceProfiles",
            "Effect": "Allow",
            "Action": "iam:ListInstanceProfiles",
            "Resource": "*",
        },
        {
            # The API endpoint, CA and Service range for the nodes' NodeConfig.
            "Sid": "DescribeThisCluster",
            "Effect": "Allow",
            "Action": "eks:DescribeCluster",
            "Resource": f"arn:{partition}:eks:{region}:{account}:cluster/{cluster_name}",
        },
        {
            "Sid": "ReceiveInterruptions",
            "Effect": "Allow",
            "Action": list(KARPENTER_INTERRUPTION_ACTIONS),
            "Resource": interruption_queue_arn,
        },
        {
            "Sid": "DescribeTheRegion",
            "Effect": "Allow",
            "Action": list(KARPENTER_DESCRIBE_ACTIONS),
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
        },
        {
            # The AL2023 alias resolves through these parameters (pkg/providers/amifamily/
            # al2023.go resolvePath).
            "Sid": "ReadEksAmiParameters",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": f"arn:{partition}:ssm:{region}::parameter/aws/service/eks/optimized-ami/*",
        },
        {
            # On-demand prices for choosing between instance types; no resource scope.
            "Sid": "ReadPrices",
            "Effect": "Allow",
            "Action": "pricing:GetProducts",
            "Resource": "*",
        },
    ]
    return {"Version": POLICY_VERSION, "Statement": statements}


def interruption_queue_policy(queue_arn: str, rule_arns: list[str]) -> PolicyDocument:
    """The interruption queue's own policy: only the stack's EventBridge rules may send to it,
    and nobody may use it without TLS."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "InterruptionEvents",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": sorted(rule_arns)}},
            },
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": queue_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }
