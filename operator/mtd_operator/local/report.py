"""What `mtd run` shows a person: the plan, condition changes as they happen, and the task
table."""

from __future__ import annotations

from typing import TextIO

from ..api.spec import Baseline, MultiTaskDeploymentSpec
from ..api.status import CompositionStatus, MultiTaskDeploymentStatus, TaskStatus
from ..core.planner import Plan


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(row: TaskStatus | CompositionStatus) -> str:
    if not row.ratio_interval:
        return "-"
    low, high = row.ratio_interval
    return f"[{low:.3f}, {high:.3f}]"


def _verdict(row: TaskStatus | CompositionStatus) -> str:
    names = {"Qualified": "qualified", "NotQualified": "not qualified"}
    return "-" if row.verdict is None else names.get(row.verdict, row.verdict.lower())


def baseline_kind(baseline: Baseline | None) -> str:
    """Where a baseline comes from: a single-task run measured here, or a given score."""
    if baseline is None:
        return "-"
    return "measured" if baseline.train else "given"


def task_table(
    status: MultiTaskDeploymentStatus, spec: MultiTaskDeploymentSpec | None = None
) -> str:
    """The per-task table; with the spec, a column says which kind each baseline is."""
    kinds = {}
    if spec is not None:
        kinds = {t.name: baseline_kind(t.baseline) for t in [*spec.tasks, *spec.compositions]}
    rows = [
        ("TASK", "GROUP", "METRIC", "SCORE", "BASELINE", "KIND", "RATIO", "INTERVAL", "N",
         "VERDICT", "ADAPTER"),
    ]  # fmt: skip
    judged: list[tuple[str, TaskStatus | CompositionStatus]] = [
        *((task.group, task) for task in status.tasks),
        *(("composition", composition) for composition in status.compositions),
    ]
    for group, row in judged:
        rows.append(
            (
                row.name,
                group,
                row.metric,
                _fmt(row.score),
                _fmt(row.baseline),
                kinds.get(row.name, "?") if row.baseline is not None else "-",
                _fmt(row.ratio),
                _interval(row),
                "-" if row.eval_examples is None else str(row.eval_examples),
                _verdict(row),
                row.adapter or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    with_baseline = sum(1 for task in status.tasks if task.baseline is not None)
    lines.append(
        f"qualified {status.qualified} ({status.not_qualified_count} not qualified, "
        f"{status.inconclusive_count} inconclusive; {with_baseline} of {len(status.tasks)} "
        "have a baseline)"
    )
    if status.cost is not None:
        cost = status.cost
        lines.append(
            f"serving: {cost.serving_deployments} deployment instead of "
            f"{cost.single_task_deployments} ({cost.saving_percent:g}% fewer)"
        )
    return "\n".join(lines)


def print_status_changes(
    before: MultiTaskDeploymentStatus | None,
    after: MultiTaskDeploymentStatus,
    out: TextIO,
    spec: MultiTaskDeploymentSpec | None = None,
) -> None:
    old = {c.type: (c.status, c.reason, c.message) for c in (before.conditions if before else [])}
    for condition in after.conditions:
        if old.get(condition.type) != (condition.status, condition.reason, condition.message):
            out.write(
                f"  [{condition.type}={condition.status}] {condition.reason}: {condition.message}\n"
            )
    scored = any(row.score is not None for row in [*after.tasks, *after.compositions])
    changed = before is None or (before.tasks, before.compositions) != (
        after.tasks,
        after.compositions,
    )
    if scored and changed:
        out.write(task_table(after, spec) + "\n")
    out.flush()


def plan_table(plan: Plan) -> str:
    """The plan as `mtd plan` and `mtd run` print it: one row per task of each stage,
    baseline and composition, then the plan's hash."""
    rows = [("GROUP", "STAGE", "HASH", "STEPS", "SAMPLING", "TASK", "RATE")]
    for group in plan.groups:
        for stage in group.stages:
            sampling = stage.sampling
            label = sampling.strategy
            if sampling.strategy == "temperature":
                label += f" τ={sampling.temperature:g} K={sampling.dataset_cap}"
            for index, task in enumerate(stage.tasks):
                first = index == 0
                rows.append(
                    (
                        group.name if first else "",
                        stage.name if first else "",
                        stage.hash if first else "",
                        str(stage.max_steps) if first else "",
                        label if first else "",
                        task,
                        f"{sampling.rates[task]:.4f}",
                    )
                )
    for baseline in plan.baselines:
        rows.append(
            (
                "baseline",
                "single-task",
                baseline.hash,
                str(baseline.max_steps),
                "",
                baseline.task,
                "1.0000",
            )
        )
    for composition in plan.compositions:
        for index, task in enumerate(composition.tasks):
            first = index == 0
            rows.append(
                (
                    "composition" if first else "",
                    composition.name if first else "",
                    composition.hash if first else "",
                    "",
                    "merge" if first else "",
                    task,
                    "",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + f"\nplan {plan.hash}"
