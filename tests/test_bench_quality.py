"""bench/quality.py builds fair, leak-free specs: equal budgets, test data only in scoring.

No training here: tiny fake data files, the real planner, and the spec/eval builders.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from mtd_operator.core.sampling import instance_rates

ROOT = Path(__file__).resolve().parents[1]

COUNTS = {  # the real data's shape, shrunk: three high-resource tasks, one tiny one
    "tweet-sentiment": 72,
    "chinese-review-sentiment": 34,
    "movie-review-sentiment": 25,
    "bbc-topic": 8,
    "bbc-headline": 8,
    "paper-summary": 3,
}


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
def built(quality, tmp_path: Path):
    tasks = quality.task_definitions()
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
    scale = quality.quick_variant(quality.SCALES["quick"], high_resource_min_examples=20)
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    base = tmp_path / "model"
    specs = quality.build_specs(tasks, data, spec_dir, base, scale, seed=3)
    return quality, tasks, data, spec_dir, base, scale, specs


def test_every_method_has_the_same_budget(built):
    quality, _, _, spec_dir, _, scale, specs = built
    assert set(specs) == set(quality.METHOD_NAMES)
    budgets = {}
    for name, spec in specs.items():
        _, _, plan = quality.plan_of(spec, spec_dir)
        budgets[name] = quality.plan_budget(plan, scale.batch_size)
        assert spec["spec"]["training"]["batchSize"] == scale.batch_size
        assert spec["spec"]["training"]["seed"] == 3
    assert {b["steps"] for b in budgets.values()} == {scale.budget_steps}
    assert {b["examples"] for b in budgets.values()} == {scale.budget_steps * scale.batch_size}


def test_methods_are_what_they_claim(built):
    quality, tasks, _, spec_dir, _, scale, specs = built
    plans = {name: quality.plan_of(spec, spec_dir)[2] for name, spec in specs.items()}

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
    quality, tasks, data, spec_dir, base, scale, specs = built
    for name, spec in specs.items():
        text = yaml.safe_dump(spec)
        assert "test.jsonl" not in text and "eval.jsonl" not in text, name
        for task in spec["spec"]["tasks"]:
            assert set(task["data"]) == {"train"}
            assert (spec_dir / task["data"]["train"]).resolve() == (
                data / task["name"] / "train.jsonl"
            ).resolve()
        _, _, plan = quality.plan_of(spec, spec_dir)
        configs = quality.eval_configs(
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
    base_config = quality.base_model_eval_config(tasks, data, tmp_path / "eval", base, scale)
    assert base_config["adapter"] is None


def test_eval_configs_are_valid_trainer_configs(built, tmp_path: Path):
    from mtd_trainer.config import EvalConfig

    quality, _, data, spec_dir, base, scale, specs = built
    for name, spec in specs.items():
        for config in quality.eval_configs(
            name, spec, spec_dir, tmp_path / "ws", data, tmp_path / "eval", base, scale
        ):
            EvalConfig.model_validate(config)


def test_solve_steps(quality):
    assert quality.solve_steps(0, 6, 48, 1 / 3) == (1, 8)
    assert quality.solve_steps(2, 4, 48, 1 / 3) == (8, 8)
    assert quality.solve_steps(1, 1, 48, 1 / 3) == (16, 32)
    s1, s2 = quality.solve_steps(3, 5, 1200, 1 / 3)
    assert 3 * s1 + 5 * s2 == 1200
    with pytest.raises(ValueError):
        quality.solve_steps(0, 5, 48, 1 / 3)


def test_summary_counts_qualified_tasks(quality):
    tasks = [{"name": "a"}, {"name": "b"}]
    scores = {"single-task": {"a": 0.5, "b": 0.8}, "naive": {"a": 0.5, "b": 0.7}}
    summary = quality.summarise(tasks, scores)
    assert summary["naive"]["qualified"] == ["a"]
    assert summary["naive"]["ratios"]["b"] == pytest.approx(0.875)
