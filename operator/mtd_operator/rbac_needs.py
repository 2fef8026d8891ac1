"""Every Kubernetes API permission the operator and its trainer Jobs need, in one place.

The Helm chart's RBAC rules are checked against these lists exactly (tests/chart): no
verb the code uses may be missing, and none it does not use may be granted, and each
rule's comment in the chart is its `why`. Whoever adds an API call to the operator or
the trainer adds its permission here and in charts/multitask-operator/templates/_helpers.tpl.

`scope` says where a permission is granted:
* ``namespace``: in every watched namespace (a Role per namespace when the operator
  watches a list of namespaces, the ClusterRole when it watches all of them);
* ``cluster``: a cluster-scoped resource, always in a ClusterRole;
* ``all-namespaces``: only when the operator watches all namespaces (ClusterRole).

`called` is False for a permission that the code never exercises by an API call of its
own but that the API server checks on its behalf (an admission plugin), so a test that
compares recorded API calls with this list knows to expect no call for it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Scope = Literal["namespace", "cluster", "all-namespaces"]


class Need(NamedTuple):
    api_group: str
    resource: str
    verbs: tuple[str, ...]
    why: str
    scope: Scope = "namespace"
    called: bool = True


OPERATOR_NEEDS: list[Need] = [
    Need(
        "multitask.dev",
        "multitaskdeployments",
        ("get", "list", "watch", "patch"),
        "Watch MultiTaskDeployments; kopf patches its finalizer and progress annotations.",
    ),
    Need(
        "multitask.dev",
        "multitaskdeployments/status",
        ("get", "patch", "update"),
        "Write status: observedGeneration, conditions, per-task rows.",
    ),
    Need(
        "multitask.dev",
        "multitaskdeployments/finalizers",
        ("update",),
        "Children's ownerReferences set blockOwnerDeletion, authorised as an update of the "
        "owner's finalizers where OwnerReferencesPermissionEnforcement is on (e.g. OpenShift).",
        called=False,
    ),
    Need("", "events", ("create", "patch"), "Events on each transition (core API)."),
    Need(
        "events.k8s.io",
        "events",
        ("create", "patch"),
        "Events on each transition (events.k8s.io API).",
    ),
    Need(
        "batch",
        "jobs",
        ("get", "list", "watch", "create", "delete"),
        "Profiling, baseline, training and evaluation Jobs.",
    ),
    Need("", "pods", ("get", "list", "watch"), "Termination messages of trainer pods."),
    Need(
        "", "pods/log", ("get",), "The tail of a failed trainer pod's log, for the failure reason."
    ),
    Need(
        "",
        "configmaps",
        ("get", "list", "watch", "create", "update", "patch", "delete"),
        "Stage configs handed to Jobs and the results Jobs write back.",
    ),
    Need(
        "apps",
        "deployments",
        ("get", "list", "watch", "create", "patch", "update", "delete"),
        "The serving Deployment (TGI or vLLM).",
    ),
    Need(
        "",
        "services",
        ("get", "list", "watch", "create", "patch", "delete"),
        "The serving Service.",
    ),
    Need(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        ("get", "list", "watch"),
        "kopf scans the CRDs to discover the resources it serves.",
        scope="cluster",
    ),
    Need(
        "",
        "namespaces",
        ("get", "list", "watch"),
        "kopf follows namespaces when it watches all of them.",
        scope="all-namespaces",
    ),
]

TRAINER_NEEDS: list[Need] = [
    Need(
        "",
        "configmaps",
        ("create", "get", "patch", "update"),
        "A trainer Job writes its results (metrics, saturation step, artifact paths).",
    ),
]
