"""Tests that run real programs (promtool, Prometheus, registries, S3 servers) on loopback."""
