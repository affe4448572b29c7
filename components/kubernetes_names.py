"""Kubernetes naming rules (labels, object names, quantities) and the pydantic types that
apply them. Pure: no Pulumi runtime needed."""

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator

_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# EKS refuses labels in the namespaces Kubernetes keeps for itself.
_RESERVED_LABEL_DOMAINS = ("kubernetes.io", "k8s.io")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")


def checked(problems_of: Callable[[str], list[str]]) -> AfterValidator:
    """A pydantic validator that refuses a value `problems_of` finds anything wrong with."""

    def check(value: str) -> str:
        if problems := problems_of(value):
            message = "; ".join(problems)
            raise ValueError(message if ", got " in message else f"{message}, got {value!r}")
        return value

    return AfterValidator(check)


def is_dns_subdomain(name: str) -> bool:
    """Whether `name` is a lowercase DNS subdomain, as most Kubernetes object names must be."""
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))


def namespace_problems(name: str) -> list[str]:
    """Why `name` cannot name a Kubernetes namespace (a DNS label), empty when it can."""
    if len(name) <= 63 and _DNS_LABEL.match(name):
        return []
    return [
        "must be a Kubernetes namespace name: at most 63 lowercase letters, digits and '-', "
        "starting and ending with a letter or digit"
    ]


def object_name_problems(kind: str) -> Callable[[str], list[str]]:
    """The rule for names of a kind of Kubernetes object that take a DNS subdomain."""

    def problems(name: str) -> list[str]:
        if is_dns_subdomain(name):
            return []
        return [
            f"must be a Kubernetes {kind} name: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        ]

    return problems


def label_key_problems(key: str) -> list[str]:
    """Why `key` is not a valid Kubernetes label (or taint) key, empty when it is."""
    prefix, _, name = key.rpartition("/")
    problems = []
    if not (len(name) <= 63 and _LABEL_NAME.match(name)):
        problems.append(
            "name part must be 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    if "/" in key and not is_dns_subdomain(prefix):
        problems.append("prefix must be a lowercase DNS subdomain such as example.com")
    domain = prefix.split(".")[-2:] if prefix else []
    if prefix and (
        prefix in _RESERVED_LABEL_DOMAINS or ".".join(domain) in _RESERVED_LABEL_DOMAINS
    ):
        problems.append("the kubernetes.io and k8s.io prefixes are reserved")
    return problems


def label_value_problems(value: str) -> list[str]:
    """Why `value` is not a valid Kubernetes label (or taint) value, empty when it is."""
    if value == "" or (len(value) <= 63 and _LABEL_NAME.match(value)):
        return []
    return [
        "must be at most 63 letters, digits, '-', '_' or '.', "
        "starting and ending with a letter or digit"
    ]


def checked_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels themselves, or a ValueError naming every invalid key and value."""
    problems = [
        f"{key!r}: {problem}"
        for key, value in labels.items()
        for problem in label_key_problems(key) + label_value_problems(value)
    ]
    if problems:
        raise ValueError(f"invalid Kubernetes labels: {'; '.join(problems)}")
    return labels


def quantity_problems(quantity: str) -> list[str]:
    """Why `quantity` is not a Kubernetes resource quantity such as `100Gi`."""
    return [] if _QUANTITY.match(quantity) else ["must be a Kubernetes quantity such as 100Gi"]


_QUANTITY_FACTORS = {
    "": 1, "m": 0.001, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def quantity_value(quantity: str) -> float:
    """A valid quantity as a plain number (bytes for memory and storage, cores for CPU)."""
    match = _QUANTITY.match(quantity)
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    suffix = match[2] or ""
    return float(quantity.removesuffix(suffix)) * _QUANTITY_FACTORS[suffix]


LabelKey = Annotated[str, checked(label_key_problems)]
LabelValue = Annotated[str, checked(label_value_problems)]
Quantity = Annotated[str, checked(quantity_problems)]
NamespaceName = Annotated[str, checked(namespace_problems)]
ServiceAccountName = Annotated[str, checked(object_name_problems("service account"))]
