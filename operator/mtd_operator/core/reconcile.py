"""One reconcile step: from the plan and what is observed, what to do next and the status.

Level-based and pure: the same observation always gives the same decision, so a driver
can call it after every event, after a restart, or twice in a row. Drivers observe
(processes and files locally; Jobs and Deployments on a cluster), call `reconcile`, and
apply `Decision.start` and `Decision.serving`.

`reconcile` puts named parts together, each a pure function of its own module: scores
(`scores`), status rows and cost (`rows`), desired serving (`desired`) and conditions
(`conditions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..api.spec import MultiTaskDeploymentSpec
from ..api.status import (
    CompositionStatus,
    Condition,
    MultiTaskDeploymentStatus,
    ServingStatus,
    TaskStatus,
)
from . import conditions
from .desired import (
    DesiredServing,
    adapter_digests,
    adapter_update,
    desired_serving,
    prompt_format,
    served_adapters,
)
from .observation import Phase, ServingObservation, StepState, succeeded
from .planner import Plan
from .render import evaluable
from .rows import composition_rows, cost_status, stage_rows, task_rows
from .scores import Judgement, collect_scores, judge
from .steps import Step, final_stage_steps, pipeline_steps

__all__ = [
    "Decision",
    "DesiredServing",
    "Judgement",
    "Phase",
    "ServingObservation",
    "StepState",
    "adapter_update",
    "judge",
    "reconcile",
]


@dataclass
class Decision:
    start: list[Step]
    serving: DesiredServing | None
    status: MultiTaskDeploymentStatus
    steps: list[Step] = field(default_factory=list)
    done: bool = False
    failed: bool = False


def effective_states(
    spec: MultiTaskDeploymentSpec,
    plan: Plan,
    steps: list[Step],
    observed: Mapping[str, StepState],
) -> dict[str, StepState]:
    """What was observed, plus the evaluations that have no eval data anywhere: they
    have nothing to run, so they are done, with no scores."""
    states = dict(observed)
    for step in steps:
        if not evaluable(step, spec, plan):
            states[step.key] = StepState("Succeeded", "no eval data", result={"tasks": {}})
    return states


def startable(steps: list[Step], states: Mapping[str, StepState]) -> list[Step]:
    """Steps not yet seen whose dependencies all succeeded."""
    return [
        step
        for step in steps
        if step.key not in states and all(succeeded(states, dep) for dep in step.after)
    ]


def pipeline_checks(
    spec: MultiTaskDeploymentSpec,
    plan: Plan,
    steps: list[Step],
    states: Mapping[str, StepState],
    judged: list[TaskStatus | CompositionStatus],
    pipeline_done: bool,
) -> list[conditions.Check]:
    """Planned, Trained, Evaluated, Qualified and EvalSufficient."""
    train = [s for s in steps if s.verb in ("train", "compose")]
    evaluate = [s for s in steps if s.verb == "evaluate"]
    return [
        conditions.planned(plan, steps),
        conditions.progress("Trained", train, states),
        conditions.progress("Evaluated", evaluate, states),
        *conditions.verdicts(judged, spec, pipeline_done),
    ]


def _serving_status(
    spec: MultiTaskDeploymentSpec, desired: DesiredServing, serving: ServingObservation | None
) -> ServingStatus:
    current = serving is not None and serving.revision == desired.revision
    return ServingStatus(
        engine=spec.serving.engine,
        endpoint=serving.endpoint if serving else None,
        adapters=list(desired.adapters),
        revision=desired.revision,
        ready_replicas=serving.ready_replicas if serving and current else 0,
        adapter_update=adapter_update(spec),
    )


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
    """The decision for one observation: its parts in order (docs/architecture.md#core)."""
    steps = pipeline_steps(plan)
    states = effective_states(spec, plan, steps, observed)
    # Training failures first, then evaluations': the order Ready reports them in.
    failed = [
        *conditions.failed_steps([s for s in steps if s.verb != "evaluate"], states),
        *conditions.failed_steps([s for s in steps if s.verb == "evaluate"], states),
    ]
    pipeline_done = not failed and all(succeeded(states, s.key) for s in steps)

    scores = collect_scores(steps, states)
    rows = task_rows(spec, plan, scores, pipeline_done)
    compositions = composition_rows(spec, scores, states, pipeline_done)
    desired = None
    if pipeline_done:
        adapters = served_adapters(spec, plan, rows, scores, final_stage_steps(plan, steps))
        desired = desired_serving(
            spec,
            adapters,
            adapter_digests(adapters, steps, states),
            prompt_format(steps, states),
        )

    judged = [row for row in [*rows, *compositions] if row.baseline is not None]
    checks = pipeline_checks(spec, plan, steps, states, judged, pipeline_done)
    revision = desired.revision if desired else None
    checks.append(
        conditions.serving_check(spec, revision, len(desired.adapters) if desired else 0, serving)
    )
    ready = pipeline_done and (
        conditions.serving_ready(revision, serving) or spec.serving.replicas == 0
    )
    qualified_count = sum(row.qualified for row in rows)
    failure = conditions.failure_message(failed, states) if failed else None
    checks.append(conditions.ready(checks, failure, ready, qualified_count, len(rows)))

    status = MultiTaskDeploymentStatus(
        observed_generation=generation,
        plan_hash=plan.hash,
        conditions=conditions.carry(checks, previous, generation, now),
        tasks=rows,
        compositions=compositions,
        stages=stage_rows(steps, states),
        serving=_serving_status(spec, desired, serving) if desired else None,
        cost=cost_status(spec, gpus_per_replica),
        task_count=len(spec.tasks),
        qualified_count=qualified_count,
        not_qualified_count=sum(row.verdict == "NotQualified" for row in rows),
        inconclusive_count=sum(row.verdict == "Inconclusive" for row in rows),
        qualified=f"{qualified_count}/{len(spec.tasks)}",
    )
    return Decision(
        start=startable(steps, states),
        serving=desired,
        status=status,
        steps=steps,
        done=ready,
        failed=bool(failed),
    )
