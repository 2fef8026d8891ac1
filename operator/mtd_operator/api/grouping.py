"""Task filtering: which tasks share a group, and so one adapter.

Pure, on the spec's tasks. It sits with the API models because the spec's own validation
needs it (a composition cannot merge tasks of one group) and because group names are
adapter ids the API reserves; the planner imports it from here, so `api` imports nothing
of `core`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import MultiTaskDeploymentSpec, TaskSpec

ALL_GROUP = "all"
TAXONOMY_ORDER = ("generation", "binary", "ordinal", "multiclass")
TASK_TYPE_ORDER = ("generation", "classification")
SOLO_PREFIX = "solo-"  # a task in filtering.isolate trains alone, in group solo-NAME
BASELINE_PREFIX = "single-"  # a task's single-task baseline adapter
# TGI serves its base model under the model id "tgi" (mtd_contract.upstream.TGI_BASE_MODEL):
# an adapter of that name would be answered by the base model, silently.
ENGINE_MODEL_IDS = ("tgi",)
# Serving adapter ids the planner and reconcile give out, and the engines' own; a
# composition may not take one.
RESERVED_ADAPTER_NAMES = tuple(
    dict.fromkeys((ALL_GROUP, *TASK_TYPE_ORDER, *TAXONOMY_ORDER, *ENGINE_MODEL_IDS))
)
RESERVED_ADAPTER_PREFIXES = (SOLO_PREFIX, BASELINE_PREFIX)


def taxonomy_kind(task: TaskSpec) -> str:
    if task.type == "generation":
        return "generation"
    assert task.labels is not None
    if len(task.labels) == 2:
        return "binary"
    return "ordinal" if task.ordinal else "multiclass"


def group_tasks(spec: MultiTaskDeploymentSpec) -> list[tuple[str, list[TaskSpec]]]:
    """Task filtering: compatible tasks share a group; isolated tasks train alone."""
    isolated = set(spec.filtering.isolate)
    shared = [task for task in spec.tasks if task.name not in isolated]
    strategy = spec.filtering.strategy
    if strategy == "none":
        buckets = {ALL_GROUP: shared}
    elif strategy == "taskType":
        buckets = {kind: [t for t in shared if t.type == kind] for kind in TASK_TYPE_ORDER}
    else:
        buckets = {kind: [t for t in shared if taxonomy_kind(t) == kind] for kind in TAXONOMY_ORDER}
    groups = [(name, tasks) for name, tasks in buckets.items() if tasks]
    groups += [
        (f"{SOLO_PREFIX}{task.name}", [task]) for task in spec.tasks if task.name in isolated
    ]
    return groups
