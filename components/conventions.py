"""Names and keys that components of several folders agree on. Pure data.

`aws/` and `workloads/` never import each other: what both need lives here (or in the other
shared modules: `build_nodes.py`, `naming.py`, `kubernetes_names.py`, `versions.py`).
"""

IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
"""The service account annotation that makes EKS inject an IAM role's web identity (IRSA)."""

DEFAULT_RUNNER_NAMESPACE = "gitlab-runner"
"""The runner managers' namespace unless a stack names another (`runner.namespace`)."""
DEFAULT_RUNNER_SERVICE_ACCOUNT = "gitlab-runner"
"""The service account every pool's manager runs as; the cache's IRSA role trusts it."""
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 3600
"""How long a stopping manager waits for its jobs: also the longest job a runner accepts."""

DEFAULT_PROMETHEUS_SELECTOR_LABELS = {"release": "kube-prometheus-stack"}
"""What kube-prometheus-stack's Prometheus selects PodMonitors, ServiceMonitors and rules by
(`*SelectorNilUsesHelmValues: true`, templates/prometheus/prometheus.yaml), for a release named
`kube-prometheus-stack`."""

CONFIG_CHECKSUM_ANNOTATION = "gitlab-runner-fleet/config-checksum"
"""Pod template annotation that changes with a workload's config file, so its Deployment rolls:
the registry and rclone read their config only at start."""
SECRETS_VERSION_ANNOTATION = "gitlab-runner-fleet/secrets-version"
"""Pod template annotation that changes with the Secrets a workload reads (tokens, keys), so it
restarts with the new values."""

MIRROR_OBJECT_ACL = "bucket-owner-full-control"
"""The canned ACL the registry mirror writes with (`objectacl`). Distribution's S3 driver sends
`x-amz-acl` on PutObject, CreateMultipartUpload and CopyObject, `private` unless told otherwise
(registry/storage/driver/s3-aws/s3.go in 2.8 and 3.1.1, `getACL`); a bucket with ACLs disabled
(`BucketOwnerEnforced`, as CacheBucket makes it) refuses every ACL but this one with 400
AccessControlListNotSupported, and omitting the header (`objectacl: ""`) is only accepted after
3.1.1 (distribution commit b55cb12). AWS's PutObject reference asks for s3:PutObjectAcl to set
an ACL in a request, so the mirror's role may set this one only."""
