"""Names of the objects a MultiTaskDeployment owns, valid for every kind it creates.

A resource's own name is a DNS-1123 subdomain: up to 253 characters, dots allowed, may
start with a digit (the API server's rule for custom resources). Its children have
stricter rules, all from the API server's validation (kubernetes 1.30–1.34,
`staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go`):

* every child here is a DNS-1123 label (`IsDNS1123Label`: 63 characters, no dots), which
  Jobs, ConfigMaps, Secrets, Deployments and NetworkPolicies accept as subdomains;
* Services are DNS-1035 labels (`pkg/apis/core/validation.ValidateServiceName`): they
  must also start with a letter;
* label values are at most 63 characters (`IsValidLabelValue`);
* the pods of an Indexed Job get `spec.hostname` `<job>-<index>` from the Job controller
  (`pkg/controller/job/indexed_job_utils.go`), itself a DNS-1123 label, so a multi-node
  step's Job name leaves room for its largest index.

A name that already fits stays readable and unchanged; one that does not keeps a
readable prefix and ends in a hash of the whole intended name, so two resources never
map to one child and the same resource always maps to the same one.
"""

from __future__ import annotations

import hashlib
import re

MAX_LABEL = 63  # DNS-1123 and DNS-1035 labels, and label values
MAX_NODES = 256  # spec.training.resources.nodes' bound: the largest index is 255
# A step's Job name leaves room for "-<index>" in its pods' hostnames.
MAX_JOB_NAME = MAX_LABEL - len(f"-{MAX_NODES - 1}")

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_HASH = 8
# Services must start with a letter: a resource named "1st-model" gets this in front.
_LETTER_PREFIX = "m-"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH]


def is_dns1123_label(name: str) -> bool:
    return len(name) <= MAX_LABEL and _DNS1123_LABEL.fullmatch(name) is not None


def is_dns1035_label(name: str) -> bool:
    return len(name) <= MAX_LABEL and _DNS1035_LABEL.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    return len(value) <= MAX_LABEL and _LABEL_VALUE.fullmatch(value) is not None


def label(name: str, *, limit: int = MAX_LABEL, letter_first: bool = False) -> str:
    """`name` when it is already a DNS-1123 label (DNS-1035 with `letter_first`) of at
    most `limit` characters; else its readable part, cut, with a hash of `name` at the end."""
    valid = is_dns1035_label(name) if letter_first else is_dns1123_label(name)
    if valid and len(name) <= limit:
        return name
    readable = re.sub(r"[^a-z0-9-]", "-", name.lower())
    if letter_first and not readable[:1].isalpha():
        readable = _LETTER_PREFIX + readable
    head = readable[: limit - _HASH - 1].strip("-")
    if letter_first and not head:
        head = _LETTER_PREFIX.rstrip("-")
    return f"{head}-{_digest(name)}" if head else _digest(name)


def child_name(parent: str, suffix: str, *, limit: int = MAX_LABEL) -> str:
    """`parent-suffix` as a DNS-1123 label of at most `limit` characters."""
    return label(f"{parent}-{suffix}", limit=limit)


def service_name(parent: str, suffix: str) -> str:
    """`parent-suffix` as a DNS-1035 label: a Service's name, and a pod's subdomain."""
    return label(f"{parent}-{suffix}", letter_first=True)


def label_value(name: str) -> str:
    """A label value standing for `name` (a resource's name may be 253 characters)."""
    if is_label_value(name):
        return name
    head = name[: MAX_LABEL - _HASH - 1].rstrip("-.")
    return f"{head}-{_digest(name)}"
