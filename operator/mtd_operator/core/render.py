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


@dataclass(frozen=True)
class _Context:
    """What every step's rendering reads besides the step itself."""

    spec: MultiTaskDeploymentSpec
    plan: Plan
    steps_by_key: dict[str, Step]
    where: Locations
    deployment: str


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
    raw = _render(step, _Context(spec, plan, steps_by_key, where, deployment))
    return KINDS[raw["kind"]].model_validate(raw)


def _render(step: Step, ctx: _Context) -> dict[str, Any]:
    renderers = {
        "stage": _render_stage,
        "baseline": _render_baseline,
        "composition": _render_compose,
        "evaluation": _render_evaluate,
        "baselineEvaluation": _render_evaluate,
        "compositionEvaluation": _render_evaluate,
    }
    return renderers[step.role](step, ctx)


def _render_stage(step: Step, ctx: _Context) -> dict[str, Any]:
    """A group's stage, continuing the previous stage's adapter (or experts and gates)."""
    stage = _stage_plan(ctx.plan, step)
    parent = ctx.steps_by_key[step.after[0]] if step.after else None
    return {
        "kind": "train",
        "run_name": f"{ctx.deployment}/{step.group}/{step.stage}",
        "base_model": ctx.where.base_model,
        "method": ctx.spec.training.method,
        "lora": _lora(ctx.spec),
        **_cgc(ctx.spec),
        "tasks": [_task_config(ctx.spec.task(name), ctx.where) for name in stage.tasks],
        "sampling": {
            "strategy": stage.sampling.strategy,
            "rates": stage.sampling.rates,
            "temperature": stage.sampling.temperature,
            "dataset_cap": stage.sampling.dataset_cap,
        },
        "hyperparameters": _hyperparameters(ctx.spec, stage.max_steps),
        "init_adapter": (
            ctx.where.artifact(continuation_path(parent, ctx.spec.training.method))
            if parent
            else None
        ),
        "output_dir": ctx.where.artifact(step.output),
        "strategy": ctx.spec.training.resources.strategy,
        "quantization": ctx.spec.training.quantization,
        **_padding(ctx.spec),
    }


def _render_baseline(step: Step, ctx: _Context) -> dict[str, Any]:
    assert step.task is not None
    return {
        "kind": "train",
        "run_name": f"{ctx.deployment}/baseline/{step.task}",
        "base_model": ctx.where.base_model,
        # A single task has nothing to share: its baseline is plain LoRA under cgcLora.
        "method": "lora" if ctx.spec.training.method == "cgcLora" else ctx.spec.training.method,
        "lora": _lora(ctx.spec),
        "tasks": [_task_config(ctx.spec.task(step.task), ctx.where)],
        "sampling": {"strategy": "instance", "rates": {step.task: 1.0}},
        "hyperparameters": _hyperparameters(ctx.spec, ctx.spec.training.baseline.max_steps),
        "init_adapter": None,
        "output_dir": ctx.where.artifact(step.output),
        # cgcLora's baseline is plain LoRA, which fsdp shards too.
        "strategy": ctx.spec.training.resources.strategy,
        "quantization": ctx.spec.training.quantization,
        **_padding(ctx.spec),
    }


def _evaluated(
    step: Step, spec: MultiTaskDeploymentSpec, plan: Plan
) -> list[TaskSpec | CompositionSpec]:
    """What an evaluation scores: a composition, or the tasks (with eval data) of a
    group or a baseline."""
    if step.role == "compositionEvaluation":
        assert step.composition is not None
        return [spec.composition(step.composition)]
    if step.role == "evaluation":
        names = list(next(g for g in plan.groups if g.name == step.group).tasks)
    else:
        assert step.task is not None
        names = [step.task]
    return [spec.task(name) for name in names if spec.task(name).data.eval is not None]


def _render_evaluate(step: Step, ctx: _Context) -> dict[str, Any]:
    """Score what the step before trained: a group's, a baseline's or a composition's
    adapter (under method full, the fine-tuned model folder; under CGC-LoRA, each task's
    own export)."""
    trained = ctx.steps_by_key[step.after[0]]
    tasks = _evaluated(step, ctx.spec, ctx.plan)
    adapters: dict[str, Any] = {
        "adapter": ctx.where.artifact(trained_path(trained, ctx.spec.training.method))
    }
    if ctx.spec.training.method == "cgcLora" and trained.role == "stage":
        adapters = {
            "adapter": None,
            "task_adapters": {
                t.name: ctx.where.artifact(served_adapter_path(trained, t.name, "cgcLora"))
                for t in tasks
            },
        }
    return {
        "kind": "evaluate",
        "run_name": f"{ctx.deployment}/eval/{step.group or step.task or step.composition}",
        "base_model": ctx.where.base_model,
        **adapters,
        "tasks": [_task_config(task, ctx.where) for task in tasks],
        "max_seq_length": ctx.spec.training.max_seq_length,
        "batch_size": ctx.spec.training.batch_size,
        "output_path": ctx.where.artifact(step.output),
    }


def _render_compose(step: Step, ctx: _Context) -> dict[str, Any]:
    """Merge the tasks' final adapters (each task's own export under CGC-LoRA)."""
    assert step.composition is not None
    composition = ctx.spec.composition(step.composition)
    method = ctx.spec.training.method
    final = {ctx.steps_by_key[key].group: ctx.steps_by_key[key] for key in step.after}
    adapters = [
        {
            "path": ctx.where.artifact(
                served_adapter_path(final[ctx.plan.group_of(task).name], task, method)
            ),
            "weight": weight,
        }
        for task, weight in zip(composition.tasks, composition.merge_weights, strict=True)
    ]
    config: dict[str, Any] = {
        "kind": "compose",
        "run_name": f"{ctx.deployment}/compose/{composition.name}",
        "base_model": ctx.where.base_model,
        "adapters": adapters,
        "merge": {"method": composition.merge, "density": composition.density},
        "output_dir": ctx.where.artifact(step.output),
        **_padding(ctx.spec),
    }
    calibration = composition.calibration
    if calibration is not None:
        config["calibration"] = {
            "train_path": ctx.where.data(calibration.data),
            "instruction": composition.instruction,
            "type": composition.type,
            "labels": list(composition.labels) if composition.labels else None,
            "rank": calibration.rank,
            "max_steps": calibration.max_steps,
            "learning_rate": calibration.learning_rate,
            "batch_size": ctx.spec.training.batch_size,
            "max_seq_length": ctx.spec.training.max_seq_length,
            "seed": ctx.spec.training.seed,
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
