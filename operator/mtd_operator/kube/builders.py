"""Pure builders of the child objects: Jobs, their ConfigMaps, the serving Deployment.

No API calls here: each function returns a manifest, so every one is unit-tested
without a cluster and the code that applies them stays thin. Names are deterministic
(parent name + step key, shortened with a hash when too long), so a restarted operator
finds the children it already made instead of making them again.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import yaml

from mtd_contract.catalogue import Catalogue
from mtd_contract.config import AnyConfig, EngineScoring, EvalConfig
from mtd_contract.exits import EXIT_INVALID
from mtd_contract.pod import profile_command, step_command, verify_command

from ..api.spec import API_GROUP, API_VERSION, KIND, MultiTaskDeploymentSpec
from ..config import OperatorConfig
from ..core.planner import Plan
from ..core.reconcile import DesiredServing
from ..core.render import Locations, render_step
from ..core.steps import Step
from ..engines import engine_of
from ..engines.base import CACHE_MOUNT, SERVING_PORT, ServeRequest, non_root_pod, scoring_plan
from ..engines.vllm import ADAPTERS_KEY, ADAPTERS_MOUNT, DIGESTS_KEY, VLLM
from ..gateway.command import GATEWAY_KEY_ENV
from ..labels import (
    ANNOTATION_PLACEMENT,
    ANNOTATION_REVISION,
    ANNOTATION_SPEC_HASH,
    ANNOTATION_STEP,
    DEPLOYMENT_ENV,
    LABEL_DEPLOYMENT,
    LABEL_ROLE,
    LABEL_STEP,
    MANAGED_BY,
    NAMESPACE_ENV,
    OWNER_ENV,
)
from .engine_key import SECRET_KEY as ENGINE_SECRET_KEY
from .names import MAX_JOB_NAME, MAX_LABEL, child_name, label_value, service_name

CONFIG_MOUNT = "/etc/mtd"
HF_MODELS_DIR = "models/hf"  # hub models' copies on the workspace volume
RENDEZVOUS_PORT = 29400  # torchrun's c10d rendezvous on pod 0 of a multi-node step


def result_name(job_name: str) -> str:
    return child_name(job_name, "result")


def owner_reference(body: dict[str, Any], *, block_deletion: bool = True) -> dict[str, Any]:
    """The controller reference every child carries, so deleting the resource deletes it.

    `blockOwnerDeletion: true` makes a foreground delete wait for the child; setting it
    needs `update` on the owner's `finalizers` subresource under the
    OwnerReferencesPermissionEnforcement admission plugin (plugin/pkg/admission/gc), which
    the operator has and trainer pods do not: what pods publish goes without it."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": block_deletion,
    }


def owner_label(parent: str) -> dict[str, str]:
    """The label every child carries, naming its resource (within label values' 63)."""
    return {LABEL_DEPLOYMENT: label_value(parent)}


def _selector(parent: str, role: str) -> dict[str, str]:
    return {**owner_label(parent), LABEL_ROLE: role}


def label_selector(parent: str, role: str | None = None) -> str:
    """The `labelSelector` of a list call for the resource's children (of one role)."""
    labels = _selector(parent, role) if role else owner_label(parent)
    return ",".join(f"{key}={value}" for key, value in labels.items())


def _labels(parent: str, role: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**MANAGED_BY, **_selector(parent, role), **(extra or {})}


def _meta(body: dict[str, Any], name: str, labels: dict[str, str], annotations=None) -> dict:
    meta = {
        "name": name,
        "namespace": body["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(body)],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def cluster_locations(
    spec: MultiTaskDeploymentSpec, config: OperatorConfig, namespace: str, name: str
) -> Locations:
    """Paths as trainer pods see them: everything lives on the workspace volume."""
    mount = config.workspace_mount_path.rstrip("/")
    return Locations(
        root=f"{mount}/artifacts/{namespace}/{name}",
        data_dir=mount,
        base_model=base_model_path(spec.base_model.uri, config),
    )


def base_model_path(uri: str, config: OperatorConfig) -> str:
    """The base model as pods see it. A hub model is downloaded once, by the profiling
    Job, to models/hf/ORG/NAME on the workspace volume; every other pod reads it there.
    A relative path is relative to the workspace volume and must stay inside it
    (`model_path_problem`)."""
    mount = config.workspace_mount_path.rstrip("/")
    if uri.startswith("hf://"):
        return f"{mount}/{HF_MODELS_DIR}/{uri.removeprefix('hf://').strip('/')}"
    if uri.startswith("pvc://"):
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        if claim == config.workspace_claim:
            return posixpath.normpath(f"{mount}/{path}")
        return posixpath.normpath(f"/models/{claim}/{path}")
    if uri.startswith("/"):
        return uri
    problem = model_path_problem(uri, config)
    if problem:
        raise ValueError(problem)
    return posixpath.normpath(f"{mount}/{uri}")


def cluster_problems(
    spec: MultiTaskDeploymentSpec, config: OperatorConfig, model_path: bool = True
) -> list[str]:
    """What a spec asks that cannot run on the cluster the operator is configured for,
    each naming its field: the engine's rules on `serving.gpus` and, with `model_path`, a
    model path off the volume (right for `mtd run`, so `mtd validate` leaves it out).
    (The spec alone is checked by its model's validators.)"""
    problems = [f"spec.{p}" for p in engine_of(spec).rank_problems(spec, config.serving_gpus)]
    problems += data_parallel_problems(spec, config)
    path = model_path_problem(spec.base_model.uri, config) if model_path else None
    return [*problems, *([path] if path else [])]


def data_parallel_problems(spec: MultiTaskDeploymentSpec, config: OperatorConfig) -> list[str]:
    """A training step runs one process per GPU on every node, each taking a share of the
    batch: a batch smaller than that leaves GPUs requested but idle (and a process with
    no examples), so it is refused rather than run on fewer processes than GPUs."""
    training = spec.training
    nodes, gpus = training.resources.nodes, trainer_gpus(spec, config)
    world = nodes * max(gpus, 1)
    if training.batch_size >= world:
        return []
    source = (
        "spec.training.resources.gpusPerNode"
        if training.resources.gpus_per_node is not None
        else "the chart's trainer.gpus"
    )
    return [
        f"spec.training.batchSize: {training.batch_size} is smaller than the {world} "
        f"data-parallel processes of a training step (spec.training.resources.nodes {nodes} "
        f"x {gpus} GPUs per node from {source}); use a batchSize of at least {world} (a "
        "multiple of it gives every process the same share) or fewer GPUs"
    ]


def model_path_problem(uri: str, config: OperatorConfig) -> str | None:
    """Why `spec.baseModel.uri` names no place a pod can read, or None. A path relative
    to a spec file (`../../.cache/...`, right for `mtd run`) leaves the volume on a cluster."""
    if "://" in uri or uri.startswith("/"):
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        if uri.startswith("pvc://") and posixpath.normpath(path).startswith(".."):
            return f"spec.baseModel.uri: {uri!r} leaves the claim {claim!r}"
        return None
    mount = config.workspace_mount_path.rstrip("/")
    if posixpath.normpath(f"{mount}/{uri}").startswith(f"{mount}/"):
        return None
    return (
        f"spec.baseModel.uri: {uri!r} leaves the workspace volume (mounted at {mount}): on "
        "a cluster a relative path is relative to that volume; give a path inside it (e.g. "
        "models/NAME), pvc://CLAIM/PATH or hf://ORG/NAME"
    )


def _extra_model_claims(spec: MultiTaskDeploymentSpec, config: OperatorConfig) -> list[str]:
    uri = spec.base_model.uri
    if uri.startswith("pvc://"):
        claim = uri.removeprefix("pvc://").partition("/")[0]
        if claim != config.workspace_claim:
            return [claim]
    return []


def volume_name(prefix: str, claim: str) -> str:
    """A valid volume name (DNS-1123 label) for any claim name: claims may hold dots and
    be 253 characters long, volume names may not. Readable when it can be, else hashed."""
    readable = re.sub(r"[^a-z0-9-]", "-", claim.lower())
    name = f"{prefix}-{readable}"
    if readable == claim and len(name) <= MAX_LABEL and not claim.endswith("-"):
        return name
    digest = hashlib.sha256(claim.encode()).hexdigest()[:8]
    return f"{name[: MAX_LABEL - 9].rstrip('-')}-{digest}"


def _volumes(
    spec: MultiTaskDeploymentSpec, config: OperatorConfig, config_map: str | None, read_only: bool
) -> tuple[list[dict], list[dict]]:
    volumes: list[dict[str, Any]] = [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": config.workspace_claim}},
        {"name": "shm", "emptyDir": {"medium": "Memory"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "workspace", "mountPath": config.workspace_mount_path, "readOnly": read_only},
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    for claim in _extra_model_claims(spec, config):
        name = volume_name("model", claim)
        volumes.append(
            {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": name, "mountPath": f"/models/{claim}", "readOnly": True})
    if config_map is not None:
        volumes.append({"name": "config", "configMap": {"name": config_map}})
        mounts.append({"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True})
    return volumes, mounts


def _pod_security() -> dict[str, Any]:
    """Our own pods (trainer Jobs, the gateway): non-root, as vLLM's by default."""
    return non_root_pod()


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _scheduling(config: OperatorConfig) -> dict[str, Any]:
    pod: dict[str, Any] = {}
    if config.node_selector:
        pod["nodeSelector"] = dict(config.node_selector)
    if config.tolerations:
        pod["tolerations"] = list(config.tolerations)
    if config.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in config.image_pull_secrets]
    return pod


def _gpu_resources(config: OperatorConfig, gpus: int) -> dict[str, Any]:
    if gpus <= 0:
        return {}
    return {
        "limits": {config.gpu_resource: str(gpus)},
        "requests": {config.gpu_resource: str(gpus)},
    }


def _pod_failure_policy() -> dict[str, Any]:
    """Exit 2 (the input cannot work) fails the Job at once; other failures are retried
    up to backoffLimit, and a pod disrupted by the cluster (eviction, preemption, node
    drain) does not count against it. Requires `restartPolicy: Never`."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": "trainer",
                    "operator": "In",
                    "values": [EXIT_INVALID],
                },
            },
            # `status` is required by the 1.30–1.34 schemas (defaulted only from 1.35).
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }


def _job(
    body: dict[str, Any],
    config: OperatorConfig,
    spec: MultiTaskDeploymentSpec,
    name: str,
    role: str,
    command: list[str],
    config_map: str,
    gpus: int,
    labels_extra: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    hub_env: list[dict[str, Any]] | None = None,
    read_only: bool = False,
) -> dict[str, Any]:
    labels = _labels(body["metadata"]["name"], role, labels_extra)
    volumes, mounts = _volumes(spec, config, config_map, read_only=read_only)
    env = [
        {"name": NAMESPACE_ENV, "value": body["metadata"]["namespace"]},
        {"name": DEPLOYMENT_ENV, "value": label_value(body["metadata"]["name"])},
        {"name": OWNER_ENV, "value": json.dumps(owner_reference(body, block_deletion=False))},
        {"name": "HF_HOME", "value": "/tmp/hf"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        # Only the downloading Job (hub_env) may reach the hub; the rest read the copy.
        *(hub_env if hub_env is not None else [{"name": "HF_HUB_OFFLINE", "value": "1"}]),
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(body, name, labels, annotations),
        "spec": {
            "backoffLimit": config.job_backoff_limit,
            "podFailurePolicy": _pod_failure_policy(),
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": config.trainer_service_account,
                    "securityContext": _pod_security(),
                    **_scheduling(config),
                    "containers": [
                        {
                            "name": "trainer",
                            "image": config.trainer_image,
                            "command": command,
                            "env": env,
                            "volumeMounts": mounts,
                            "resources": _gpu_resources(config, gpus),
                            "securityContext": _container_security(),
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def config_map(body: dict[str, Any], name: str, role: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(body, name, _labels(body["metadata"]["name"], role)),
        "data": data,
    }


def profile_key(spec: MultiTaskDeploymentSpec) -> str:
    """Profiling reruns when anything it reads changes: data paths, labels, task types,
    and a hub base model (which it downloads)."""
    payload: list = [(t.name, t.type, t.labels, t.data.train, t.data.eval) for t in spec.tasks]
    if spec.base_model.uri.startswith("hf://"):  # only then: other Jobs keep their names
        payload.append(spec.base_model.model_dump(mode="json"))
    if spec.compositions:  # only when used, so that existing profile Jobs keep their names
        payload.append(
            [
                (c.name, c.labels, c.data.eval, c.calibration.data if c.calibration else None)
                for c in spec.compositions
            ]
        )
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:10]


def profile_objects(
    body: dict[str, Any], spec: MultiTaskDeploymentSpec, config: OperatorConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The profiling Job and its ConfigMap (the spec, as the Job reads it)."""
    name = child_name(body["metadata"]["name"], f"profile-{profile_key(spec)}")
    resource = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": body["metadata"]["name"]},
        "spec": spec.to_api(),
    }
    cm = config_map(body, name, "profile", {"spec.yaml": yaml.safe_dump(resource, sort_keys=False)})
    uri = spec.base_model.uri
    hub_env = None
    download: dict[str, str] = {}
    if uri.startswith("hf://"):
        download = {"download_model": uri, "model_dir": base_model_path(uri, config)}
        hub_env = []
        secret = spec.base_model.token_secret
        if secret is not None:
            ref = {"secretKeyRef": {"name": secret.name, "key": secret.key}}
            hub_env.append({"name": "HF_TOKEN", "valueFrom": ref})
    command = profile_command(
        f"{CONFIG_MOUNT}/spec.yaml", config.workspace_mount_path, result_name(name), **download
    )
    job = _job(body, config, spec, name, "profile", command, name, gpus=0, hub_env=hub_env)
    return job, cm


#: How long an evaluation waits for the engine beside it to load the model and adapters.
SCORING_ENGINE_READY_S = 1800.0
#: Container-level fields of a pod securityContext (an engine's own pod settings, applied
#: to its container when it shares a pod with ours).
_CONTAINER_SECURITY_FIELDS = ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")


def scored_by_engine(
    spec: MultiTaskDeploymentSpec, config: OperatorConfig, rendered: EvalConfig
) -> tuple[EvalConfig, dict[str, Any] | None]:
    """The evaluation as it runs on a cluster: with vLLM, every eval example is asked of
    the serving engine itself (the same image, flags and adapters as the serving pods,
    started beside the evaluation in its pod as a native sidecar, Kubernetes 1.29+), so
    a verdict describes served answers. Returns the config, and that sidecar container
    (None: TGI, which cannot run here and is in maintenance mode; scored in process)."""
    if engine_of(spec) is not VLLM or not config.score_through_engine:
        return rendered, None
    full = spec.training.method == "full"  # then every trained artifact is a whole model
    planned = scoring_plan(rendered, served_model_id(spec, config), lambda _path: full)
    scoring = EngineScoring(
        url=f"http://127.0.0.1:{SERVING_PORT}",
        base_model=planned.model,
        adapters=planned.names,
        ready_timeout_s=SCORING_ENGINE_READY_S,
    )
    engine = VLLM.scoring_container(spec, config, planned.model, planned.adapters)
    _, mounts = _volumes(spec, config, None, read_only=True)
    own = {k: v for k, v in VLLM.pod_security(config).items() if k in _CONTAINER_SECURITY_FIELDS}
    sidecar = {
        "name": "engine",
        # A native sidecar: started before the trainer, stopped once it has finished.
        "restartPolicy": "Always",
        **engine.container_fields(),
        "volumeMounts": [*mounts, {"name": "cache", "mountPath": CACHE_MOUNT}],
        "resources": _gpu_resources(config, config.serving_gpus),
        "securityContext": {**_container_security(), **own, "readOnlyRootFilesystem": False},
    }
    return rendered.model_copy(update={"engine": scoring}), sidecar


def step_objects(
    body: dict[str, Any],
    spec: MultiTaskDeploymentSpec,
    config: OperatorConfig,
    step: Step,
    rendered: AnyConfig,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A pipeline step's Job and the ConfigMap holding its trainer config.

    A training step on several nodes is an Indexed Job (one pod per node, each with its
    JOB_COMPLETION_INDEX) whose pods reach pod 0 through the headless Service of
    `step_service`: Kubernetes' "Job with pod-to-pod communication" pattern. An
    evaluation served by vLLM gets the engine beside it (`scored_by_engine`), which then
    holds the GPUs."""
    sidecar = None
    if isinstance(rendered, EvalConfig):
        rendered, sidecar = scored_by_engine(spec, config, rendered)
    name = step_job_name(body["metadata"]["name"], step)
    config_json = rendered.model_dump_json(indent=1)
    cm = config_map(body, name, step.role, {"config.json": config_json})
    training = step.verb == "train"
    processes = trainer_processes(spec, config) if training else 1
    nodes = training_nodes(spec, step)
    command = step_command(
        step.verb,
        f"{CONFIG_MOUNT}/config.json",
        result_name(name),
        processes,
        nodes,
        f"{rendezvous_host(body, name)}:{RENDEZVOUS_PORT}",
        name,
    )
    resources = spec.training.resources
    job = _job(
        body,
        config,
        spec,
        name,
        step.role,
        command,
        name,
        gpus=trainer_gpus(spec, config) if training else 0 if sidecar else config.trainer_gpus,
        labels_extra={LABEL_STEP: step.hash},
        annotations={
            ANNOTATION_STEP: step.key,
            **({ANNOTATION_PLACEMENT: training_placement(spec, config)} if training else {}),
        },
    )
    if sidecar is not None:
        pod = job["spec"]["template"]["spec"]
        pod["initContainers"] = [sidecar]
        pod["volumes"].append({"name": "cache", "emptyDir": {}})
    if training:
        container = job["spec"]["template"]["spec"]["containers"][0]
        requests = {"cpu": resources.cpu, "memory": resources.memory}
        requests = {key: value for key, value in requests.items() if value is not None}
        if requests:
            container.setdefault("resources", {}).setdefault("requests", {}).update(requests)
    if nodes > 1:
        job_spec = job["spec"]
        job_spec["completionMode"] = "Indexed"
        job_spec["completions"] = job_spec["parallelism"] = nodes
        # One failed pod fails every rank (torchrun --max-restarts 0): an attempt costs
        # up to `nodes` pod failures, so the limit counts whole attempts.
        job_spec["backoffLimit"] = config.job_backoff_limit * nodes + (nodes - 1)
        job_spec["template"]["spec"]["subdomain"] = step_service_name(name)
    return job, cm


def training_placement(spec: MultiTaskDeploymentSpec, config: OperatorConfig) -> str:
    """Where a training step runs, as its Job's placement annotation records it."""
    resources = spec.training.resources
    gpus = trainer_gpus(spec, config)
    return f"nodes={resources.nodes},gpusPerNode={gpus},strategy={resources.strategy}"


def training_nodes(spec: MultiTaskDeploymentSpec, step: Step) -> int:
    """Pods of a step: training.resources.nodes for training, one for everything else."""
    return spec.training.resources.nodes if step.verb == "train" else 1


def trainer_gpus(spec: MultiTaskDeploymentSpec, config: OperatorConfig) -> int:
    """GPUs per training pod: the resource's gpusPerNode, else the chart's trainer.gpus."""
    per_node = spec.training.resources.gpus_per_node
    return config.trainer_gpus if per_node is None else per_node


def step_job_name(parent: str, step: Step) -> str:
    """Short enough for any node count: pod hostnames are `<job>-<index>` (names.py)."""
    return child_name(parent, step.key, limit=MAX_JOB_NAME)


def step_service_name(job_name: str) -> str:
    return service_name(job_name, "ranks")


def rendezvous_host(body: dict[str, Any], job_name: str) -> str:
    """Pod 0's stable DNS name: an Indexed Job's pod is named `<job>-<index>` as hostname,
    and the headless Service in its subdomain makes `<job>-0.<service>.<ns>.svc` resolve."""
    namespace = body["metadata"]["namespace"]
    return f"{job_name}-0.{step_service_name(job_name)}.{namespace}.svc"


def step_service(body: dict[str, Any], spec: MultiTaskDeploymentSpec, step: Step) -> dict | None:
    """The headless Service giving a multi-node step's pods DNS names; None for one node."""
    if training_nodes(spec, step) <= 1:
        return None
    job_name = step_job_name(body["metadata"]["name"], step)
    labels = _labels(body["metadata"]["name"], step.role, {LABEL_STEP: step.hash})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(body, step_service_name(job_name), labels),
        "spec": {
            "clusterIP": "None",
            # Ranks resolve each other before any readiness: the rendezvous is the start.
            "publishNotReadyAddresses": True,
            "selector": labels,
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}],
        },
    }


def trainer_processes(spec: MultiTaskDeploymentSpec, config: OperatorConfig) -> int:
    """Data-parallel processes per training pod: one per GPU (each takes a share of the
    step's batch; `data_parallel_problems` refuses a batch too small for them all), one
    on a CPU-only pod."""
    return max(1, trainer_gpus(spec, config))


def rendered_step_objects(
    body: dict[str, Any],
    spec: MultiTaskDeploymentSpec,
    config: OperatorConfig,
    plan: Plan,
    steps_by_key: dict[str, Step],
    step: Step,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A step's Job and ConfigMap with its trainer config rendered for the cluster (what
    the controller creates, and what `mtd manifests` prints)."""
    meta = body["metadata"]
    locations = cluster_locations(spec, config, meta["namespace"], meta["name"])
    rendered = render_step(step, spec, plan, steps_by_key, locations, meta["name"])
    return step_objects(body, spec, config, step, rendered)


def serving_name(parent: str) -> str:
    """The serving Deployment, its Service and NetworkPolicy: one DNS-1035 name."""
    return _role_name(parent, "serving")


@dataclass(frozen=True)
class ServingInputs:
    """What every serving object is built from: the resource (`body`, its parsed `spec`),
    the chart's configuration, the adapter set the reconciler decided on, and where the
    pods see the workspace. One value, so the controller and `mtd manifests` hand the
    builders the same five things."""

    body: dict[str, Any]
    spec: MultiTaskDeploymentSpec
    config: OperatorConfig
    desired: DesiredServing
    locations: Locations


def serving_deployment(serving: ServingInputs) -> dict[str, Any]:
    """One Deployment for the whole resource: the base model once, every adapter by name.

    TGI: the revision annotation on the pod template makes a new adapter set a new
    ReplicaSet, rolled out as `serving.rollout` says. vLLM: the template does not change
    with the adapters; the controller loads a new set into the running pods.
    """
    body, spec, config, desired = serving.body, serving.spec, serving.config, serving.desired
    locations = serving.locations
    parent = body["metadata"]["name"]
    selector = _selector(parent, "serving")
    engine = engine_of(spec)
    security = engine.pod_security(config)
    serve = ServeRequest(
        model_path=(
            locations.artifact(desired.model) if desired.model else served_model_id(spec, config)
        ),
        served_model_id=served_model_id(spec, config),
        adapters={n: locations.artifact(path) for n, path in desired.adapters.items()},
        full_model=desired.model is not None,
    )
    container_fields = engine.container(spec, config, serve).container_fields()
    volumes, mounts = _volumes(spec, config, None, read_only=True)
    volumes.append({"name": "cache", "emptyDir": {}})
    mounts.append({"name": "cache", "mountPath": CACHE_MOUNT})
    template_meta: dict[str, Any] = {
        "labels": {**MANAGED_BY, **selector},
        "annotations": {ANNOTATION_REVISION: desired.revision},
    }
    if engine.adapter_update(spec) == "RuntimeLoad":
        # The adapter set lives in a ConfigMap, not in the pod template: a new set is
        # loaded into the running pods instead of rolling out new ones, and a pod that
        # restarts starts with the current set from the file.
        if desired.model is None:
            volumes.append({"name": "adapters", "configMap": {"name": adapters_name(parent)}})
            mounts.append({"name": "adapters", "mountPath": ADAPTERS_MOUNT, "readOnly": True})
        del template_meta["annotations"]
    verify = verify_container(serving, mounts)
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    if keyed(spec, config):
        container_fields["env"] = [*container_fields["env"], _key_env(engine.api_key_env, parent)]
    container = {
        "name": "server",
        **container_fields,
        "ports": [{"name": "http", "containerPort": SERVING_PORT}],
        "volumeMounts": mounts,
        "resources": _gpu_resources(config, config.serving_gpus),
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 180},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4},
        "securityContext": {**_container_security(), "readOnlyRootFilesystem": False},
    }
    pod = {
        # The engine never calls the API server: no token in its pods.
        "automountServiceAccountToken": False,
        "securityContext": security,
        **_scheduling(config),
        **({"initContainers": [verify]} if verify is not None else {}),
        "containers": [container],
        "volumes": volumes,
    }
    return _deployment(
        body,
        "serving",
        spec.serving.replicas,
        serving_strategy(spec),
        template_meta,
        pod,
        {ANNOTATION_REVISION: desired.revision},
    )


def served_digests(desired: DesiredServing, locations: Locations) -> dict[str, str]:
    """Folder (as serving pods see it) → the digest its step recorded, for every served
    adapter (or the fully fine-tuned model) whose step recorded one."""
    if desired.model is not None:
        digest = desired.digests.get(desired.model_name or "")
        return {locations.artifact(desired.model): digest} if digest else {}
    return {
        locations.artifact(path): desired.digests[name]
        for name, path in desired.adapters.items()
        if name in desired.digests
    }


def verify_container(serving: ServingInputs, mounts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The serving pods' init container (`mtd verify`, our trainer image, non-root): the
    engine starts only on folders whose files are what their steps recorded. With vLLM's
    runtime loading the digests come from the adapters ConfigMap (the template stays the
    same as adapters change); otherwise they are in its arguments."""
    spec, desired = serving.spec, serving.desired
    digests = served_digests(desired, serving.locations)
    if not digests:
        return None
    from_file = engine_of(spec).adapter_update(spec) == "RuntimeLoad" and desired.model is None
    command = (
        verify_command(f"{ADAPTERS_MOUNT}/{DIGESTS_KEY}")
        if from_file
        else verify_command(pairs=[f"{folder}={d}" for folder, d in sorted(digests.items())])
    )
    own = {k: v for k, v in _pod_security().items() if k in _CONTAINER_SECURITY_FIELDS}
    return {
        "name": "verify",
        "image": serving.config.trainer_image,
        "command": command,
        "volumeMounts": [m for m in mounts if m["name"] in ("workspace", "adapters", "tmp")]
        + [m for m in mounts if m["name"].startswith("model-")],
        "securityContext": {**_container_security(), **own},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def verify_job_name(parent: str, revision: str) -> str:
    """One verification per serving revision: the name says which one it checked."""
    return child_name(parent, f"verify-{revision}", limit=MAX_JOB_NAME)


def verify_job(serving: ServingInputs) -> dict[str, Any] | None:
    """With vLLM's runtime loading a new adapter set reaches pods that are already running,
    so no init container sees it: this Job (`mtd verify`, the same check, our trainer image,
    the workspace read-only) checks the revision's folders, and the controller loads them
    only once it has succeeded. None when nothing recorded digests or nothing is loaded at
    runtime (the serving pods' init container checks those)."""
    body, spec, config, desired = serving.body, serving.spec, serving.config, serving.desired
    digests = served_digests(desired, serving.locations)
    runtime = engine_of(spec).adapter_update(spec) == "RuntimeLoad" and desired.model is None
    if not digests or not runtime:
        return None
    name = verify_job_name(body["metadata"]["name"], desired.revision)
    command = verify_command(pairs=[f"{folder}={d}" for folder, d in sorted(digests.items())])
    annotations = {ANNOTATION_REVISION: desired.revision}
    job = _job(
        body, config, spec, name, "verify", command, None, gpus=0,
        annotations=annotations, read_only=True,
    )  # fmt: skip
    # A folder that differs stays different: one attempt says so (exit 2 fails the Job at
    # once anyway); a pod lost to the cluster is retried by the failure policy.
    job["spec"]["backoffLimit"] = min(config.job_backoff_limit, 1)
    # It reads files only: no token for the API server in its pod.
    job["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    return job


def keyed(spec: MultiTaskDeploymentSpec, config: OperatorConfig) -> bool:
    """Whether the engine is given an API key: it has admin routes and the operator has a
    secret to derive keys from (kube/engine_key.py)."""
    return engine_of(spec).api_key_env is not None and config.engine_key_file is not None


def engine_key_name(parent: str) -> str:
    return child_name(parent, "engine-key")


def _key_env(variable: str | None, parent: str) -> dict[str, Any]:
    ref = {"name": engine_key_name(parent), "key": ENGINE_SECRET_KEY}
    return {"name": variable, "valueFrom": {"secretKeyRef": ref}}


def engine_key_secret(body: dict[str, Any], key: str) -> dict[str, Any]:
    """The resource's engine API key, read by its serving and gateway pods (never by the
    operator, which derives it)."""
    parent = body["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(body, engine_key_name(parent), _labels(parent, "engine-key")),
        "type": "Opaque",
        "stringData": {ENGINE_SECRET_KEY: key},
    }


def serving_network_policy(body: dict[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """Only the resource's gateway pods, and the operator's pods, may open the serving port.

    vLLM's SageMaker-style adapter routes (`POST /adapters`, `DELETE /adapters/{name}`,
    model_hosting_container_standards) live outside the prefixes its API key guards, so
    the network is the one fence around them. Enforced by the cluster's network plugin
    (Calico, Cilium, ...); a plugin without NetworkPolicy support ignores it.
    """
    parent = body["metadata"]["name"]
    peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": _selector(parent, "gateway")}}]
    if config.operator_namespace:
        peers.append(
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": config.operator_namespace}
                },
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(body, serving_name(parent), _labels(parent, "serving")),
        "spec": {
            "podSelector": {"matchLabels": _selector(parent, "serving")},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": SERVING_PORT}]}],
        },
    }


def serving_strategy(spec: MultiTaskDeploymentSpec) -> dict[str, Any]:
    """surge: a new pod first, so the old ones serve until it is ready (needs a spare GPU);
    oneAtATime: an old pod stops first, so a full GPU pool can take the new one."""
    if spec.serving.rollout == "oneAtATime":
        # With one replica this leaves no pod for a moment: the gateway answers 502 then.
        return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def _role_name(parent: str, role: str) -> str:
    """A role's Deployment and its Service share one name, so a DNS-1035 label."""
    return service_name(parent, role)


def _deployment(
    body: dict[str, Any],
    role: str,
    replicas: int,
    strategy: dict[str, Any],
    template_meta: dict[str, Any],
    pod: dict[str, Any],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment of the resource's `role` pods (serving or gateway), selected by the
    resource's name and the role."""
    parent = body["metadata"]["name"]
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": _selector(parent, role)},
        "strategy": strategy,
        "template": {"metadata": template_meta, "spec": pod},
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    annotations = {**(annotations or {}), ANNOTATION_SPEC_HASH: digest}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(body, _role_name(parent, role), _labels(parent, role), annotations),
        "spec": spec,
    }


def _service(body: dict[str, Any], role: str) -> dict[str, Any]:
    """Port 80 of the resource's `role` pods (serving or gateway), by their port named http."""
    parent = body["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(body, _role_name(parent, role), _labels(parent, role)),
        "spec": {
            "selector": _selector(parent, role),
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def serving_service(body: dict[str, Any]) -> dict[str, Any]:
    return _service(body, "serving")


def serving_endpoint(body: dict[str, Any]) -> str:
    parent = body["metadata"]["name"]
    return f"http://{serving_name(parent)}.{body['metadata']['namespace']}.svc"


# -- the task gateway, its catalogue, and vLLM's adapter list ------------------------------

GATEWAY_PORT = 8000
CATALOGUE_MOUNT = "/etc/mtd-catalogue"
CATALOGUE_KEY = "catalogue.json"


def gateway_name(parent: str) -> str:
    return _role_name(parent, "gateway")


def catalogue_name(parent: str) -> str:
    return child_name(parent, "catalogue")


def adapters_name(parent: str) -> str:
    return child_name(parent, "adapters")


def gateway_endpoint(body: dict[str, Any]) -> str:
    parent = body["metadata"]["name"]
    return f"http://{gateway_name(parent)}.{body['metadata']['namespace']}.svc"


def catalogue_config_map(body: dict[str, Any], catalogue: Catalogue) -> dict[str, Any]:
    """The catalogue the gateway reads: the document `mtd run` writes to catalogue.json."""
    name = catalogue_name(body["metadata"]["name"])
    cm = config_map(body, name, "catalogue", {CATALOGUE_KEY: catalogue.to_json()})
    if catalogue.revision:
        cm["metadata"]["annotations"] = {ANNOTATION_REVISION: catalogue.revision}
    return cm


def served_model_id(spec: MultiTaskDeploymentSpec, config: OperatorConfig) -> str:
    """The base model's id as the engine names it (vLLM: its --model value)."""
    return base_model_path(spec.base_model.uri, config).removeprefix("hf://")


def gateway_deployment(
    body: dict[str, Any], spec: MultiTaskDeploymentSpec, config: OperatorConfig
) -> dict[str, Any]:
    """The task gateway: a small CPU pod (no torch, no API access) in front of the engine.

    It mounts the catalogue ConfigMap as a directory (a `subPath` mount would never see an
    update) and re-reads it on change, so a new adapter set needs no gateway restart.
    """
    parent = body["metadata"]["name"]
    selector = _selector(parent, "gateway")
    command = [
        "mtd", "gateway",
        "--upstream", serving_endpoint(body),
        "--catalogue", f"{CATALOGUE_MOUNT}/{CATALOGUE_KEY}",
        "--engine", spec.serving.engine,
        "--host", "0.0.0.0",
        "--port", str(GATEWAY_PORT),
    ]  # fmt: skip
    command += engine_of(spec).gateway_args(served_model_id(spec, config))
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if keyed(spec, config):
        env.append(_key_env(GATEWAY_KEY_ENV, parent))
    container = {
        "name": "gateway",
        "image": config.gateway_image,
        "command": command,
        "env": env,
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT}],
        "volumeMounts": [
            {"name": "catalogue", "mountPath": CATALOGUE_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "resources": {
            "requests": {"cpu": "50m", "memory": "96Mi"},
            "limits": {"memory": "256Mi"},
        },
        # Ready once a catalogue is loaded; alive while it listens (an engine that is down
        # is the engine's problem, not a reason to restart the gateway).
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 15},
        "securityContext": _container_security(),
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": _pod_security(),
        "containers": [container],
        "volumes": [
            {
                "name": "catalogue",
                "configMap": {"name": catalogue_name(parent), "optional": True},
            },
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if config.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in config.image_pull_secrets]
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    return _deployment(body, "gateway", 1, strategy, {"labels": {**MANAGED_BY, **selector}}, pod)


def gateway_service(body: dict[str, Any]) -> dict[str, Any]:
    return _service(body, "gateway")


def engine_adapter_names(
    spec: MultiTaskDeploymentSpec, desired: DesiredServing, locations: Locations
) -> dict[str, str]:
    """Adapter name → the name the engine serves it under (`ServingEngine.adapter_names`)."""
    folders = {name: locations.artifact(path) for name, path in desired.adapters.items()}
    return engine_of(spec).adapter_names(folders)


def engine_adapters(
    spec: MultiTaskDeploymentSpec, desired: DesiredServing, locations: Locations
) -> dict[str, str]:
    """The engine's adapter names → adapter folders as serving pods see them."""
    names = engine_adapter_names(spec, desired, locations)
    return {names[n]: locations.artifact(path) for n, path in desired.adapters.items()}


def adapters_config_map(serving: ServingInputs) -> dict[str, Any]:
    """vLLM's adapter set, read by its pods at start (`--lora-modules`)."""
    body, spec, desired, locations = serving.body, serving.spec, serving.desired, serving.locations
    modules = " ".join(f"{n}={p}" for n, p in engine_adapters(spec, desired, locations).items())
    name = adapters_name(body["metadata"]["name"])
    data = {ADAPTERS_KEY: modules}
    digests = served_digests(desired, locations)
    if digests:  # what the serving pods' init container checks (`verify_container`)
        data[DIGESTS_KEY] = json.dumps(digests, indent=1, sort_keys=True)
    cm = config_map(body, name, "adapters", data)
    cm["metadata"]["annotations"] = {ANNOTATION_REVISION: desired.revision}
    return cm


def engine_objects(serving: ServingInputs, engine_key: str | None = None) -> list[dict[str, Any]]:
    """The engine side of serving, in the order the controller applies them: the engine's
    API key (when `keyed`), vLLM's adapter file, the engine Deployment, its Service and
    NetworkPolicy."""
    body, spec, config = serving.body, serving.spec, serving.config
    objects = []
    if keyed(spec, config):
        assert engine_key is not None, "a keyed engine needs its key"
        objects.append(engine_key_secret(body, engine_key))
    if engine_of(spec).adapter_update(spec) == "RuntimeLoad":
        objects.append(adapters_config_map(serving))
    return [
        *objects,
        serving_deployment(serving),
        serving_service(body),
        serving_network_policy(body, config),
    ]


def gateway_objects(serving: ServingInputs, catalogue: Catalogue) -> list[dict[str, Any]]:
    """The gateway side, applied once the engine's adapters are known: the catalogue
    (under the engine's adapter names), the gateway Deployment and its Service."""
    body, spec, config, desired = serving.body, serving.spec, serving.config, serving.desired
    named = catalogue.served(desired.digests, desired.prompt_format).renamed(
        engine_adapter_names(spec, desired, serving.locations)
    )
    if routes_by_inference_pool(spec, config):
        return [
            catalogue_config_map(body, named),
            *inference_objects(body, spec, config, named),
        ]
    return [
        catalogue_config_map(body, named),
        gateway_deployment(body, spec, config),
        gateway_service(body),
    ]


# -- the Gateway API Inference Extension (serving_router: inferencePool) ---------------------

#: apiVersion, kind and plural of what the inferencePool router renders: the Inference
#: Extension's stable InferencePool and llm-d's InferenceModelRewrite (the model-name
#: rewrite left the Inference Extension in v1.6.0 for llm-d's router, group llm-d.ai).
#: Schemas pinned in tests/fixtures/inference-crds/.
INFERENCE_POOL = ("inference.networking.k8s.io/v1", "InferencePool", "inferencepools")
MODEL_REWRITE = ("llm-d.ai/v1alpha2", "InferenceModelRewrite", "inferencemodelrewrites")


def routes_by_inference_pool(spec: MultiTaskDeploymentSpec, config: OperatorConfig) -> bool:
    """The cluster's router serves this resource: the chart says so, and the engine is
    vLLM (the endpoint picker reads vLLM's metrics and LoRA state; TGI keeps the gateway)."""
    return config.serving_router == "inferencePool" and engine_of(spec) is VLLM


def inference_pool_name(parent: str) -> str:
    return child_name(parent, "pool")


def inference_objects(
    body: dict[str, Any],
    spec: MultiTaskDeploymentSpec,
    config: OperatorConfig,
    catalogue: Catalogue,
) -> list[dict[str, Any]]:
    """An InferencePool over the resource's vLLM pods, and one InferenceModelRewrite
    whose rules send each task's name (the `model` a client sends through the cluster's
    Gateway) to the adapter serving it (`catalogue`: under the engine's names), or to
    the served model for a task on the base model."""
    parent = body["metadata"]["name"]
    pool = inference_pool_name(parent)
    pool_spec: dict[str, Any] = {
        "selector": {"matchLabels": _selector(parent, "serving")},
        "targetPorts": [{"number": SERVING_PORT}],
    }
    if config.endpoint_picker:
        name, _, port = config.endpoint_picker.rpartition(":")
        pool_spec["endpointPickerRef"] = {"name": name, "port": {"number": int(port)}}
    version, kind, _ = INFERENCE_POOL
    objects = [
        {
            "apiVersion": version,
            "kind": kind,
            "metadata": _meta(body, pool, _labels(parent, "pool")),
            "spec": pool_spec,
        }
    ]
    base = served_model_id(spec, config)
    rules = [
        {
            "matches": [{"model": {"type": "Exact", "value": task.name}}],
            "targets": [{"modelRewrite": task.adapter or base}],
        }
        for task in catalogue.tasks
    ]
    version, kind, _ = MODEL_REWRITE
    objects.append(
        {
            "apiVersion": version,
            "kind": kind,
            "metadata": _meta(body, child_name(parent, "tasks"), _labels(parent, "tasks")),
            "spec": {"poolRef": {"name": pool}, "rules": rules},
        }
    )
    return objects


def serving_objects(
    serving: ServingInputs, catalogue: Catalogue, engine_key: str | None = None
) -> list[dict[str, Any]]:
    """Every serving-side object of a resource once its adapter set is decided, in the
    order the controller applies them (what `mtd manifests` prints)."""
    verify = verify_job(serving)
    return [
        *engine_objects(serving, engine_key),
        *([verify] if verify is not None else []),
        *gateway_objects(serving, catalogue),
    ]
