"""AWS resources: the EKS cluster, node groups, IAM, the cache bucket and VPC plumbing."""
