"""A stack's settings: one module per config section, the model that joins them, and the parser.

`model` holds the validated model and its derived values, `parse` turns raw config into it,
`secrets` and `rules` hold the secret values' and the cross-section checks, `cache_plan` the
one decision about the stack's cache.
"""

from .base import Problem, Secret, SettingsError
from .cache_plan import CACHE_CREDENTIAL_KEYS, CachePlan
from .cluster import EKS_MODES, KUBECONFIG_MODE
from .gitlab import GITLAB_API_TOKEN_KEY
from .mirror import DOCKER_HUB_TOKEN_KEY, default_cluster_ip
from .model import PAUSE_POD_PRIORITY_CLASS, FleetSettings
from .parse import CONFIG_KEYS, fleet_settings, load_settings, parse_settings
from .pools import PoolSettings
from .secrets import (
    CACHE_CREDENTIALS_KEY,
    ENCRYPTED,
    KUBECONFIG_KEY,
    RUNNER_TOKENS_KEY,
    SECRET_KEYS,
    RawSecret,
)

__all__ = [
    "CACHE_CREDENTIALS_KEY",
    "CACHE_CREDENTIAL_KEYS",
    "CONFIG_KEYS",
    "DOCKER_HUB_TOKEN_KEY",
    "EKS_MODES",
    "ENCRYPTED",
    "GITLAB_API_TOKEN_KEY",
    "KUBECONFIG_KEY",
    "KUBECONFIG_MODE",
    "PAUSE_POD_PRIORITY_CLASS",
    "RUNNER_TOKENS_KEY",
    "SECRET_KEYS",
    "CachePlan",
    "FleetSettings",
    "PoolSettings",
    "Problem",
    "RawSecret",
    "Secret",
    "SettingsError",
    "default_cluster_ip",
    "fleet_settings",
    "load_settings",
    "parse_settings",
]
