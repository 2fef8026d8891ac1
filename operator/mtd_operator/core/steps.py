"""The pipeline as a graph of steps, each one trainer command with a deterministic key.

A step's key contains its content hash, so a step is never redone once it succeeded
and a changed input is always a new step. The same keys name local processes (`mtd
run`) and Kubernetes Jobs (the operator), and the same relative output paths lay out
the workspace, so both drivers share artifacts' shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtd_contract.layout import (
    ADAPTER_DIR,
    CGC_STATE_DIR,
    MODEL_DIR,
    RESULT_FILE,
    task_adapter_dir,
)

from ..api.grouping import BASELINE_PREFIX
from .planner import BaselinePlan, CompositionPlan, GroupPlan, Plan, StagePlan

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
        return self.output if self.verb == "evaluate" else f"{self.output}/{RESULT_FILE}"

    @property
    def config_path(self) -> str:
        return f"configs/{self.key}.json"

    @property
    def adapter_path(self) -> str:
        """Where a training step's adapter lands (mtd_contract.layout)."""
        return f"{self.output}/{ADAPTER_DIR}"


def trained_path(step: Step, method: str) -> str:
    """What a step wrote: `<output>/model` for a full fine-tune (the trainer's layout),
    else the adapter."""
    if method == "full" and step.verb == "train":
        return f"{step.output}/{MODEL_DIR}"
    return step.adapter_path


def served_adapter_path(step: Step, task: str, method: str) -> str:
    """Where the adapter that serves `task` lies: CGC-LoRA exports one per task; under
    method full, the fine-tuned model folder."""
    if method == "cgcLora" and step.role == "stage":
        return f"{step.output}/{task_adapter_dir(task)}"
    return trained_path(step, method)


def continuation_path(step: Step, method: str) -> str:
    """What the next stage starts from: the adapter (the model, under full), or
    CGC-LoRA's experts and gates."""
    return f"{step.output}/{CGC_STATE_DIR}" if method == "cgcLora" else trained_path(step, method)


def baseline_adapter_name(task: str) -> str:
    return f"{BASELINE_PREFIX}{task}"


def stage_key(stage: StagePlan) -> str:
    """The key of a training stage's step (and of its Job)."""
    return f"train-{stage.group}-{stage.name}-{stage.hash}"


def final_stage_key(group: GroupPlan) -> str:
    """The key of a group's last training step: its adapter is what the group serves,
    what its evaluation scores and what compositions merge."""
    return stage_key(group.final_stage)


def final_stage_steps(plan: Plan, steps: list[Step]) -> dict[str, Step]:
    """Each group's last training step, by group name."""
    by_key = {step.key: step for step in steps}
    return {group.name: by_key[final_stage_key(group)] for group in plan.groups}


def _evaluation(of: Step, key: str, role: StepRole, hash_: str, output: str) -> Step:
    """The step scoring what `of` trained, for the same group, task or composition."""
    return Step(
        key=key,
        role=role,
        verb="evaluate",
        hash=hash_,
        after=(of.key,),
        output=output,
        group=of.group,
        task=of.task,
        composition=of.composition,
    )


def _baseline_steps(baseline: BaselinePlan) -> list[Step]:
    task, evaluation = baseline.task, baseline.evaluation_hash
    train = Step(
        key=f"baseline-{task}-{baseline.hash}",
        role="baseline",
        verb="train",
        hash=baseline.hash,
        after=(),
        output=f"baselines/{task}-{baseline.hash}",
        task=task,
    )
    return [
        train,
        _evaluation(
            train,
            f"baseline-eval-{task}-{evaluation}",
            "baselineEvaluation",
            evaluation,
            f"eval/baseline-{task}-{evaluation}.json",
        ),
    ]


def _group_steps(group: GroupPlan) -> list[Step]:
    """The group's stages, each continuing the one before, then its evaluation."""
    steps: list[Step] = []
    for stage in group.stages:
        steps.append(
            Step(
                key=stage_key(stage),
                role="stage",
                verb="train",
                hash=stage.hash,
                after=(steps[-1].key,) if steps else (),
                output=f"train/{group.name}-{stage.name}-{stage.hash}",
                group=group.name,
                stage=stage.name,
            )
        )
    assert steps[-1].key == final_stage_key(group)
    evaluation = group.evaluation_hash
    return [
        *steps,
        _evaluation(
            steps[-1],
            f"eval-{group.name}-{evaluation}",
            "evaluation",
            evaluation,
            f"eval/{group.name}-{evaluation}.json",
        ),
    ]


def _composition_steps(plan: Plan, composition: CompositionPlan) -> list[Step]:
    """Merge after the final stage of every group a composed task belongs to."""
    name, evaluation = composition.name, composition.evaluation_hash
    sources = dict.fromkeys(final_stage_key(plan.group_of(task)) for task in composition.tasks)
    compose = Step(
        key=f"compose-{name}-{composition.hash}",
        role="composition",
        verb="compose",
        hash=composition.hash,
        after=tuple(sources),
        output=f"compositions/{name}-{composition.hash}",
        composition=name,
    )
    return [
        compose,
        _evaluation(
            compose,
            f"compose-eval-{name}-{evaluation}",
            "compositionEvaluation",
            evaluation,
            f"eval/composition-{name}-{evaluation}.json",
        ),
    ]


def pipeline_steps(plan: Plan) -> list[Step]:
    """Every step of the plan, dependencies before dependants (baselines, groups, then
    compositions). A pure function of the plan: drivers list the steps with it."""
    steps: list[Step] = []
    for baseline in plan.baselines:
        steps += _baseline_steps(baseline)
    for group in plan.groups:
        steps += _group_steps(group)
    for composition in plan.compositions:
        steps += _composition_steps(plan, composition)
    return steps
