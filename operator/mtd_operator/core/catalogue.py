"""The task catalogue of a served revision, built from the spec and the status rows (the
document itself, `Catalogue`, is the contract's: mtd_contract.catalogue).

It is what the operator writes to the resource's catalogue ConfigMap and what `mtd run`
writes to `<workspace>/<name>/catalogue.json`; the task gateway reads it to route
requests by task name. Pure: no I/O, so both drivers write byte-identical catalogues for
the same state.
"""

from __future__ import annotations

from typing import Literal

from mtd_contract.catalogue import Catalogue, CatalogueTask, Verdict

from ..api.spec import CompositionSpec, MultiTaskDeploymentSpec, TaskSpec, default_metric
from ..api.status import CompositionStatus, MultiTaskDeploymentStatus, TaskStatus


def verdict(row: TaskStatus | CompositionStatus) -> Verdict | None:
    """The row's own verdict, exactly as status.json carries it (None: not judged)."""
    return row.verdict


def _entry(
    item: TaskSpec | CompositionSpec,
    kind: Literal["task", "composition"],
    adapter: str | None,
    served_by: Literal["multiTask", "baseline", "composition"] | None,
    row: TaskStatus | CompositionStatus | None,
) -> CatalogueTask:
    """A task or composition as clients see it; without a status row yet, Inconclusive."""
    return CatalogueTask(
        name=item.name,
        kind=kind,
        type=item.type,
        instruction=item.instruction,
        labels=list(item.labels) if item.labels else None,
        metric=default_metric(item.type, item.metric),
        adapter=adapter,
        servedBy=served_by,
        verdict=verdict(row) if row is not None else None,
    )


def build_catalogue(
    spec: MultiTaskDeploymentSpec, status: MultiTaskDeploymentStatus, revision: str | None
) -> Catalogue:
    """The catalogue of a served revision: every task and composition with its adapter.

    Call it once serving is decided (every row then names its adapter); a row without an
    adapter is served by the base model.
    """
    rows = {row.name: row for row in status.tasks}
    composed = {row.name: row for row in status.compositions}
    # Method full serves the fine-tuned model itself (no adapters): every task asks the
    # served model, by its base-model name.
    full = spec.training.method == "full"
    tasks = []
    for task in spec.tasks:
        row = rows.get(task.name)
        adapter = row.adapter if row is not None and not full else None
        tasks.append(_entry(task, "task", adapter, row.served_by if row else None, row))
    for composition in spec.compositions:
        row = composed.get(composition.name)
        tasks.append(_entry(composition, "composition", composition.name, "composition", row))
    return Catalogue(revision=revision, tasks=tasks)
