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
from .confidence import PerExample, ratio_interval, verdict
from .planner import Plan, content_hash
from .render import evaluable
from .steps import (
    Step,
    baseline_adapter_name,
    pipeline_steps,
    served_adapter_path,
    trained_path,
)

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
    # Method full: the fine-tuned model served in place of the base (no adapters), and
    # the name requests use for it (the group's).
    model: str | None = None
    model_name: str | None = None


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


def _task_rows(result: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """An evaluation result's scored task rows (score, examples, per_example)."""
    if not result:
        return {}
    return {
        name: row
        for name, row in result.get("tasks", {}).items()
        if isinstance(row, dict) and row.get("score") is not None
    }


@dataclass(frozen=True)
class Judgement:
    """One task's (or composition's) qualification: the point ratio, its interval, the
    verdict. `qualified` is true only for the Qualified verdict."""

    score: float | None
    baseline: float | None
    ratio: float | None
    interval: tuple[float, float] | None
    examples: int | None
    verdict: str | None

    @property
    def qualified(self) -> bool:
        return self.verdict == "Qualified"


def judge(
    row: Mapping[str, Any] | None,
    baseline_row: Mapping[str, Any] | None,
    known_baseline: float | None,
    spec: MultiTaskDeploymentSpec,
) -> Judgement:
    """Score against baseline, with the paired-bootstrap interval of the ratio."""
    rules = spec.qualification
    score = float(row["score"]) if row else None
    baseline = known_baseline
    if baseline is None and baseline_row:
        baseline = float(baseline_row["score"])
    ratio = round(score / baseline, 6) if score is not None and baseline else None
    examples = int(row["examples"]) if row and row.get("examples") is not None else None
    interval = None
    items = PerExample.from_result(row) if row else None
    if ratio is not None and items is not None and rules.confidence > 0:
        if known_baseline is not None:
            interval = ratio_interval(
                items, baseline_score=known_baseline, confidence=rules.confidence
            )
        elif baseline_row is not None:
            paired = PerExample.from_result(baseline_row)
            if paired is not None:
                interval = ratio_interval(items, baseline=paired, confidence=rules.confidence)
    decided = verdict(
        ratio,
        interval,
        threshold=rules.threshold,
        confidence=rules.confidence,
        examples=examples,
        min_examples=rules.min_eval_examples,
    )
    return Judgement(score, baseline, ratio, interval, examples, decided)


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


def _judgement_fields(judgement: Judgement) -> dict[str, Any]:
    return {
        "score": judgement.score,
        "baseline": judgement.baseline,
        "ratio": judgement.ratio,
        "ratio_interval": list(judgement.interval) if judgement.interval else None,
        "eval_examples": judgement.examples,
        "verdict": judgement.verdict,
        "qualified": judgement.qualified,
    }


def _qualified_condition(
    judged: list[TaskStatus | CompositionStatus], spec: MultiTaskDeploymentSpec
) -> tuple[bool | None, str, str]:
    """(status, reason, message) of the Qualified condition, counting the verdicts."""
    rules = spec.qualification
    if not judged:
        return None, "NoBaselines", "no task has a baseline to compare with"
    by_verdict: dict[str | None, list[TaskStatus | CompositionStatus]] = {}
    for row in judged:
        by_verdict.setdefault(row.verdict, []).append(row)
    qualified = len(by_verdict.get("Qualified", []))
    rule = (
        f"ratio ≥ {rules.threshold:g}"
        if rules.confidence == 0
        else f"{rules.confidence:.0%} interval of the ratio ≥ {rules.threshold:g}"
    )
    if qualified == len(judged):
        return True, "AllQualified", f"{qualified}/{len(judged)} qualified ({rule})"

    def describe(row: TaskStatus | CompositionStatus) -> str:
        if row.ratio_interval:
            low, high = row.ratio_interval
            return f"{row.name} ({row.ratio:.3f}, [{low:.3f}, {high:.3f}])"
        if row.ratio is not None:
            return f"{row.name} ({row.ratio:.3f})"
        return row.name

    parts = [f"{qualified}/{len(judged)} qualified ({rule})"]
    for name, label in (("NotQualified", "not qualified"), ("Inconclusive", "inconclusive")):
        if by_verdict.get(name):
            rows = ", ".join(describe(row) for row in by_verdict[name])
            parts.append(f"{label}: {rows}")
    unscored = [row.name for row in by_verdict.get(None, [])]
    if unscored:
        parts.append(f"not scored: {', '.join(unscored)}")
    reason = (
        "Inconclusive"
        if not by_verdict.get("NotQualified") and not unscored
        else ("SomeUnqualified")
    )
    return False, reason, "; ".join(parts)


def _eval_sufficient_condition(
    judged: list[TaskStatus | CompositionStatus], spec: MultiTaskDeploymentSpec
) -> tuple[bool | None, str, str]:
    """A warning: which verdicts rest on fewer eval examples than minEvalExamples."""
    rules = spec.qualification
    if rules.confidence == 0:
        return True, "PointRule", "qualification.confidence is 0: verdicts use the point ratio"
    small = [
        f"{row.name} ({row.eval_examples})"
        for row in judged
        if row.eval_examples is not None and row.eval_examples < rules.min_eval_examples
    ]
    if small:
        return (
            False,
            "TooFewExamples",
            f"fewer eval examples than qualification.minEvalExamples "
            f"({rules.min_eval_examples}), so inconclusive: {', '.join(small)}",
        )
    return True, "EnoughExamples", f"every verdict rests on ≥ {rules.min_eval_examples} examples"


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
    group_scores: dict[str, dict[str, Any]] = {}
    for step in eval_steps:
        if step.role == "evaluation" and succeeded(step.key):
            group_scores.update(_task_rows(states[step.key].result))
    baseline_scores: dict[str, dict[str, Any]] = {}
    baseline_adapters: dict[str, Step] = {}
    composition_scores: dict[str, dict[str, Any]] = {}
    composed: dict[str, Step] = {}
    for step in steps:
        if not succeeded(step.key):
            continue
        if step.role == "baselineEvaluation":
            baseline_scores.update(_task_rows(states[step.key].result))
        elif step.role == "baseline":
            assert step.task is not None
            baseline_adapters[step.task] = step
        elif step.role == "compositionEvaluation":
            composition_scores.update(_task_rows(states[step.key].result))
        elif step.role == "composition":
            assert step.composition is not None
            composed[step.composition] = step
    final_stage = {
        g.name: by_key[f"train-{g.name}-{g.final_stage.name}-{g.final_stage.hash}"]
        for g in plan.groups
    }
    rules = spec.qualification
    pipeline_done = len(failed_steps) == 0 and all(succeeded(s.key) for s in steps)

    rows: list[TaskStatus] = []
    adapters: dict[str, str] = {}
    method = spec.training.method
    # (lora rank: a baseline's; the group's or CGC export's) as the engine loads them
    (_, baseline_rank), (_, group_rank) = spec.natural_ranks()[:2]
    for task in spec.tasks:
        group = plan.group_of(task.name)
        known = task.baseline.score if task.baseline is not None else None
        judged_task = judge(
            group_scores.get(task.name), baseline_scores.get(task.name), known, spec
        )
        to_baseline = not judged_task.qualified and (
            judged_task.verdict != "Inconclusive" or rules.serve_baseline_for_inconclusive
        )
        adapter, served_by = group.name, "multiTask"
        if (
            pipeline_done
            and to_baseline
            and rules.serve_baseline_for_unqualified
            and task.name in baseline_adapters
        ):
            adapter, served_by = baseline_adapter_name(task.name), "baseline"
            adapters[adapter] = trained_path(baseline_adapters[task.name], method)
        elif method == "cgcLora":
            adapter = task.name
            adapters[adapter] = served_adapter_path(final_stage[group.name], task.name, method)
        else:
            adapters[group.name] = trained_path(final_stage[group.name], method)
        rows.append(
            TaskStatus(
                name=task.name,
                group=group.name,
                metric=task.effective_metric,
                **_judgement_fields(judged_task),
                adapter=adapter if pipeline_done else None,
                served_by=served_by if pipeline_done else None,
                resource="high" if task.name in group.high_resource else "low",
                rank=(
                    spec.served_rank(baseline_rank if served_by == "baseline" else group_rank)
                    if pipeline_done and method != "full"
                    else None
                ),
            )
        )

    composition_rows: list[CompositionStatus] = []
    for composition in spec.compositions:
        judged_composition = judge(
            composition_scores.get(composition.name),
            None,
            composition.baseline.score if composition.baseline else None,
            spec,
        )
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
                **_judgement_fields(judged_composition),
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
        if method == "full":  # the spec allows one served model (one group, no baselines)
            (name, model), *_ = adapters.items()
            desired = DesiredServing(revision, {}, model=model, model_name=name)

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
    qualified_rows = [row for row in rows if row.qualified]
    if not pipeline_done:
        conditions.append(cond("Qualified", None, "Waiting", "qualification follows evaluation"))
        conditions.append(
            cond("EvalSufficient", None, "Waiting", "known once every evaluation is done")
        )
    else:
        conditions.append(cond("Qualified", *_qualified_condition(judged, spec)))
        conditions.append(cond("EvalSufficient", *_eval_sufficient_condition(judged, spec)))

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
            (
                c
                for c in conditions
                if c.status != "True" and c.type not in ("Qualified", "EvalSufficient")
            ),
            None,
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
        not_qualified_count=sum(row.verdict == "NotQualified" for row in rows),
        inconclusive_count=sum(row.verdict == "Inconclusive" for row in rows),
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
