"""Every Kubernetes API permission the operator and its trainer Jobs need, in one place.

The Helm chart's RBAC rules are checked against these lists exactly (tests/chart): no
verb the code uses may be missing, and none it does not use may be granted, and each
rule's comment in the chart is its `why`. Whoever adds an API call to the operator or
the trainer adds its permission here and in charts/multitask-operator/templates/_helpers.tpl.
The chart is what grants them; this list is the tests' statement of what the code needs
(tests/chart/test_rbac.py, and the recorded API calls in tests/operator), so it lives
with them and not in the product.

`scope` says where a permission is granted:
* ``namespace``: in every watched namespace (a Role per namespace when the operator
  watches a list of namespaces, the ClusterRole when it watches all of them);
* ``cluster``: a cluster-scoped resource, always in a ClusterRole;
* ``all-namespaces``: only when the operator watches all namespaces (ClusterRole).

`router` names the chart's `serving.router` a permission comes with (None: always).

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
    #: Granted only with this chart `serving.router` (None: always).
    router: str | None = None


OPERATOR_NEEDS: list[Need] = [
    Need(
        "multitask.dev",
        "multitaskdeployments",
        ("get", "list", "watch", "patch"),
        "Watch MultiTaskDeployments and read each one per pass; kopf patches its annotations.",
    ),
    Need(
        "multitask.dev",
        "multitaskdeployments/status",
        ("patch",),
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
    Need(
        "",
        "events",
        ("create", "list"),
        "Events on each condition transition; the Job controller's FailedCreate Events "
        "say why an unfinished Job has no pods.",
    ),
    Need(
        "batch",
        "jobs",
        ("list", "watch", "create", "delete"),
        "Profiling, baseline, training and evaluation Jobs; a finished Job whose result is "
        "gone is deleted so that it runs again.",
    ),
    Need(
        "",
        "pods",
        ("list",),
        "The termination state of a failed Job's pods, for the reason; the ready vLLM "
        "pods, to load new adapters into them.",
    ),
    Need(
        "",
        "configmaps",
        ("list", "watch", "create", "patch"),
        "Step configs handed to Jobs, the results Jobs write back (read by list), and the "
        "task catalogue the gateway reads (patched when a new adapter set is served).",
    ),
    Need(
        "apps",
        "deployments",
        ("get", "list", "watch", "create", "update"),
        "The serving Deployment (TGI or vLLM) and the task gateway's Deployment, replaced whole "
        "when their rendered spec changes.",
    ),
    Need(
        "",
        "services",
        ("create",),
        "The serving Service, the task gateway's Service, and the headless Service giving a "
        "multi-node training step's pods DNS names.",
    ),
    Need(
        "",
        "secrets",
        ("create", "patch"),
        "Each resource's engine API key, derived by the operator, read only by its serving "
        "and gateway pods: the operator never reads a Secret.",
    ),
    Need(
        "networking.k8s.io",
        "networkpolicies",
        ("create",),
        "The serving pods' NetworkPolicy: only the gateway and the operator reach the engine.",
    ),
    Need(
        "inference.networking.k8s.io",
        "inferencepools",
        ("create", "patch"),
        "serving.router inferencePool: each resource's InferencePool over its vLLM pods.",
        router="inferencePool",
    ),
    Need(
        "llm-d.ai",
        "inferencemodelrewrites",
        ("create", "patch"),
        "serving.router inferencePool: the rewrite of each task's name to its adapter, "
        "patched when a new adapter set is served.",
        router="inferencePool",
    ),
    Need(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        ("list", "watch"),
        "kopf scans the CRDs to discover the resources it serves.",
        scope="cluster",
    ),
]

TRAINER_NEEDS: list[Need] = [
    Need(
        "",
        "configmaps",
        ("create", "update"),
        "A Job writes its result ConfigMap (replaced when a retried pod writes it again).",
    ),
]
