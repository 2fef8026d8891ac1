"""The planner: tasks → groups → stages, each with sampling rates and a content hash.

Pure: it sees only the spec and the data profiles it is handed. Every decision about
what to train, in which order and with which mix is made here, so the operator and the
local runner behave the same.

A stage's hash covers everything that affects its result (base model, method and
hyper-parameters, its tasks' definitions and data fingerprints, its sampling, and the
hash of the stage it starts from). Unchanged hash + existing artifact = nothing to do;
that is what makes adding a task cheap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..api.grouping import group_tasks
from ..api.spec import CompositionSpec, MultiTaskDeploymentSpec, TaskSpec
from .profile import CompositionProfile, TaskProfile
from .sampling import instance_rates, temperature_rates

HASH_LENGTH = 10
# What an evaluation writes: 2 added per-example contributions (for confidence intervals),
# so results written before it are re-evaluated instead of judged without an interval.
EVALUATION_FORMAT = 2

StageName = Literal["stage1", "stage2"]


@dataclass(frozen=True)
class Sampling:
    strategy: Literal["instance", "temperature"]
    rates: dict[str, float]
    temperature: float | None = None
    dataset_cap: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"strategy": self.strategy}
        if self.strategy == "temperature":
            out["temperature"] = self.temperature
            out["datasetCap"] = self.dataset_cap
        out["rates"] = self.rates
        return out


@dataclass(frozen=True)
class StagePlan:
    group: str
    name: StageName
    tasks: tuple[str, ...]
    sampling: Sampling
    max_steps: int
    starts_from: str | None  # hash of the stage whose adapter this one continues
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tasks": list(self.tasks),
            "hash": self.hash,
            "maxSteps": self.max_steps,
            "startsFrom": self.starts_from,
            "sampling": self.sampling.to_json(),
        }


@dataclass(frozen=True)
class GroupPlan:
    name: str
    tasks: tuple[str, ...]
    high_resource: tuple[str, ...]
    stages: tuple[StagePlan, ...]
    evaluation_hash: str

    @property
    def final_stage(self) -> StagePlan:
        return self.stages[-1]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tasks": list(self.tasks),
            "highResource": list(self.high_resource),
            "stages": [stage.to_json() for stage in self.stages],
            "evaluation": {"hash": self.evaluation_hash},
        }


@dataclass(frozen=True)
class BaselinePlan:
    task: str
    max_steps: int
    hash: str
    evaluation_hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "hash": self.hash,
            "maxSteps": self.max_steps,
            "evaluation": {"hash": self.evaluation_hash},
        }


@dataclass(frozen=True)
class CompositionPlan:
    """Merge the final adapters of `tasks` (then calibrate): one adapter, `name`."""

    name: str
    tasks: tuple[str, ...]
    sources: tuple[str, ...]  # per task, the hash of the stage whose adapter is merged
    hash: str
    evaluation_hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tasks": list(self.tasks),
            "sources": list(self.sources),
            "hash": self.hash,
            "evaluation": {"hash": self.evaluation_hash},
        }


@dataclass(frozen=True)
class Plan:
    groups: tuple[GroupPlan, ...]
    baselines: tuple[BaselinePlan, ...]
    hash: str
    compositions: tuple[CompositionPlan, ...] = ()

    def group_of(self, task: str) -> GroupPlan:
        for group in self.groups:
            if task in group.tasks:
                return group
        raise KeyError(task)

    def stages(self) -> list[StagePlan]:
        return [stage for group in self.groups for stage in group.stages]

    def to_json(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "groups": [group.to_json() for group in self.groups],
            "baselines": [baseline.to_json() for baseline in self.baselines],
            **(
                {"compositions": [c.to_json() for c in self.compositions]}
                if self.compositions
                else {}
            ),
        }


def content_hash(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def is_high_resource(task: TaskSpec, examples: int, threshold: int) -> bool:
    if task.resource == "auto":
        return examples >= threshold
    return task.resource == "high"


def _training_fingerprint(spec: MultiTaskDeploymentSpec) -> dict[str, Any]:
    training = spec.training
    return {
        "baseModel": spec.base_model.uri,
        "method": training.method,
        "lora": training.lora.to_api() if training.method != "full" else None,
        "batchSize": training.batch_size,
        "learningRate": training.learning_rate,
        "maxSeqLength": training.max_seq_length,
        "seed": training.seed,
        # Only present when used, so that adding the option changed no existing hash.
        **({"cgcLora": training.cgc_lora.to_api()} if training.method == "cgcLora" else {}),
        # A 4-bit base trains a different adapter; absent when unused (no hash changed).
        **({"quantization": training.quantization} if training.quantization != "none" else {}),
        # Only when TGI needs the trained adapters zero-padded to a kernel rank.
        **({"paddedRanks": spec.padded_ranks()} if spec.pads_trained_adapters() else {}),
    }


def _task_fingerprint(task: TaskSpec, profile: TaskProfile) -> dict[str, Any]:
    return {
        "name": task.name,
        "type": task.type,
        "labels": task.labels,
        "ordinal": task.ordinal,
        "instruction": task.instruction,
        "train": profile.train.sha256,
    }


def _eval_fingerprint(task: TaskSpec, profile: TaskProfile) -> dict[str, Any]:
    return {
        "name": task.name,
        "metric": task.effective_metric,
        "eval": profile.eval.sha256 if profile.eval else None,
    }


def _stage(
    group: str,
    name: StageName,
    tasks: list[TaskSpec],
    sampling: Sampling,
    max_steps: int,
    starts_from: str | None,
    training: dict[str, Any],
    profiles: Mapping[str, TaskProfile],
) -> StagePlan:
    digest = content_hash(
        {
            "kind": "stage",
            "stage": name,
            "training": training,
            "tasks": [_task_fingerprint(t, profiles[t.name]) for t in tasks],
            "sampling": sampling.to_json(),
            "maxSteps": max_steps,
            "startsFrom": starts_from,
        }
    )
    return StagePlan(
        group=group,
        name=name,
        tasks=tuple(t.name for t in tasks),
        sampling=sampling,
        max_steps=max_steps,
        starts_from=starts_from,
        hash=digest,
    )


def _group_plan(
    spec: MultiTaskDeploymentSpec,
    group_name: str,
    tasks: list[TaskSpec],
    training: dict[str, Any],
    profiles: Mapping[str, TaskProfile],
) -> GroupPlan:
    """A group's stages (stage 1 on its high-resource tasks, if any; stage 2 on all of
    them, continuing stage 1) and the hash of its evaluation."""
    stage2_settings = spec.training.stage2
    examples = {t.name: profiles[t.name].train_examples for t in tasks}
    high = [
        t
        for t in tasks
        if is_high_resource(t, examples[t.name], spec.training.high_resource_min_examples)
    ]
    stages: list[StagePlan] = []
    if high:
        stages.append(
            _stage(
                group_name,
                "stage1",
                high,
                Sampling("instance", instance_rates({t.name: examples[t.name] for t in high})),
                spec.training.stage1.max_steps,
                None,
                training,
                profiles,
            )
        )
    rates = temperature_rates(examples, stage2_settings.temperature, stage2_settings.dataset_cap)
    stages.append(
        _stage(
            group_name,
            "stage2",
            tasks,
            Sampling(
                "temperature", rates, stage2_settings.temperature, stage2_settings.dataset_cap
            ),
            stage2_settings.max_steps,
            stages[0].hash if stages else None,
            training,
            profiles,
        )
    )
    evaluation_hash = content_hash(
        {
            "kind": "evaluation",
            "format": EVALUATION_FORMAT,
            "adapter": stages[-1].hash,
            "tasks": [_eval_fingerprint(t, profiles[t.name]) for t in tasks],
        }
    )
    return GroupPlan(
        name=group_name,
        tasks=tuple(t.name for t in tasks),
        high_resource=tuple(t.name for t in high),
        stages=tuple(stages),
        evaluation_hash=evaluation_hash,
    )


def _baseline_plan(
    spec: MultiTaskDeploymentSpec,
    task: TaskSpec,
    training: dict[str, Any],
    profiles: Mapping[str, TaskProfile],
) -> BaselinePlan:
    """A single-task adapter to compare with (or serve instead of) the group's."""
    steps = spec.training.baseline.max_steps
    sampling = Sampling("instance", {task.name: 1.0})
    digest = content_hash(
        {
            "kind": "baseline",
            "training": training,
            "task": _task_fingerprint(task, profiles[task.name]),
            "sampling": sampling.to_json(),
            "maxSteps": steps,
        }
    )
    evaluation_hash = content_hash(
        {
            "kind": "evaluation",
            "format": EVALUATION_FORMAT,
            "adapter": digest,
            "tasks": [_eval_fingerprint(task, profiles[task.name])],
        }
    )
    return BaselinePlan(task.name, steps, digest, evaluation_hash)


def plan(
    spec: MultiTaskDeploymentSpec,
    profiles: Mapping[str, TaskProfile],
    composition_profiles: Mapping[str, CompositionProfile] | None = None,
) -> Plan:
    """Build the plan; `profiles` must hold every task and `composition_profiles` every
    composition (the caller profiles first)."""
    missing = [task.name for task in spec.tasks if task.name not in profiles]
    if missing:
        raise ValueError(f"no data profile for tasks {missing}")
    composition_profiles = composition_profiles or {}
    missing = [c.name for c in spec.compositions if c.name not in composition_profiles]
    if missing:
        raise ValueError(f"no data profile for compositions {missing}")
    training = _training_fingerprint(spec)
    groups = [
        _group_plan(spec, group_name, tasks, training, profiles)
        for group_name, tasks in group_tasks(spec)
    ]
    baselines = [
        _baseline_plan(spec, task, training, profiles)
        for task in spec.tasks
        if task.baseline is not None and task.baseline.train
    ]
    padded = spec.padded_ranks()
    natural = [rank for _, rank in spec.natural_ranks()[2:]]
    compositions = tuple(
        _composition(
            composition,
            groups,
            training,
            composition_profiles[composition.name],
            padded if padded and rank not in padded else None,
        )
        for composition, rank in zip(spec.compositions, natural, strict=True)
    )
    plan_hash = content_hash(
        {
            "groups": [(g.name, g.evaluation_hash) for g in groups],
            "baselines": [b.evaluation_hash for b in baselines],
            # Only present when used, so that plans without compositions keep their hash.
            **({"compositions": [c.evaluation_hash for c in compositions]} if compositions else {}),
        }
    )
    return Plan(
        groups=tuple(groups), baselines=tuple(baselines), hash=plan_hash, compositions=compositions
    )


def _composition(
    composition: CompositionSpec,
    groups: list[GroupPlan],
    training: dict[str, Any],
    profile: CompositionProfile,
    padded_ranks: list[int] | None,
) -> CompositionPlan:
    final = {task: g.final_stage.hash for g in groups for task in g.tasks}
    sources = tuple(final[task] for task in composition.tasks)
    calibration = composition.calibration
    digest = content_hash(
        {
            "kind": "composition",
            "training": training,
            "tasks": list(composition.tasks),
            "sources": list(sources),
            "weights": composition.merge_weights,
            "merge": composition.merge,
            "density": composition.density if composition.merge == "ties" else None,
            "calibration": (
                {
                    "data": profile.calibration.sha256 if profile.calibration else None,
                    "type": composition.type,
                    "labels": composition.labels,
                    "instruction": composition.instruction,
                    "rank": calibration.rank,
                    "maxSteps": calibration.max_steps,
                    "learningRate": calibration.learning_rate,
                }
                if calibration is not None
                else None
            ),
            # Only when the engine pads (TGI), so that vLLM plans keep their hash.
            **({"paddedRanks": padded_ranks} if padded_ranks else {}),
        }
    )
    evaluation_hash = content_hash(
        {
            "kind": "evaluation",
            "format": EVALUATION_FORMAT,
            "adapter": digest,
            "composition": {
                "name": composition.name,
                "type": composition.type,
                "labels": composition.labels,
                "instruction": composition.instruction,
                "metric": composition.effective_metric,
                "eval": profile.eval.sha256 if profile.eval else None,
            },
        }
    )
    return CompositionPlan(composition.name, tuple(composition.tasks), sources, digest,
                           evaluation_hash)  # fmt: skip
