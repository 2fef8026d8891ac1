"""The pipeline as a graph of steps, each one trainer command with a deterministic key.

A step's key contains its content hash, so a step is never redone once it succeeded
and a changed input is always a new step. The same keys name local processes (`mtd
run`) and Kubernetes Jobs (the operator), and the same relative output paths lay out
the workspace, so both drivers share artifacts' shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..api.grouping import BASELINE_PREFIX
from .planner import Plan

StepRole = Literal[
    "stage", "evaluation", "baseline", "baselineEvaluation", "composition", "compositionEvaluation"
]
Verb = Literal["train", "evaluate", "compose"]


@dataclass(frozen=True)
class Step:
    key: str
    role: StepRole
    verb: Verb
    hash: str
    after: tuple[str, ...]
    output: str  # folder (train) or results file (evaluate), relative to the deployment root
    group: str | None = None
    stage: str | None = None
    task: str | None = None
    composition: str | None = None

    @property
    def result_path(self) -> str:
        """The file whose presence says the step succeeded (the trainer writes it last)."""
        return self.output if self.verb == "evaluate" else f"{self.output}/result.json"

    @property
    def config_path(self) -> str:
        return f"configs/{self.key}.json"

    @property
    def adapter_path(self) -> str:
        """Where a training step's adapter lands (the trainer writes `<output>/adapter`)."""
        return f"{self.output}/adapter"


def trained_path(step: Step, method: str) -> str:
    """What a step wrote: `<output>/model` for a full fine-tune (the trainer's layout),
    else the adapter."""
    if method == "full" and step.verb == "train":
        return f"{step.output}/model"
    return step.adapter_path


def served_adapter_path(step: Step, task: str, method: str) -> str:
    """Where the adapter that serves `task` lies: CGC-LoRA exports one per task; under
    method full, the fine-tuned model folder."""
    if method == "cgcLora" and step.role == "stage":
        return f"{step.output}/adapters/{task}"
    return trained_path(step, method)


def continuation_path(step: Step, method: str) -> str:
    """What the next stage starts from: the adapter (the model, under full), or
    CGC-LoRA's experts and gates."""
    return f"{step.output}/cgc" if method == "cgcLora" else trained_path(step, method)


def baseline_adapter_name(task: str) -> str:
    return f"{BASELINE_PREFIX}{task}"


def pipeline_steps(plan: Plan) -> list[Step]:
    """Every step of the plan, dependencies before dependants."""
    steps: list[Step] = []
    final: dict[str, str] = {}  # group → the key of its last training step
    for baseline in plan.baselines:
        train_key = f"baseline-{baseline.task}-{baseline.hash}"
        steps.append(
            Step(
                key=train_key,
                role="baseline",
                verb="train",
                hash=baseline.hash,
                after=(),
                output=f"baselines/{baseline.task}-{baseline.hash}",
                task=baseline.task,
            )
        )
        steps.append(
            Step(
                key=f"baseline-eval-{baseline.task}-{baseline.evaluation_hash}",
                role="baselineEvaluation",
                verb="evaluate",
                hash=baseline.evaluation_hash,
                after=(train_key,),
                output=f"eval/baseline-{baseline.task}-{baseline.evaluation_hash}.json",
                task=baseline.task,
            )
        )
    for group in plan.groups:
        previous: str | None = None
        for stage in group.stages:
            key = f"train-{group.name}-{stage.name}-{stage.hash}"
            steps.append(
                Step(
                    key=key,
                    role="stage",
                    verb="train",
                    hash=stage.hash,
                    after=(previous,) if previous else (),
                    output=f"train/{group.name}-{stage.name}-{stage.hash}",
                    group=group.name,
                    stage=stage.name,
                )
            )
            previous = key
        assert previous is not None
        final[group.name] = previous
        steps.append(
            Step(
                key=f"eval-{group.name}-{group.evaluation_hash}",
                role="evaluation",
                verb="evaluate",
                hash=group.evaluation_hash,
                after=(previous,),
                output=f"eval/{group.name}-{group.evaluation_hash}.json",
                group=group.name,
            )
        )
    for composition in plan.compositions:
        compose_key = f"compose-{composition.name}-{composition.hash}"
        sources = dict.fromkeys(final[plan.group_of(task).name] for task in composition.tasks)
        steps.append(
            Step(
                key=compose_key,
                role="composition",
                verb="compose",
                hash=composition.hash,
                after=tuple(sources),
                output=f"compositions/{composition.name}-{composition.hash}",
                composition=composition.name,
            )
        )
        steps.append(
            Step(
                key=f"compose-eval-{composition.name}-{composition.evaluation_hash}",
                role="compositionEvaluation",
                verb="evaluate",
                hash=composition.evaluation_hash,
                after=(compose_key,),
                output=f"eval/composition-{composition.name}-{composition.evaluation_hash}.json",
                composition=composition.name,
            )
        )
    return steps
