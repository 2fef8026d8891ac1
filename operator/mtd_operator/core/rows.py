"""Status rows: one per task, composition and step, and the cost summary.

Each is a pure function of the spec, the plan and what was scored, so `reconcile` only
puts them together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from ..api.spec import MultiTaskDeploymentSpec, TaskSpec
from ..api.status import CompositionStatus, CostStatus, StageStatus, TaskStatus
from .observation import StepState
from .planner import Plan
from .scores import Judgement, Scores, judge
from .steps import Step, baseline_adapter_name

ServedBy = Literal["baseline", "multiTask"]


def served_by(
    task: TaskSpec, judgement: Judgement, spec: MultiTaskDeploymentSpec, scores: Scores
) -> ServedBy:
    """Who answers a task once the pipeline is done: its own baseline adapter when the
    group's is not qualified (inconclusive counts only if the spec says so) and the spec
    asks for it, else the multi-task adapter."""
    rules = spec.qualification
    to_baseline = not judgement.qualified and (
        judgement.verdict != "Inconclusive" or rules.serve_baseline_for_inconclusive
    )
    if (
        to_baseline
        and rules.serve_baseline_for_unqualified
        and task.name in scores.baseline_adapters
    ):
        return "baseline"
    return "multiTask"


def task_rows(
    spec: MultiTaskDeploymentSpec, plan: Plan, scores: Scores, pipeline_done: bool
) -> list[TaskStatus]:
    """Each task's judgement and, once the pipeline is done, the adapter that serves it
    (the baseline's, the task's CGC-LoRA export, or the group's) and its lora rank."""
    method = spec.training.method
    # (lora rank: a baseline's; the group's or CGC export's) as the engine loads them
    (_, baseline_rank), (_, group_rank) = spec.natural_ranks()[:2]
    rows = []
    for task in spec.tasks:
        group = plan.group_of(task.name)
        known = task.baseline.score if task.baseline is not None else None
        judgement = judge(scores.group.get(task.name), scores.baseline.get(task.name), known, spec)
        by = served_by(task, judgement, spec, scores) if pipeline_done else None
        if by == "baseline":
            adapter = baseline_adapter_name(task.name)
        else:
            adapter = task.name if method == "cgcLora" else group.name
        rows.append(
            TaskStatus(
                name=task.name,
                group=group.name,
                metric=task.effective_metric,
                **judgement.status_fields(),
                adapter=adapter if pipeline_done else None,
                served_by=by,
                resource="high" if task.name in group.high_resource else "low",
                rank=(
                    spec.served_rank(baseline_rank if by == "baseline" else group_rank)
                    if pipeline_done and method != "full"
                    else None
                ),
            )
        )
    return rows


def composition_rows(
    spec: MultiTaskDeploymentSpec,
    scores: Scores,
    states: Mapping[str, StepState],
    pipeline_done: bool,
) -> list[CompositionStatus]:
    """Each composition's judgement against its known baseline, and its merged rank."""
    rows = []
    for composition in spec.compositions:
        judgement = judge(
            scores.composition.get(composition.name),
            None,
            composition.baseline.score if composition.baseline else None,
            spec,
        )
        step = scores.composed.get(composition.name)
        result = states[step.key].result if step else None
        rows.append(
            CompositionStatus(
                name=composition.name,
                tasks=list(composition.tasks),
                merge=composition.merge,
                calibrated=composition.calibration is not None,
                metric=composition.effective_metric,
                **judgement.status_fields(),
                adapter=composition.name if pipeline_done else None,
                rank=(result or {}).get("rank"),
            )
        )
    return rows


def blocked_by_failure(
    step: Step, by_key: Mapping[str, Step], states: Mapping[str, StepState]
) -> bool:
    """A step some (transitive) dependency of which failed: it will not start."""
    return any(
        (dep in states and states[dep].phase == "Failed")
        or blocked_by_failure(by_key[dep], by_key, states)
        for dep in step.after
    )


def stage_rows(steps: list[Step], states: Mapping[str, StepState]) -> list[StageStatus]:
    """One row per step: its state, attempts and message (why a pending one waits)."""
    by_key = {step.key: step for step in steps}
    rows = []
    for step in steps:
        state = states.get(step.key)
        if state is not None:
            message = state.message
        else:
            blocked = blocked_by_failure(step, by_key, states)
            message = "blocked by a failed step" if blocked else ""
        rows.append(
            StageStatus(
                group=step.group or step.task or step.composition or "",
                stage=step.stage or step.role,
                hash=step.hash,
                state="Pending" if state is None else state.phase,
                message=message,
                attempts=state.attempts if state else 0,
            )
        )
    return rows


def cost_status(spec: MultiTaskDeploymentSpec, gpus_per_replica: int) -> CostStatus:
    """One serving Deployment for every task, against one per task without this operator."""
    deployments = 1 if spec.serving.replicas > 0 else 0
    n_tasks = len(spec.tasks)
    return CostStatus(
        serving_deployments=deployments,
        serving_gpus=deployments * spec.serving.replicas * gpus_per_replica,
        single_task_deployments=n_tasks,
        saving_percent=round(100.0 * (1 - deployments / n_tasks), 1) if n_tasks else 0.0,
    )
