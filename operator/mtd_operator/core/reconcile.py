"""One reconcile step: from the plan and what is observed, what to do next and the status.

Level-based and pure: the same observation always gives the same decision, so a driver
can call it after every event, after a restart, or twice in a row. Drivers observe
(processes and files locally; Jobs and Deployments on a cluster), call `reconcile`, and
apply `Decision.start` and `Decision.serving`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api.spec import MultiTaskDeploymentSpec
from ..api.status import (
    CompositionStatus,
    Condition,
    CostStatus,
    MultiTaskDeploymentStatus,
    ServingStatus,
    StageStatus,
    TaskStatus,
)
from .planner import Plan, content_hash
from .render import evaluable
from .steps import Step, baseline_adapter_name, pipeline_steps, served_adapter_path

Phase = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class StepState:
    """What a driver saw of one step (a Job, or a local process and its files)."""

    phase: Phase
    message: str = ""
    attempts: int = 0
    result: dict[str, Any] | None = None  # the trainer's result (train) or scores (evaluate)


@dataclass(frozen=True)
class ServingObservation:
    revision: str | None
    ready: bool
    ready_replicas: int = 0
    message: str = ""
    endpoint: str | None = None


@dataclass(frozen=True)
class DesiredServing:
    """The adapter set to serve: name → adapter folder, relative to the deployment root
    (content-addressed, so the revision changes whenever an adapter does)."""

    revision: str
    adapters: dict[str, str]


@dataclass
class Decision:
    start: list[Step]
    serving: DesiredServing | None
    status: MultiTaskDeploymentStatus
    steps: list[Step] = field(default_factory=list)
    done: bool = False
    failed: bool = False


def adapter_update(spec: MultiTaskDeploymentSpec) -> Literal["Surge", "OneAtATime", "RuntimeLoad"]:
    """How a new adapter set reaches the pods: vLLM loads it at runtime; TGI rolls out."""
    if spec.serving.engine == "vllm":
        return "RuntimeLoad"
    return "OneAtATime" if spec.serving.rollout == "oneAtATime" else "Surge"


def _task_scores(result: dict[str, Any] | None) -> dict[str, float]:
    if not result:
        return {}
    return {
        name: float(row["score"])
        for name, row in result.get("tasks", {}).items()
        if row.get("score") is not None
    }


def _condition(
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    previous: Mapping[str, Condition],
    generation: int | None,
    now: str,
) -> Condition:
    value = "Unknown" if status is None else ("True" if status else "False")
    before = previous.get(type_)
    flipped = before is None or before.status != value
    return Condition(
        type=type_,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=now if flipped else before.last_transition_time,
        observed_generation=generation,
    )


def _progress(steps: list[Step], states: Mapping[str, StepState]) -> tuple[int, list[Step]]:
    done = sum(1 for s in steps if states.get(s.key, None) and states[s.key].phase == "Succeeded")
    failed = [s for s in steps if s.key in states and states[s.key].phase == "Failed"]
    return done, failed


def reconcile(
    spec: MultiTaskDeploymentSpec,
    plan: Plan,
    observed: Mapping[str, StepState],
    serving: ServingObservation | None,
    *,
    previous: list[Condition] | None = None,
    generation: int | None = None,
    now: str,
    gpus_per_replica: int = 0,
) -> Decision:
    steps = pipeline_steps(plan)
    by_key = {step.key: step for step in steps}
    states: dict[str, StepState] = dict(observed)
    # An evaluation with no eval data anywhere has nothing to run: it is done, with no scores.
    for step in steps:
        if not evaluable(step, spec, plan):
            states[step.key] = StepState("Succeeded", "no eval data", result={"tasks": {}})

    def succeeded(key: str) -> bool:
        return key in states and states[key].phase == "Succeeded"

    def blocked(step: Step) -> bool:
        return any(
            (dep in states and states[dep].phase == "Failed") or blocked(by_key[dep])
            for dep in step.after
        )

    start = [
        step
        for step in steps
        if step.key not in states and all(succeeded(dep) for dep in step.after)
    ]

    train_steps = [s for s in steps if s.verb in ("train", "compose")]
    eval_steps = [s for s in steps if s.verb == "evaluate"]
    trained, train_failed = _progress(train_steps, states)
    evaluated, eval_failed = _progress(eval_steps, states)
    failed_steps = train_failed + eval_failed

    # Scores: the group's adapter on each task; baselines given or measured.
    group_scores: dict[str, float] = {}
    for step in eval_steps:
        if step.role == "evaluation" and succeeded(step.key):
            group_scores.update(_task_scores(states[step.key].result))
    baseline_scores: dict[str, float] = {}
    baseline_adapters: dict[str, Step] = {}
    composition_scores: dict[str, float] = {}
    composed: dict[str, Step] = {}
    for step in steps:
        if not succeeded(step.key):
            continue
        if step.role == "baselineEvaluation":
            baseline_scores.update(_task_scores(states[step.key].result))
        elif step.role == "baseline":
            assert step.task is not None
            baseline_adapters[step.task] = step
        elif step.role == "compositionEvaluation":
            composition_scores.update(_task_scores(states[step.key].result))
        elif step.role == "composition":
            assert step.composition is not None
            composed[step.composition] = step
    for task in spec.tasks:
        if task.baseline is not None and task.baseline.score is not None:
            baseline_scores[task.name] = task.baseline.score

    final_stage = {
        g.name: by_key[f"train-{g.name}-{g.final_stage.name}-{g.final_stage.hash}"]
        for g in plan.groups
    }
    threshold = spec.qualification.threshold
    pipeline_done = len(failed_steps) == 0 and all(succeeded(s.key) for s in steps)

    rows: list[TaskStatus] = []
    adapters: dict[str, str] = {}
    method = spec.training.method
    for task in spec.tasks:
        group = plan.group_of(task.name)
        score = group_scores.get(task.name)
        baseline = baseline_scores.get(task.name)
        ratio = round(score / baseline, 6) if score is not None and baseline else None
        qualified = ratio is not None and ratio >= threshold
        adapter, served_by = group.name, "multiTask"
        if (
            pipeline_done
            and not qualified
            and spec.qualification.serve_baseline_for_unqualified
            and task.name in baseline_adapters
        ):
            adapter, served_by = baseline_adapter_name(task.name), "baseline"
            adapters[adapter] = baseline_adapters[task.name].adapter_path
        elif method == "cgcLora":
            adapter = task.name
            adapters[adapter] = served_adapter_path(final_stage[group.name], task.name, method)
        else:
            adapters[group.name] = final_stage[group.name].adapter_path
        rows.append(
            TaskStatus(
                name=task.name,
                group=group.name,
                metric=task.effective_metric,
                score=score,
                baseline=baseline,
                ratio=ratio,
                qualified=qualified,
                adapter=adapter if pipeline_done else None,
                served_by=served_by if pipeline_done else None,
                resource="high" if task.name in group.high_resource else "low",
            )
        )

    composition_rows: list[CompositionStatus] = []
    for composition in spec.compositions:
        score = composition_scores.get(composition.name)
        baseline = composition.baseline.score if composition.baseline else None
        ratio = round(score / baseline, 6) if score is not None and baseline else None
        compose_step = composed.get(composition.name)
        result = states[compose_step.key].result if compose_step else None
        if pipeline_done and compose_step is not None:
            adapters[composition.name] = compose_step.adapter_path
        composition_rows.append(
            CompositionStatus(
                name=composition.name,
                tasks=list(composition.tasks),
                merge=composition.merge,
                calibrated=composition.calibration is not None,
                metric=composition.effective_metric,
                score=score,
                baseline=baseline,
                ratio=ratio,
                qualified=ratio is not None and ratio >= threshold,
                adapter=composition.name if pipeline_done else None,
                rank=(result or {}).get("rank"),
            )
        )

    desired: DesiredServing | None = None
    if pipeline_done:
        revision = content_hash(
            {
                "engine": spec.serving.engine,
                "base": spec.base_model.uri,
                "adapters": dict(sorted(adapters.items())),
            }
        )
        desired = DesiredServing(revision=revision, adapters=dict(sorted(adapters.items())))

    prev = {c.type: c for c in previous or []}

    def cond(type_: str, status: bool | None, reason: str, message: str) -> Condition:
        return _condition(type_, status, reason, message, prev, generation, now)

    def failure_message(failed: list[Step]) -> str:
        return "; ".join(f"{s.key}: {states[s.key].message or 'failed'}" for s in failed)

    conditions = [
        cond(
            "Planned",
            True,
            "Planned",
            f"{len(plan.groups)} groups, {len(steps)} steps, plan {plan.hash}",
        )
    ]
    if train_failed:
        conditions.append(cond("Trained", False, "TrainingFailed", failure_message(train_failed)))
    elif trained == len(train_steps):
        conditions.append(
            cond("Trained", True, "Trained", f"{trained}/{len(train_steps)} training runs done")
        )
    else:
        conditions.append(
            cond("Trained", False, "Training", f"{trained}/{len(train_steps)} training runs done")
        )
    if eval_failed:
        conditions.append(
            cond("Evaluated", False, "EvaluationFailed", failure_message(eval_failed))
        )
    elif evaluated == len(eval_steps):
        conditions.append(
            cond("Evaluated", True, "Evaluated", f"{evaluated}/{len(eval_steps)} evaluations done")
        )
    else:
        conditions.append(
            cond("Evaluated", False, "Waiting", f"{evaluated}/{len(eval_steps)} evaluations done")
        )

    judged: list[TaskStatus | CompositionStatus] = [
        row for row in [*rows, *composition_rows] if row.baseline is not None
    ]
    qualified_judged = [row for row in judged if row.qualified]
    qualified_rows = [row for row in rows if row.qualified]
    if not pipeline_done:
        conditions.append(cond("Qualified", None, "Waiting", "qualification follows evaluation"))
    elif not judged:
        conditions.append(
            cond("Qualified", None, "NoBaselines", "no task has a baseline to compare with")
        )
    elif len(qualified_judged) == len(judged):
        conditions.append(
            cond(
                "Qualified",
                True,
                "AllQualified",
                f"{len(qualified_judged)}/{len(judged)} tasks reach {threshold:g} of their "
                "baseline",
            )
        )
    else:
        unqualified = ", ".join(
            f"{r.name} ({r.ratio:.3f})" if r.ratio is not None else r.name
            for r in judged
            if not r.qualified
        )
        conditions.append(
            cond(
                "Qualified",
                False,
                "SomeUnqualified",
                f"below {threshold:g} of baseline: {unqualified}",
            )
        )

    serving_ready = (
        desired is not None
        and serving is not None
        and serving.revision == desired.revision
        and serving.ready
    )
    if spec.serving.replicas == 0 and desired is not None:
        conditions.append(cond("Serving", False, "ScaledToZero", "serving.replicas is 0"))
    elif serving_ready:
        conditions.append(
            cond(
                "Serving",
                True,
                "Serving",
                f"revision {desired.revision} serves {len(desired.adapters)} adapters",
            )
        )
    elif desired is None:
        conditions.append(
            cond("Serving", False, "Waiting", "serving starts when every task is evaluated")
        )
    else:
        detail = (
            serving.message
            if serving is not None and serving.message
            else "waiting for the new revision to become ready"
        )
        conditions.append(
            cond("Serving", False, "RollingOut", f"revision {desired.revision}: {detail}")
        )

    failed = bool(failed_steps)
    ready = pipeline_done and (serving_ready or spec.serving.replicas == 0)
    if failed:
        conditions.append(cond("Ready", False, "Failed", failure_message(failed_steps)))
    elif ready:
        conditions.append(
            cond("Ready", True, "Ready", f"{len(qualified_rows)}/{len(rows)} tasks qualified")
        )
    else:
        pending = next(
            (c for c in conditions if c.status != "True" and c.type != "Qualified"), None
        )
        conditions.append(
            cond(
                "Ready",
                False,
                pending.reason if pending else "Waiting",
                pending.message if pending else "",
            )
        )

    stage_rows = []
    for step in steps:
        state = states.get(step.key)
        phase = "Pending" if state is None else state.phase
        stage_rows.append(
            StageStatus(
                group=step.group or step.task or step.composition or "",
                stage=step.stage or step.role,
                hash=step.hash,
                state=phase,
                message=state.message
                if state
                else ("blocked by a failed step" if blocked(step) else ""),
                attempts=state.attempts if state else 0,
            )
        )

    n_tasks = len(spec.tasks)
    serving_status = None
    if desired is not None:
        serving_status = ServingStatus(
            engine=spec.serving.engine,
            endpoint=serving.endpoint if serving else None,
            adapters=list(desired.adapters),
            revision=desired.revision,
            ready_replicas=serving.ready_replicas
            if serving and serving.revision == desired.revision
            else 0,
            adapter_update=adapter_update(spec),
        )
    deployments = 1 if spec.serving.replicas > 0 else 0
    status = MultiTaskDeploymentStatus(
        observed_generation=generation,
        plan_hash=plan.hash,
        conditions=conditions,
        tasks=rows,
        compositions=composition_rows,
        stages=stage_rows,
        serving=serving_status,
        cost=CostStatus(
            serving_deployments=deployments,
            serving_gpus=deployments * spec.serving.replicas * gpus_per_replica,
            single_task_deployments=n_tasks,
            saving_percent=round(100.0 * (1 - deployments / n_tasks), 1) if n_tasks else 0.0,
        ),
        task_count=n_tasks,
        qualified_count=len(qualified_rows),
        qualified=f"{len(qualified_rows)}/{n_tasks}",
    )
    return Decision(
        start=start,
        serving=desired,
        status=status,
        steps=steps,
        done=ready,
        failed=failed,
    )
