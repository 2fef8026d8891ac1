"""Conditions: each one a pure check, then one carry of the transition times.

A check says (type, status, reason, message); `carry` turns checks into Conditions,
keeping a condition's lastTransitionTime while its status stays. Both drivers get their
conditions here, including the statuses of a resource that cannot be planned yet
(`Blocked`: an invalid spec, invalid data, data still being profiled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ..api.spec import MultiTaskDeploymentSpec
from ..api.status import CompositionStatus, Condition, MultiTaskDeploymentStatus, TaskStatus
from .observation import ServingObservation, StepState
from .planner import Plan
from .steps import Step


@dataclass(frozen=True)
class Check:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str


def carry(
    checks: Sequence[Check],
    previous: Sequence[Condition] | None,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """Conditions from checks; a condition whose status did not change keeps its time."""
    before = {c.type: c for c in previous or []}
    out = []
    for check in checks:
        value = "Unknown" if check.status is None else ("True" if check.status else "False")
        old = before.get(check.type)
        kept = old is not None and old.status == value and old.last_transition_time
        out.append(
            Condition(
                type=check.type,
                status=value,
                reason=check.reason,
                message=check.message,
                last_transition_time=old.last_transition_time if kept else now,
                observed_generation=generation,
            )
        )
    return out


# -- before a plan exists --------------------------------------------------------------


@dataclass(frozen=True)
class Blocked:
    """Why a resource has no plan yet: Planned and Ready say so, with the same reason."""

    reason: Literal["InvalidSpec", "InvalidData", "Profiling", "PodNotRunning"]
    message: str

    @classmethod
    def invalid_spec(cls, problems: Sequence[object]) -> Blocked:
        return cls("InvalidSpec", "; ".join(map(str, problems)))

    @classmethod
    def invalid_data(cls, message: str) -> Blocked:
        return cls("InvalidData", message)

    @classmethod
    def profiling(cls, problem: str = "") -> Blocked:
        """Profiling; with `problem`, its pod cannot start (kube/pod_problems.py)."""
        if problem:
            return cls("PodNotRunning", f"profiling the data files: {problem}")
        return cls("Profiling", "profiling the data files")

    def checks(self) -> list[Check]:
        # Profiling, even when its pod cannot start: whether it plans is not known yet.
        planned = None if self.reason in ("Profiling", "PodNotRunning") else False
        return [
            Check("Planned", planned, self.reason, self.message),
            Check("Ready", False, self.reason, self.message),
        ]

    def status(
        self, previous: Sequence[Condition] | None, generation: int | None, now: str
    ) -> MultiTaskDeploymentStatus:
        return MultiTaskDeploymentStatus(
            observed_generation=generation,
            conditions=carry(self.checks(), previous, generation, now),
        )


# -- the pipeline --------------------------------------------------------------------------


def planned(plan: Plan, steps: list[Step]) -> Check:
    return Check(
        "Planned",
        True,
        "Planned",
        f"{len(plan.groups)} groups, {len(steps)} steps, plan {plan.hash}",
    )


def failure_message(failed: list[Step], states: Mapping[str, StepState]) -> str:
    return "; ".join(f"{s.key}: {states[s.key].message or 'failed'}" for s in failed)


def failed_steps(steps: list[Step], states: Mapping[str, StepState]) -> list[Step]:
    return [s for s in steps if s.key in states and states[s.key].phase == "Failed"]


def stuck_steps(steps: list[Step], states: Mapping[str, StepState]) -> list[Step]:
    """Running steps whose pods cannot start (the driver's message says why)."""
    return [
        s
        for s in steps
        if s.key in states and states[s.key].phase == "Running" and states[s.key].message
    ]


def progress(
    type_: Literal["Trained", "Evaluated"], steps: list[Step], states: Mapping[str, StepState]
) -> Check:
    """Trained (training and compose steps) or Evaluated (evaluations): failed, done,
    or how many of them are done."""
    failing, working, noun = (
        ("TrainingFailed", "Training", "training runs")
        if type_ == "Trained"
        else ("EvaluationFailed", "Waiting", "evaluations")
    )
    failed = failed_steps(steps, states)
    if failed:
        return Check(type_, False, failing, failure_message(failed, states))
    stuck = stuck_steps(steps, states)
    if stuck:
        return Check(type_, False, "PodNotRunning", failure_message(stuck, states))
    done = sum(1 for s in steps if s.key in states and states[s.key].phase == "Succeeded")
    counted = f"{done}/{len(steps)} {noun} done"
    if done == len(steps):
        return Check(type_, True, type_, counted)
    return Check(type_, False, working, counted)


def qualified(judged: list[TaskStatus | CompositionStatus], spec: MultiTaskDeploymentSpec) -> Check:
    """The Qualified condition, counting the verdicts of the rows that have a baseline."""
    rules = spec.qualification
    if not judged:
        return Check("Qualified", None, "NoBaselines", "no task has a baseline to compare with")
    by_verdict: dict[str | None, list[TaskStatus | CompositionStatus]] = {}
    for row in judged:
        by_verdict.setdefault(row.verdict, []).append(row)
    count = len(by_verdict.get("Qualified", []))
    rule = (
        f"ratio ≥ {rules.threshold:g}"
        if rules.confidence == 0
        else f"{rules.confidence:.0%} interval of the ratio ≥ {rules.threshold:g}"
    )
    if count == len(judged):
        return Check("Qualified", True, "AllQualified", f"{count}/{len(judged)} qualified ({rule})")
    parts = [f"{count}/{len(judged)} qualified ({rule})"]
    for name, label in (("NotQualified", "not qualified"), ("Inconclusive", "inconclusive")):
        if by_verdict.get(name):
            parts.append(f"{label}: {', '.join(_describe(row) for row in by_verdict[name])}")
    unscored = [row.name for row in by_verdict.get(None, [])]
    if unscored:
        parts.append(f"not scored: {', '.join(unscored)}")
    only_inconclusive = not by_verdict.get("NotQualified") and not unscored
    reason = "Inconclusive" if only_inconclusive else "SomeUnqualified"
    return Check("Qualified", False, reason, "; ".join(parts))


def _describe(row: TaskStatus | CompositionStatus) -> str:
    if row.ratio_interval:
        low, high = row.ratio_interval
        return f"{row.name} ({row.ratio:.3f}, [{low:.3f}, {high:.3f}])"
    if row.ratio is not None:
        return f"{row.name} ({row.ratio:.3f})"
    return row.name


def eval_sufficient(
    judged: list[TaskStatus | CompositionStatus], spec: MultiTaskDeploymentSpec
) -> Check:
    """A warning: which verdicts rest on fewer eval examples than minEvalExamples."""
    rules = spec.qualification
    if rules.confidence == 0:
        return Check(
            "EvalSufficient",
            True,
            "PointRule",
            "qualification.confidence is 0: verdicts use the point ratio",
        )
    small = [
        f"{row.name} ({row.eval_examples})"
        for row in judged
        if row.eval_examples is not None and row.eval_examples < rules.min_eval_examples
    ]
    if small:
        return Check(
            "EvalSufficient",
            False,
            "TooFewExamples",
            f"fewer eval examples than qualification.minEvalExamples "
            f"({rules.min_eval_examples}), so inconclusive: {', '.join(small)}",
        )
    return Check(
        "EvalSufficient",
        True,
        "EnoughExamples",
        f"every verdict rests on ≥ {rules.min_eval_examples} examples",
    )


def verdicts(
    judged: list[TaskStatus | CompositionStatus],
    spec: MultiTaskDeploymentSpec,
    pipeline_done: bool,
) -> list[Check]:
    """Qualified and EvalSufficient: Unknown until every evaluation is done."""
    if not pipeline_done:
        return [
            Check("Qualified", None, "Waiting", "qualification follows evaluation"),
            Check("EvalSufficient", None, "Waiting", "known once every evaluation is done"),
        ]
    return [qualified(judged, spec), eval_sufficient(judged, spec)]


def serving_check(
    spec: MultiTaskDeploymentSpec,
    revision: str | None,
    adapters: int,
    serving: ServingObservation | None,
) -> Check:
    """Serving: the desired revision (None: nothing to serve yet) against what serves."""
    if spec.serving.replicas == 0 and revision is not None:
        return Check("Serving", False, "ScaledToZero", "serving.replicas is 0")
    if serving is not None and serving.stopped:
        return Check("Serving", False, "Stopped", serving.message or "the server stopped")
    if serving_ready(revision, serving):
        return Check("Serving", True, "Serving", f"revision {revision} serves {adapters} adapters")
    if revision is None:
        return Check("Serving", False, "Waiting", "serving starts when every task is evaluated")
    detail = (
        serving.message
        if serving is not None and serving.message
        else "waiting for the new revision to become ready"
    )
    return Check("Serving", False, "RollingOut", f"revision {revision}: {detail}")


def serving_ready(revision: str | None, serving: ServingObservation | None) -> bool:
    return (
        revision is not None
        and serving is not None
        and serving.revision == revision
        and serving.ready
    )


def ready(
    earlier: list[Check],
    failure: str | None,
    done: bool,
    qualified_count: int,
    task_count: int,
) -> Check:
    """Ready: failed (with `failure`), done, or the first condition still pending."""
    if failure is not None:
        return Check("Ready", False, "Failed", failure)
    if done:
        return Check("Ready", True, "Ready", f"{qualified_count}/{task_count} tasks qualified")
    pending = next(
        (
            c
            for c in earlier
            if c.status is not True and c.type not in ("Qualified", "EvalSufficient")
        ),
        None,
    )
    return Check(
        "Ready", False, pending.reason if pending else "Waiting", pending.message if pending else ""
    )
