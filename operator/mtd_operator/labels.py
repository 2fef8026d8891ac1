"""Label, annotation and environment names shared by the operator and its Job pods."""

from __future__ import annotations

from .api.spec import API_GROUP

LABEL_DEPLOYMENT = f"{API_GROUP}/deployment"
LABEL_ROLE = f"{API_GROUP}/role"
LABEL_STEP = f"{API_GROUP}/step-hash"
ANNOTATION_STEP = f"{API_GROUP}/step"
# Where a training Job runs (nodes, GPUs per node, strategy): not in the step's hash (the
# result is the same), but a Job of another placement is replaced (docs/trainer.md).
ANNOTATION_PLACEMENT = f"{API_GROUP}/placement"
ANNOTATION_REVISION = f"{API_GROUP}/serving-revision"
# A hash of the Deployment spec we rendered: the object is replaced whole when it changes,
# so no field of an earlier template (an engine's command, env, volumes) survives.
ANNOTATION_SPEC_HASH = f"{API_GROUP}/spec-hash"
MANAGED_BY = {"app.kubernetes.io/managed-by": "multitask-operator"}
RESULT_COMPONENT = {"app.kubernetes.io/component": "result"}
# The env the operator gives a pod to publish its result ConfigMap (result_parts.py).
OWNER_ENV = "MTD_OWNER_REFERENCE"
NAMESPACE_ENV = "MTD_NAMESPACE"
DEPLOYMENT_ENV = "MTD_DEPLOYMENT"
