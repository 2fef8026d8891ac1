"""`mtd manifests`: every object the operator would create for a resource, for review.

Built by the operator's own pieces, pass by pass: the profiling Job, then the core's
`reconcile` is asked what to start next with every step started so far taken as
succeeded, and each step's Job and ConfigMap come from the same builder the controller
uses; once nothing is left to start, the serving objects (engine Deployment and Service,
the task gateway and its catalogue) are built from the adapter set the core chose. So a
new kind of step or serving object shows up here by construction. Assumed outcome:
every step succeeds and every task scores 1.0 (served from its group's adapter: no
baseline replaces it). Owner references carry a
placeholder uid: the operator creates these objects; the output is to read and diff.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtd_contract.config import AnyConfig, ComposeConfig, EvalConfig, TrainConfig
from mtd_contract.layout import ADAPTER_DIR, artifact_dir, served_folders
from mtd_contract.results import ComposeResult, EvalResult, TaskScore, TrainResult

from ..api.spec import API_GROUP, API_VERSION, KIND, MultiTaskDeployment
from ..config import ENV_PREFIX, OperatorConfig, load_config
from ..core.catalogue import build_catalogue
from ..core.planner import plan
from ..core.profile import CompositionProfile, TaskProfile
from ..core.reconcile import StepState, reconcile
from ..core.render import render_step
from . import builders
from .engine_key import engine_api_key, read_master

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
ASSUMED_SCORE = 1.0
# `--set` keys: the chart's value names (charts/multitask-operator/values.yaml) → config.
CHART_VALUES: dict[str, str] = {
    "trainer.image": "trainer_image",
    "trainer.gpus": "trainer_gpus",
    "trainer.backoffLimit": "job_backoff_limit",
    "trainer.serviceAccount.name": "trainer_service_account",
    "serving.tgiImage": "tgi_image",
    "serving.vllmImage": "vllm_image",
    "serving.gpus": "serving_gpus",
    "serving.scoreThroughEngine": "score_through_engine",
    "serving.router": "serving_router",
    "serving.endpointPicker": "endpoint_picker",
    "workloads.gpuResource": "gpu_resource",
    "workloads.nodeSelector": "node_selector",
    "workloads.tolerations": "tolerations",
    "workloads.imagePullSecrets": "image_pull_secrets",
    "workspace.claim": "workspace_claim",
    "workspace.mountPath": "workspace_mount_path",
}


def operator_config(environ: Mapping[str, str], sets: list[str]) -> OperatorConfig:
    """The MTD_* environment (as the chart sets it), overridden by `--set KEY=VALUE`
    under the chart's value names; errors name the key and the allowed ones."""
    values = {k: v for k, v in environ.items() if k.startswith(ENV_PREFIX)}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or key not in CHART_VALUES:
            raise ValueError(
                f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(CHART_VALUES)}"
            )
        env = ENV_PREFIX + CHART_VALUES[key].upper()
        try:
            load_config({env: value})
        except ValueError as exc:
            raise ValueError(f"--set {key}: {str(exc).removeprefix(env + ': ')}") from None
        values[env] = value
    return load_config(values)


#: The file and digest an assumed training result records (a placeholder, like the uid).
ASSUMED_FILE = "adapter_model.safetensors"
ASSUMED_DIGEST = "0" * 64


def assumed_result(config: AnyConfig) -> dict[str, Any]:
    """What the step reports when it succeeds (the contract's result of its verb)."""
    if isinstance(config, TrainConfig):
        output = Path(config.output_dir)
        folders = served_folders(config.method, [t.name for t in config.tasks])
        result: TrainResult | EvalResult | ComposeResult = TrainResult(
            run_name=config.run_name,
            method=config.method,
            steps=config.hyperparameters.max_steps,
            artifact=str(output / artifact_dir(config.method)),
            # A recorded file per artifact folder, so the objects that check digests
            # before serving (the verify init container and Job) are printed too.
            files={f"{folder}/{ASSUMED_FILE}": ASSUMED_DIGEST for folder in folders},
        )
    elif isinstance(config, EvalConfig):
        result = EvalResult(
            run_name=config.run_name,
            tasks={t.name: TaskScore(score=ASSUMED_SCORE, metric=t.metric) for t in config.tasks},
        )
    else:
        assert isinstance(config, ComposeConfig)
        rank = config.calibration.rank if config.calibration else 1
        result = ComposeResult(
            run_name=config.run_name,
            merge=config.merge.method,
            rank=rank,
            artifact=str(Path(config.output_dir) / ADAPTER_DIR),
        )
    return result.model_dump(mode="json")


def pipeline_objects(
    resource: MultiTaskDeployment,
    profiles: dict[str, TaskProfile],
    compositions: dict[str, CompositionProfile],
    config: OperatorConfig,
    namespace: str,
) -> list[dict[str, Any]]:
    """Every child object of the whole pipeline, in the order the operator creates them."""
    spec = resource.spec
    name = resource.metadata.name
    body = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "uid": PLACEHOLDER_UID},
        "spec": spec.to_api(),
    }
    job, config_map = builders.profile_objects(body, spec, config)
    objects: list[dict[str, Any]] = [config_map, job]
    the_plan = plan(spec, profiles, compositions)
    locations = builders.cluster_locations(spec, config, namespace, name)
    observed: dict[str, StepState] = {}
    serving = None
    while True:
        decision = reconcile(
            spec, the_plan, observed, None, now="", gpus_per_replica=config.serving_gpus
        )
        if decision.serving is not None:
            serving, status = decision.serving, decision.status
        if not decision.start:
            break
        by_key = {s.key: s for s in decision.steps}
        for step in decision.start:
            job, config_map = builders.rendered_step_objects(
                body, spec, config, the_plan, by_key, step
            )
            service = builders.step_service(body, spec, step)  # multi-node steps only
            objects += [config_map, *([service] if service is not None else []), job]
            rendered = render_step(step, spec, the_plan, by_key, locations, name)
            observed[step.key] = StepState("Succeeded", attempts=1, result=assumed_result(rendered))
    if serving is not None:
        catalogue = build_catalogue(spec, status, serving.revision)
        master = read_master(config)
        key = engine_api_key(master, namespace, name, PLACEHOLDER_UID) if master else None
        inputs = builders.ServingInputs(body, spec, config, serving, locations)
        objects += builders.serving_objects(inputs, catalogue, engine_key=key)
    return objects
