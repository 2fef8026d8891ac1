"""The observed state written by the operator (and by `mtd run` to status.json).

Status is always recomputed from the world (children, artifacts, results); nothing in it
is the source of truth for a decision except `lastTransitionTime`, which is carried over
when a condition does not flip.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

CONDITION_TYPES = (
    "Planned",
    "Trained",
    "Evaluated",
    "Qualified",
    "EvalSufficient",
    "Serving",
    "Ready",
)
Verdict = Literal["Qualified", "NotQualified", "Inconclusive"]


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_api(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Condition(StatusModel):
    type: str = Field(
        description="One of Planned, Trained, Evaluated, Qualified, EvalSufficient, Serving, Ready."
    )
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9]*)$", description="One CamelCase word.")
    message: str = ""
    last_transition_time: str | None = Field(
        default=None, description="RFC 3339 time of the last flip of status."
    )
    observed_generation: int | None = None


class Judged(StatusModel):
    """What a task and a composition row share: the score against its baseline, and the
    qualification verdict with its confidence interval."""

    score: float | None = None
    baseline: float | None = None
    ratio: float | None = None
    ratio_interval: list[float] | None = Field(
        default=None,
        description="[low, high]: the paired-bootstrap interval of the ratio at "
        "qualification.confidence (with a known baseline score, only the task's own score "
        "varies).",
    )
    eval_examples: int | None = Field(default=None, description="Examples scored.")
    verdict: Verdict | None = Field(
        default=None, description="Qualified, NotQualified or Inconclusive (see ratioInterval)."
    )
    qualified: bool = Field(default=False, description="verdict is Qualified.")


class TaskStatus(Judged):
    name: str
    group: str
    metric: str
    adapter: str | None = Field(default=None, description="The adapter id that serves the task.")
    served_by: Literal["multiTask", "baseline"] | None = Field(
        default=None, description="Which adapter serves it: the group's, or its baseline."
    )
    examples: int | None = Field(default=None, description="Training examples.")
    resource: Literal["high", "low"] | None = None
    rank: int | None = Field(
        default=None,
        description="LoRA rank its adapter is served at (TGI: padded up to a kernel rank); "
        "none under method full.",
    )


class CompositionStatus(Judged):
    """A composition's row: scored and qualified like a task, served by its own adapter."""

    name: str
    tasks: list[str] = Field(description="The tasks whose adapters were merged.")
    merge: str
    calibrated: bool = False
    metric: str
    adapter: str | None = Field(default=None, description="The adapter id that serves it.")
    rank: int | None = Field(
        default=None, description="Rank the composed adapter is served at (TGI: padded up)."
    )


class StageStatus(StatusModel):
    group: str
    stage: str
    hash: str
    state: Literal["Pending", "Running", "Succeeded", "Failed"]
    message: str = ""
    attempts: int = 0


class ServingStatus(StatusModel):
    engine: str
    endpoint: str | None = None
    adapters: list[str] = Field(default_factory=list)
    revision: str | None = Field(default=None, description="Hash of the served adapter set.")
    ready_replicas: int = 0
    adapter_update: Literal["Surge", "OneAtATime", "RuntimeLoad"] | None = Field(
        default=None,
        description="How a new adapter set reaches the serving pods: a rollout that "
        "starts a new pod first (Surge) or replaces pods one at a time (OneAtATime), or "
        "vLLM loading it into the running pods (RuntimeLoad).",
    )
    gateway: str | None = Field(
        default=None, description="The task gateway's URL: ask tasks by name there."
    )


class CostStatus(StatusModel):
    serving_deployments: int
    serving_gpus: int
    single_task_deployments: int = Field(description="Deployments one model per task would use.")
    saving_percent: float = Field(description="Cut in serving deployments versus one per task.")


class MultiTaskDeploymentStatus(StatusModel):
    observed_generation: int | None = None
    plan_hash: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    tasks: list[TaskStatus] = Field(default_factory=list)
    compositions: list[CompositionStatus] = Field(default_factory=list)
    stages: list[StageStatus] = Field(default_factory=list)
    serving: ServingStatus | None = None
    cost: CostStatus | None = None
    task_count: int = 0
    qualified_count: int = 0
    not_qualified_count: int = 0
    inconclusive_count: int = 0
    qualified: str = Field(default="0/0", description="Qualified tasks as 'k/n'.")
