"""Specs and scoring configs per method (pure but for reading data sizes through the
product's profiler): equal budgets, test data only in scoring."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import yaml

from bench.scales import DEPLOYMENT, METHODS, NO_CAP, QUICKSTART, THRESHOLD, Method, Scale


def task_definitions(names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The tasks' prompts, labels and metrics, as the quickstart spec defines them: all
    six, or those named (in the spec's order)."""
    spec = yaml.safe_load((QUICKSTART / "mtd.yaml").read_text(encoding="utf-8"))
    keep = ("name", "type", "labels", "ordinal", "instruction", "metric")
    tasks = [{k: t[k] for k in keep if k in t} for t in spec["spec"]["tasks"]]
    if names is None:
        return tasks
    known = [t["name"] for t in tasks]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; the quickstart spec has {known}")
    return [t for t in tasks if t["name"] in names]


def split_path(data_dir: Path, task: str, split: str) -> Path:
    return data_dir / task / f"{split}.jsonl"


def train_path(data_dir: Path, task: str, scale: Scale) -> Path:
    """The training file a scale gives `task`: its train split, or (for a task the scale
    makes low-resource) the first N examples of it, written by `write_train_limits`."""
    limit = scale.train_limit(task)
    if limit is None:
        return split_path(data_dir, task, "train")
    return data_dir / task / f"train-first{limit}.jsonl"


def write_train_limits(data_dir: Path, scale: Scale) -> None:
    """Write the cut training files of a scale's low-resource tasks (the same bytes on every
    call, so a rerun keeps the runs' content hashes)."""
    for task, limit in scale.train_limits:
        lines = [
            line
            for line in split_path(data_dir, task, "train").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        if len(lines) < limit:
            raise ValueError(
                f"train_limits: {task} has {len(lines)} training examples, fewer than {limit}"
            )
        target = train_path(data_dir, task, scale)
        text = "\n".join(lines[:limit]) + "\n"
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")


def base_spec(
    method: Method,
    tasks: list[dict[str, Any]],
    data_dir: Path,
    spec_dir: Path,
    base_model: Path,
    scale: Scale,
    seed: int,
    stage1_steps: int,
    stage2_steps: int,
) -> dict[str, Any]:
    """A MultiTaskDeployment for one method. Training data only: no eval, no test."""
    spec_tasks = []
    for task in tasks:
        entry = dict(task)
        entry["data"] = {
            "train": os.path.relpath(train_path(data_dir, task["name"], scale), spec_dir)
        }
        if not method.stage1:
            entry["resource"] = "low"
        spec_tasks.append(entry)
    return {
        "apiVersion": "multitask.dev/v1alpha1",
        "kind": "MultiTaskDeployment",
        "metadata": {"name": DEPLOYMENT},
        "spec": {
            "baseModel": {"uri": os.path.relpath(base_model, spec_dir)},
            "tasks": spec_tasks,
            "filtering": {
                "strategy": method.filtering,
                **({"isolate": [t["name"] for t in tasks]} if method.single_task else {}),
            },
            "training": {
                "method": "cgcLora" if method.cgc else "lora",
                "highResourceMinExamples": scale.high_resource_min_examples,
                "stage1": {"maxSteps": stage1_steps},
                "stage2": {
                    "temperature": method.temperature,
                    "datasetCap": scale.dataset_cap if method.cap else NO_CAP,
                    "maxSteps": stage2_steps,
                },
                "lora": {"rank": scale.lora_rank, "alpha": scale.lora_alpha},
                **(
                    {
                        "cgcLora": {
                            "commonExperts": scale.cgc_common_experts,
                            "specificExperts": scale.cgc_specific_experts,
                            "expertRank": scale.cgc_expert_rank,
                        }
                    }
                    if method.cgc
                    else {}
                ),
                "batchSize": scale.batch_size,
                "learningRate": scale.learning_rate,
                "maxSeqLength": scale.max_seq_length,
                "seed": seed,
            },
            "qualification": {"threshold": THRESHOLD},
            "serving": {"engine": "tgi", "replicas": 1},
        },
    }


def plan_of(resource: dict[str, Any], spec_dir: Path):
    """The product's planner on a spec dict (data paths resolve against spec_dir)."""
    from mtd_operator.core.planner import plan
    from mtd_operator.core.problems import InvalidSpec
    from mtd_operator.data_files import profile_spec
    from mtd_operator.specfile import parse_resource

    parsed = parse_resource(resource)
    profiles, problems = profile_spec(parsed.spec, spec_dir)
    if problems:
        raise InvalidSpec(problems)
    return parsed, profiles, plan(parsed.spec, profiles)


def solve_steps(n_stage1: int, n_groups: int, budget: int, fraction: float) -> tuple[int, int]:
    """(S1, S2) with n_stage1·S1 + n_groups·S2 == budget, S1 ≈ budget·fraction / n_stage1."""
    if n_stage1 == 0:
        if budget % n_groups:
            raise ValueError(f"budget {budget} steps is not divisible by {n_groups} groups")
        return 1, budget // n_groups  # S1 unused (no stage 1 in the plan)
    s1 = math.floor(budget * fraction / n_stage1)
    while s1 >= 1 and (budget - n_stage1 * s1) % n_groups:
        s1 -= 1
    if s1 < 1 or budget - n_stage1 * s1 < n_groups:
        raise ValueError(
            f"no integer split of {budget} steps over {n_stage1} stage-1 and "
            f"{n_groups} stage-2 runs"
        )
    return s1, (budget - n_stage1 * s1) // n_groups


def plan_budget(plan, batch_size: int) -> dict[str, int]:
    stages = plan.stages()
    steps = sum(stage.max_steps for stage in stages)
    return {"runs": len(stages), "steps": steps, "examples": steps * batch_size}


def build_specs(
    tasks: list[dict[str, Any]],
    data_dir: Path,
    spec_dir: Path,
    base_model: Path,
    scale: Scale,
    seed: int,
    methods: tuple[Method, ...] = METHODS,
) -> dict[str, dict[str, Any]]:
    """Every method's spec, its steps solved so that all budgets equal scale.budget_steps."""
    specs = {}
    for method in methods:
        probe = base_spec(method, tasks, data_dir, spec_dir, base_model, scale, seed, 1, 1)
        _, _, probe_plan = plan_of(probe, spec_dir)
        n_stage1 = sum(1 for g in probe_plan.groups if len(g.stages) == 2)
        s1, s2 = solve_steps(
            n_stage1, len(probe_plan.groups), scale.budget_steps, scale.stage1_fraction
        )
        spec = base_spec(method, tasks, data_dir, spec_dir, base_model, scale, seed, s1, s2)
        _, _, final = plan_of(spec, spec_dir)
        got = plan_budget(final, scale.batch_size)["steps"]
        if got != scale.budget_steps:  # pragma: no cover - solve_steps guarantees it
            raise AssertionError(f"{method.name}: budget {got} != {scale.budget_steps}")
        specs[method.name] = spec
    return specs


def eval_configs(
    method: str,
    resource: dict[str, Any],
    spec_dir: Path,
    workspace: Path,
    data_dir: Path,
    eval_dir: Path,
    base_model: Path,
    scale: Scale,
) -> list[dict[str, Any]]:
    """EvalConfigs scoring each of a method's final adapters on the test split.

    Under cgcLora every task is scored with its own exported adapter (`task_adapters`,
    the adapter it is served with), not with one adapter per group.
    """
    from mtd_operator.core.steps import pipeline_steps, served_adapter_path

    parsed, _, the_plan = plan_of(resource, spec_dir)
    training_method = parsed.spec.training.method
    by_name = {t.name: t for t in parsed.spec.tasks}
    final_steps = {}
    for step in pipeline_steps(the_plan):
        if step.role == "stage":
            final_steps[step.group] = step  # the last stage of a group wins
    configs = []
    for group in the_plan.groups:
        step = final_steps[group.name]
        root = workspace / DEPLOYMENT
        task_adapters = None
        if training_method == "cgcLora":
            adapter = None
            task_adapters = {
                name: str(root / served_adapter_path(step, name, training_method))
                for name in group.tasks
            }
        else:
            adapter = str(root / step.adapter_path)
        configs.append(
            eval_config(
                f"{method}/{group.name}",
                [by_name[name] for name in group.tasks],
                adapter,
                eval_dir / f"{step.hash}.json",
                data_dir,
                base_model,
                scale,
                task_adapters,
            )
        )
    return configs


def eval_config(
    run_name, tasks, adapter, output, data_dir, base_model, scale, task_adapters=None
) -> dict:
    """One trainer EvalConfig scoring `tasks` (TaskSpecs) on their test split."""
    rows = []
    for task in tasks:
        row = {
            "name": task.name,
            "type": task.type,
            "instruction": task.instruction,
            "metric": task.effective_metric,
            "ordinal": task.ordinal,
            "eval_path": str(split_path(data_dir, task.name, "test")),
        }
        if task.labels is not None:
            row["labels"] = list(task.labels)
        rows.append(row)
    return {
        "kind": "evaluate",
        "run_name": run_name,
        "base_model": str(base_model),
        "adapter": adapter,
        **({"task_adapters": task_adapters} if task_adapters else {}),
        "tasks": rows,
        "max_examples": scale.test_examples,
        "max_new_tokens": scale.max_new_tokens,
        "max_seq_length": scale.max_seq_length,
        "batch_size": scale.eval_batch_size,
        "output_path": str(output),
    }


def base_model_eval_config(tasks, data_dir, eval_dir, base_model, scale) -> dict[str, Any]:
    """Zero-shot reference: the base model with no adapter."""
    from mtd_operator.api.spec import TaskSpec

    specs = [TaskSpec.model_validate({**t, "data": {"train": "x"}}) for t in tasks]
    return eval_config("base/zero-shot", specs, None, eval_dir / "base.json", data_dir,
                        base_model, scale)  # fmt: skip
