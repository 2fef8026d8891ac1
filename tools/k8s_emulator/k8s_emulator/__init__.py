"""A Kubernetes API-server emulator for tests, built on kmock 0.8 (pinned).

* ``Emulator``: the API server on loopback (discovery, CRUD with server-managed metadata,
  typed lists, selectors, status subresource, merge/strategic/JSON patches, watches with
  resume and 410, finalizers, ownerReference GC, CRD registration with schema pruning,
  defaulting and 422 validation, Table output for kubectl, fault injection).
* ``JobRunner``: plays kubelet for batch/v1 Jobs by running the container command locally.
* ``DeploymentController``: marks Deployments ready after a delay (or keeps a revision
  unready for rollout tests).
* ``Turnstile``: a gate for both, so a test lets their writes through one at a time.

See ``tests/emulator/`` for usage by example.
"""

from .deployments import DeploymentController
from .emulator import Emulator
from .errors import ApiError
from .faults import Fault
from .jobs import JobRunner
from .resources import ResourceDef
from .store import Event, Store
from .turnstile import Turnstile

__all__ = [
    "ApiError",
    "DeploymentController",
    "Emulator",
    "Event",
    "Fault",
    "JobRunner",
    "ResourceDef",
    "Store",
    "Turnstile",
]
