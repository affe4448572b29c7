"""A stack's settings: one module per config section, and the model that joins them."""

from .base import Problem, RawSecret, Secret, SettingsError
from .cluster import EKS_MODES, KUBECONFIG_MODE
from .gitlab import GITLAB_API_TOKEN_KEY
from .mirror import default_cluster_ip
from .model import (
    CACHE_CREDENTIAL_KEYS,
    CACHE_CREDENTIALS_KEY,
    CONFIG_KEYS,
    KUBECONFIG_KEY,
    PAUSE_POD_PRIORITY_CLASS,
    RUNNER_TOKENS_KEY,
    SECRET_KEYS,
    FleetSettings,
    load_settings,
    parse_settings,
    reference_table,
)
from .pools import PoolSettings

__all__ = [
    "CACHE_CREDENTIALS_KEY",
    "CACHE_CREDENTIAL_KEYS",
    "CONFIG_KEYS",
    "EKS_MODES",
    "GITLAB_API_TOKEN_KEY",
    "KUBECONFIG_KEY",
    "KUBECONFIG_MODE",
    "PAUSE_POD_PRIORITY_CLASS",
    "RUNNER_TOKENS_KEY",
    "SECRET_KEYS",
    "FleetSettings",
    "PoolSettings",
    "Problem",
    "RawSecret",
    "Secret",
    "SettingsError",
    "default_cluster_ip",
    "load_settings",
    "parse_settings",
    "reference_table",
]
