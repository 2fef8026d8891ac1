"""bench/quality.py builds fair, leak-free specs: equal budgets, test data only in scoring.

No training here: tiny fake data files, the real planner, and the spec/eval builders.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from bench.provenance import previous_invocations
from bench.quality_report import provenance, summarise
from bench.runs import adapter_label
from bench.scales import METHOD_NAMES, SCALES, quick_variant
from bench.specs import (
    base_model_eval_config,
    build_specs,
    eval_configs,
    plan_budget,
    plan_of,
    solve_steps,
    task_definitions,
)
from mtd_operator.core.sampling import instance_rates

ROOT = Path(__file__).resolve().parents[2]

COUNTS = {  # the real data's shape, shrunk: three high-resource tasks, one tiny one
    "tweet-sentiment": 72,
    "chinese-review-sentiment": 34,
    "movie-review-sentiment": 25,
    "bbc-topic": 8,
    "bbc-headline": 8,
    "paper-summary": 3,
}


@pytest.fixture(scope="module")
def built_once(tmp_path_factory: pytest.TempPathFactory):
    """The fake data and every method's spec, built once for the module (the planner runs
    twice per method). No test writes under its folder: they plan and build configs."""
    tmp_path = tmp_path_factory.mktemp("built")
    tasks = task_definitions()
    data = tmp_path / "data"
    for task in tasks:
        folder = data / task["name"]
        folder.mkdir(parents=True)
        labels = task.get("labels")
        for split, count in (("train", COUNTS[task["name"]]), ("eval", 3), ("test", 4)):
            rows = [
                {
                    "input": f"{split} text {i} of {task['name']}",
                    "output": labels[i % len(labels)] if labels else f"answer {i}",
                }
                for i in range(count)
            ]
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    scale = quick_variant(SCALES["quick"], high_resource_min_examples=20)
    spec_dir = tmp_path  # the data folder is inside it, as the product requires
    base = tmp_path / "model"
    specs = build_specs(tasks, data, spec_dir, base, scale, seed=3)
    return tasks, data, spec_dir, base, scale, specs


@pytest.fixture
def built(built_once):
    """`built_once` with its mutable parts (the task list and the specs) copied per test,
    so a test that changed them could not change what the next one sees."""
    tasks, data, spec_dir, base, scale, specs = built_once
    return copy.deepcopy(tasks), data, spec_dir, base, scale, copy.deepcopy(specs)


def test_every_method_has_the_same_budget(built):
    _, _, spec_dir, _, scale, specs = built
    assert set(specs) == set(METHOD_NAMES)
    budgets = {}
    for name, spec in specs.items():
        _, _, plan = plan_of(spec, spec_dir)
        budgets[name] = plan_budget(plan, scale.batch_size)
        assert spec["spec"]["training"]["batchSize"] == scale.batch_size
        assert spec["spec"]["training"]["seed"] == 3
    assert {b["steps"] for b in budgets.values()} == {scale.budget_steps}
    assert {b["examples"] for b in budgets.values()} == {scale.budget_steps * scale.batch_size}


def test_methods_are_what_they_claim(built):
    tasks, _, spec_dir, _, scale, specs = built
    plans = {name: plan_of(spec, spec_dir)[2] for name, spec in specs.items()}

    single = plans["single-task"]
    assert len(single.groups) == len(tasks)
    assert all(len(g.tasks) == 1 and len(g.stages) == 1 for g in single.groups)
    assert {s.max_steps for s in single.stages()} == {scale.budget_steps // len(tasks)}

    (naive,) = plans["naive"].groups
    (stage,) = naive.stages
    assert stage.max_steps == scale.budget_steps
    expected = instance_rates(COUNTS)
    assert stage.sampling.rates == pytest.approx(expected)

    three = plans["three-stage"]
    assert [g.name for g in three.groups] == ["generation", "binary", "ordinal", "multiclass"]
    with_stage1 = {g.name: g.high_resource for g in three.groups if len(g.stages) == 2}
    assert with_stage1 == {
        "binary": ("chinese-review-sentiment", "movie-review-sentiment"),
        "ordinal": ("tweet-sentiment",),
    }
    assert three.groups[0].final_stage.sampling.temperature == 2.0

    assert len(plans["no-filtering"].groups) == 1
    assert len(plans["no-filtering"].groups[0].stages) == 2
    assert all(len(g.stages) == 1 for g in plans["no-stage1"].groups)
    assert len(plans["no-stage1"].groups) == 4
    assert plans["tau-1"].groups[0].final_stage.sampling.temperature == 1.0
    assert plans["tau-3.33"].groups[0].final_stage.sampling.temperature == 3.33
    assert plans["no-cap"].groups[0].final_stage.sampling.dataset_cap > max(COUNTS.values())


def test_test_split_is_never_used_for_training(built, tmp_path: Path):
    tasks, data, spec_dir, base, scale, specs = built
    for name, spec in specs.items():
        text = yaml.safe_dump(spec)
        assert "test.jsonl" not in text and "eval.jsonl" not in text, name
        for task in spec["spec"]["tasks"]:
            assert set(task["data"]) == {"train"}
            assert (spec_dir / task["data"]["train"]).resolve() == (
                data / task["name"] / "train.jsonl"
            ).resolve()
        _, _, plan = plan_of(spec, spec_dir)
        configs = eval_configs(
            name, spec, spec_dir, tmp_path / "ws", data, tmp_path / "eval", base, scale
        )
        assert len(configs) == len(plan.groups)
        scored = [t["name"] for c in configs for t in c["tasks"]]
        assert sorted(scored) == sorted(t["name"] for t in tasks)
        for config in configs:
            assert config["max_examples"] == scale.test_examples
            for task in config["tasks"]:
                assert task["eval_path"] == str(data / task["name"] / "test.jsonl")
                assert "train_path" not in task
    base_config = base_model_eval_config(tasks, data, tmp_path / "eval", base, scale)
    assert base_config["adapter"] is None


def test_eval_configs_are_valid_trainer_configs(built, tmp_path: Path):
    from mtd_contract.config import EvalConfig

    _, data, spec_dir, base, scale, specs = built
    for name, spec in specs.items():
        for config in eval_configs(
            name, spec, spec_dir, tmp_path / "ws", data, tmp_path / "eval", base, scale
        ):
            EvalConfig.model_validate(config)


def test_solve_steps():
    assert solve_steps(0, 6, 48, 1 / 3) == (1, 8)
    assert solve_steps(2, 4, 48, 1 / 3) == (8, 8)
    assert solve_steps(1, 1, 48, 1 / 3) == (16, 32)
    s1, s2 = solve_steps(3, 5, 1200, 1 / 3)
    assert 3 * s1 + 5 * s2 == 1200
    with pytest.raises(ValueError):
        solve_steps(0, 5, 48, 1 / 3)


def test_summary_counts_qualified_tasks():
    tasks = [{"name": "a"}, {"name": "b"}]
    scores = {"single-task": {"a": 0.5, "b": 0.8}, "naive": {"a": 0.5, "b": 0.7}}
    summary = summarise(tasks, scores)
    assert summary["naive"]["qualified"] == ["a"]
    assert summary["naive"]["ratios"]["b"] == pytest.approx(0.875)


def test_cgc_lora_is_three_stage_with_cgc_experts(built, tmp_path: Path):
    from mtd_contract.config import EvalConfig

    _, data, spec_dir, base, scale, specs = built
    cgc, three = specs["cgc-lora"]["spec"], specs["three-stage"]["spec"]
    assert cgc["training"]["method"] == "cgcLora"
    assert three["training"]["method"] == "lora" and "cgcLora" not in three["training"]
    experts = cgc["training"]["cgcLora"]
    exported = (experts["commonExperts"] + experts["specificExperts"]) * experts["expertRank"]
    assert exported == scale.lora_rank == scale.cgc_task_rank
    # Same plan otherwise: groups, stages, steps and sampling.
    plans = {name: plan_of(specs[name], spec_dir)[2] for name in ("cgc-lora", "three-stage")}
    shape = {
        name: [(s.group, s.name, s.max_steps, s.sampling.rates) for s in plan.stages()]
        for name, plan in plans.items()
    }
    assert shape["cgc-lora"] == shape["three-stage"]
    # Scored with each task's exported adapter, not one adapter per group.
    configs = eval_configs(
        "cgc-lora", specs["cgc-lora"], spec_dir, tmp_path / "ws", data, tmp_path / "e", base, scale
    )
    for config in configs:
        EvalConfig.model_validate(config)
        assert config["adapter"] is None
        names = [t["name"] for t in config["tasks"]]
        assert sorted(config["task_adapters"]) == sorted(names)
        for task, path in config["task_adapters"].items():
            assert path.endswith(f"/adapters/{task}")
    lora_configs = eval_configs(
        "three-stage", specs["three-stage"], spec_dir, tmp_path / "ws", data, tmp_path / "e",
        base, scale,
    )  # fmt: skip
    assert all("task_adapters" not in c and c["adapter"].endswith("/adapter") for c in lora_configs)


def test_every_scale_exports_cgc_adapters_of_the_lora_rank():
    for scale in SCALES.values():
        assert scale.cgc_task_rank == scale.lora_rank


def test_adapter_label():
    assert adapter_label("/w/bench/train/binary-stage2-ab/adapter") == "binary-stage2-ab"
    assert (
        adapter_label("/w/bench/train/binary-stage2-ab/adapters/movie-review-sentiment")
        == "binary-stage2-ab/movie-review-sentiment"
    )


def test_a_later_run_keeps_the_first_runs_provenance(tmp_path: Path):
    first = {  # as the committed quick report's first run: recorded before runs were tracked
        "started": "2026-01-01T06:00:00+00:00",
        "finished": "2026-01-01T07:00:00+00:00",
        "minutes": 60.0,
        "load_start": 6.0,
        "load_end": 3.0,
        "git": "abc1234",
        "methods": ["single-task", "naive"],
        "trained_runs": None,
    }
    old = {"command": "python -m bench.quality --scale quick", "invocations": [first]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(old))
    assert previous_invocations(path, "python -m bench.quality --other") == []
    assert previous_invocations(path, old["command"]) == [first]
    later = {
        "started": "2026-01-02T08:00:00+00:00",
        "finished": "2026-01-02T08:20:00+00:00",
        "minutes": 20.0,
        "load_start": 1.0,
        "load_end": 2.0,
        "git": "def5678",
        "methods": ["single-task", "naive", "cgc-lora"],
        "trained_runs": {"single-task": [], "naive": [], "cgc-lora": ["train/a", "train/b"]},
    }
    report = {"command": old["command"], "seed": 0, "invocations": [first, later]}
    text = "\n".join(provenance(report))
    assert "2 invocations" in text
    assert "2026-01-01T06:00:00+00:00 → 2026-01-01T07:00:00+00:00" in text
    assert "trained and scored `single-task`, `naive`." in text
    assert "trained and scored `cgc-lora` (2 training runs), added by a later run" in text
    assert "`single-task`, `naive` reused" in text
    later["note"] = "The code that ran was committed as 1234567."
    assert "scores read back). The code that ran was committed as 1234567." in "\n".join(
        provenance(report)
    )


def test_ablations_that_share_a_stage_train_in_one_chain(built):
    """What `chained` guards against is real: the stage-1 ablations plan three-stage's
    very stage 1 (same output folder), so a lane per method would train it twice at once."""
    from bench.runs import stage_steps
    from bench.seeds import chained

    _, _, spec_dir, _, _, specs = built
    runs = {name: {s.output for s in stage_steps(spec, spec_dir)} for name, spec in specs.items()}
    assert runs["three-stage"] & runs["tau-1"] and runs["three-stage"] & runs["no-cap"]
    chains = chained(runs)
    together = next(c for c in chains if "three-stage" in c)
    assert {"tau-1", "tau-3.33", "no-cap"} <= set(together)
    assert ["single-task"] in chains and ["naive"] in chains
    assert sorted(m for c in chains for m in c) == sorted(runs)
