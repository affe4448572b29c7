"""The multi-language component provider (run by Pulumi through PulumiPlugin.yaml)."""
