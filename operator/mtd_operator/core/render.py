"""Render a step into the trainer's self-contained config (contract/mtd_contract/config.py).

Pure: paths come from a `Locations` the driver supplies (a spec folder and workspace
locally; the workspace volume's mount path on a cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mtd_contract.config import KINDS, AnyConfig

from ..api.spec import CompositionSpec, MultiTaskDeploymentSpec, TaskSpec
from .planner import Plan, StagePlan
from .steps import Step, continuation_path, served_adapter_path, trained_path


@dataclass(frozen=True)
class Locations:
    """Where things are, as the trainer process will see them."""

    root: str  # this deployment's folder in the workspace
    data_dir: str  # relative data paths resolve against this
    base_model: str  # the base model as the trainer loads it (a folder or hf://...)

    def artifact(self, relative: str) -> str:
        return f"{self.root.rstrip('/')}/{relative}"

    def data(self, path: str) -> str:
        return path if path.startswith("/") else f"{self.data_dir.rstrip('/')}/{path}"


def _task_config(task: TaskSpec | CompositionSpec, where: Locations) -> dict[str, Any]:
    """A task, or a composition scored like one (its own prompt and eval set, no training
    data: its adapter is merged, not trained)."""
    config: dict[str, Any] = {
        "name": task.name,
        "type": task.type,
        "instruction": task.instruction,
        "metric": task.effective_metric,
    }
    if isinstance(task, TaskSpec):
        config["ordinal"] = task.ordinal
        config["train_path"] = where.data(task.data.train)
    if task.labels is not None:
        config["labels"] = list(task.labels)
    if task.data.eval is not None:
        config["eval_path"] = where.data(task.data.eval)
    return config


def _hyperparameters(spec: MultiTaskDeploymentSpec, max_steps: int) -> dict[str, Any]:
    training = spec.training
    return {
        "max_steps": max_steps,
        "batch_size": training.batch_size,
        # The spec's batch is the step's: N data-parallel processes (one per GPU) split it.
        "batch_is_global": True,
        "learning_rate": training.learning_rate,
        "max_seq_length": training.max_seq_length,
        "seed": training.seed,
        "checkpoint_every": max(1, min(50, max_steps // 4 or 1)),
    }


def _lora(spec: MultiTaskDeploymentSpec) -> dict[str, Any]:
    lora = spec.training.lora
    return {
        "rank": lora.rank,
        "alpha": lora.alpha,
        "dropout": lora.dropout,
        "target_modules": list(lora.target_modules),
    }


def _cgc(spec: MultiTaskDeploymentSpec) -> dict[str, Any]:
    if spec.training.method != "cgcLora":
        return {}
    cgc = spec.training.cgc_lora
    return {
        "cgc": {
            "common_experts": cgc.common_experts,
            "specific_experts": cgc.specific_experts,
            "expert_rank": cgc.expert_rank,
        }
    }


def _padding(spec: MultiTaskDeploymentSpec) -> dict[str, Any]:
    """TGI's kernel ranks, which the trainer pads served adapters to (nothing for vLLM)."""
    ranks = spec.padded_ranks()
    return {"served_ranks": ranks} if ranks else {}


def _stage_plan(plan: Plan, step: Step) -> StagePlan:
    for stage in plan.stages():
        if stage.hash == step.hash and stage.group == step.group:
            return stage
    raise KeyError(step.key)


def render_step(
    step: Step,
    spec: MultiTaskDeploymentSpec,
    plan: Plan,
    steps_by_key: dict[str, Step],
    where: Locations,
    deployment: str,
) -> AnyConfig:
    """The typed config `python -m mtd_trainer <verb> --config` runs from (the contract's
    models: a rendering the trainer would refuse fails here, in the operator)."""
    raw = _render(step, spec, plan, steps_by_key, where, deployment)
    return KINDS[raw["kind"]].model_validate(raw)


def _render(
    step: Step,
    spec: MultiTaskDeploymentSpec,
    plan: Plan,
    steps_by_key: dict[str, Step],
    where: Locations,
    deployment: str,
) -> dict[str, Any]:
    common = {"base_model": where.base_model}
    if step.role == "stage":
        stage = _stage_plan(plan, step)
        parent = steps_by_key[step.after[0]] if step.after else None
        return {
            "kind": "train",
            "run_name": f"{deployment}/{step.group}/{step.stage}",
            **common,
            "method": spec.training.method,
            "lora": _lora(spec),
            **_cgc(spec),
            "tasks": [_task_config(spec.task(name), where) for name in stage.tasks],
            "sampling": {
                "strategy": stage.sampling.strategy,
                "rates": stage.sampling.rates,
                "temperature": stage.sampling.temperature,
                "dataset_cap": stage.sampling.dataset_cap,
            },
            "hyperparameters": _hyperparameters(spec, stage.max_steps),
            "init_adapter": (
                where.artifact(continuation_path(parent, spec.training.method)) if parent else None
            ),
            "output_dir": where.artifact(step.output),
            "strategy": spec.training.resources.strategy,
            "quantization": spec.training.quantization,
            **_padding(spec),
        }
    if step.role == "baseline":
        assert step.task is not None
        return {
            "kind": "train",
            "run_name": f"{deployment}/baseline/{step.task}",
            **common,
            # A single task has nothing to share: its baseline is plain LoRA under cgcLora.
            "method": "lora" if spec.training.method == "cgcLora" else spec.training.method,
            "lora": _lora(spec),
            "tasks": [_task_config(spec.task(step.task), where)],
            "sampling": {"strategy": "instance", "rates": {step.task: 1.0}},
            "hyperparameters": _hyperparameters(spec, spec.training.baseline.max_steps),
            "init_adapter": None,
            "output_dir": where.artifact(step.output),
            # cgcLora's baseline is plain LoRA, which fsdp shards too.
            "strategy": spec.training.resources.strategy,
            "quantization": spec.training.quantization,
            **_padding(spec),
        }
    if step.role == "composition":
        return _render_compose(step, spec, plan, steps_by_key, where, deployment)
    trained = steps_by_key[step.after[0]]
    if step.role == "compositionEvaluation":
        assert step.composition is not None
        composition = spec.composition(step.composition)
        return {
            "kind": "evaluate",
            "run_name": f"{deployment}/eval/{composition.name}",
            **common,
            "adapter": where.artifact(trained.adapter_path),
            "tasks": [_task_config(composition, where)],
            "max_seq_length": spec.training.max_seq_length,
            "batch_size": spec.training.batch_size,
            "output_path": where.artifact(step.output),
        }
    if step.role == "evaluation":
        group = next(g for g in plan.groups if g.name == step.group)
        names = list(group.tasks)
    else:
        assert step.task is not None
        names = [step.task]
    tasks = [spec.task(name) for name in names if spec.task(name).data.eval is not None]
    # Under method full, "adapter" is the fine-tuned model folder (the trainer loads it whole).
    adapters: dict[str, Any] = {
        "adapter": where.artifact(trained_path(trained, spec.training.method))
    }
    if spec.training.method == "cgcLora" and trained.role == "stage":
        adapters = {
            "adapter": None,
            "task_adapters": {
                t.name: where.artifact(served_adapter_path(trained, t.name, "cgcLora"))
                for t in tasks
            },
        }
    return {
        "kind": "evaluate",
        "run_name": f"{deployment}/eval/{step.group or step.task}",
        **common,
        **adapters,
        "tasks": [_task_config(task, where) for task in tasks],
        "max_seq_length": spec.training.max_seq_length,
        "batch_size": spec.training.batch_size,
        "output_path": where.artifact(step.output),
    }


def _render_compose(
    step: Step,
    spec: MultiTaskDeploymentSpec,
    plan: Plan,
    steps_by_key: dict[str, Step],
    where: Locations,
    deployment: str,
) -> dict[str, Any]:
    """Merge the tasks' final adapters (each task's own export under CGC-LoRA)."""
    assert step.composition is not None
    composition = spec.composition(step.composition)
    method = spec.training.method
    final = {steps_by_key[key].group: steps_by_key[key] for key in step.after}
    adapters = [
        {
            "path": where.artifact(
                served_adapter_path(final[plan.group_of(task).name], task, method)
            ),
            "weight": weight,
        }
        for task, weight in zip(composition.tasks, composition.merge_weights, strict=True)
    ]
    config: dict[str, Any] = {
        "kind": "compose",
        "run_name": f"{deployment}/compose/{composition.name}",
        "base_model": where.base_model,
        "adapters": adapters,
        "merge": {"method": composition.merge, "density": composition.density},
        "output_dir": where.artifact(step.output),
        **_padding(spec),
    }
    calibration = composition.calibration
    if calibration is not None:
        config["calibration"] = {
            "train_path": where.data(calibration.data),
            "instruction": composition.instruction,
            "type": composition.type,
            "labels": list(composition.labels) if composition.labels else None,
            "rank": calibration.rank,
            "max_steps": calibration.max_steps,
            "learning_rate": calibration.learning_rate,
            "batch_size": spec.training.batch_size,
            "max_seq_length": spec.training.max_seq_length,
            "seed": spec.training.seed,
        }
    return config


def evaluable(step: Step, spec: MultiTaskDeploymentSpec, plan: Plan) -> bool:
    """An evaluation step with no eval data at all has nothing to run."""
    if step.verb != "evaluate":
        return True
    if step.role == "compositionEvaluation":
        assert step.composition is not None
        return spec.composition(step.composition).data.eval is not None
    if step.role == "evaluation":
        group = next(g for g in plan.groups if g.name == step.group)
        return any(spec.task(name).data.eval is not None for name in group.tasks)
    assert step.task is not None
    return spec.task(step.task).data.eval is not None
