"""The imbalanced scale: a subset of the tasks, one of them cut to a few training examples,
so that three-stage and naive differ only by staging and sampling (issue #18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import quality, seeds_report
from bench.quality_report import tasks_section
from bench.scales import SCALES, quick_variant
from bench.specs import build_specs, plan_of, task_definitions, train_path, write_train_limits

HIGH, LOW = "chinese-review-sentiment", "movie-review-sentiment"


def write_data(data: Path, counts: dict[str, int]) -> None:
    for task in task_definitions(tuple(counts)):
        folder = data / task["name"]
        folder.mkdir(parents=True)
        labels = task["labels"]
        for split, count in (("train", counts[task["name"]]), ("test", 4)):
            rows = [
                {"input": f"{split} {i} of {task['name']}", "output": labels[i % len(labels)]}
                for i in range(count)
            ]
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_task_definitions_keep_the_spec_order_and_refuse_unknown_names():
    names = [t["name"] for t in task_definitions((LOW, HIGH))]
    assert names == [HIGH, LOW]  # the quickstart spec's order, not the argument's
    assert len(task_definitions()) == 6
    with pytest.raises(ValueError, match=r"unknown tasks \['nope'\]; the quickstart spec has"):
        task_definitions(("nope", HIGH))


def test_a_cut_task_trains_on_the_first_n_examples(tmp_path: Path):
    write_data(tmp_path, {HIGH: 30, LOW: 12})
    scale = quick_variant(SCALES["quick"], train_limits=((LOW, 5),))
    assert scale.train_limit(LOW) == 5 and scale.train_limit(HIGH) is None
    assert train_path(tmp_path, HIGH, scale) == tmp_path / HIGH / "train.jsonl"
    write_train_limits(tmp_path, scale)
    cut = train_path(tmp_path, LOW, scale)
    full = (tmp_path / LOW / "train.jsonl").read_text().splitlines()
    assert cut.read_text().splitlines() == full[:5]
    stamp = cut.stat().st_mtime_ns
    write_train_limits(tmp_path, scale)  # a rerun leaves the file (and run hashes) alone
    assert cut.stat().st_mtime_ns == stamp
    too_many = quick_variant(SCALES["quick"], train_limits=((LOW, 13),))
    with pytest.raises(ValueError, match="has 12 training examples, fewer than 13"):
        write_train_limits(tmp_path, too_many)


def test_the_imbalanced_scale_differs_from_naive_only_by_staging_and_sampling(tmp_path: Path):
    scale = SCALES["imbalanced"]
    assert scale.tasks == (HIGH, LOW) and scale.seeds == (0, 1, 2)
    assert scale.train_limit(LOW) == 100 and scale.test_examples == 300
    # The same shape, shrunk: 60 examples against 4 (the real scale: 16,547 against 100).
    small = quick_variant(scale, high_resource_min_examples=50, train_limits=((LOW, 4),))
    data = tmp_path / "data"
    write_data(data, {HIGH: 60, LOW: 9})
    write_train_limits(data, small)
    tasks = task_definitions(small.tasks)
    methods = quality.seeds.selected_methods(small, set())
    specs = build_specs(tasks, data, tmp_path, tmp_path / "m", small, 0, methods)
    plans = {name: plan_of(spec, tmp_path) for name, spec in specs.items()}
    for _, profiles, _ in plans.values():
        assert profiles[LOW].train_examples == 4 and profiles[HIGH].train_examples == 60

    (naive,) = plans["naive"][2].groups
    assert naive.final_stage.sampling.rates == pytest.approx({HIGH: 60 / 64, LOW: 4 / 64})
    (three,) = plans["three-stage"][2].groups  # one taxonomy group: no filtering effect
    assert three.name == "binary" and three.high_resource == (HIGH,)
    stage1, stage2 = three.stages
    assert stage1.tasks == (HIGH,) and stage2.starts_from == stage1.hash
    assert stage2.sampling.temperature == 2.0
    assert stage2.sampling.rates[LOW] == pytest.approx(2 / (2 + 60**0.5))
    assert len(plans["single-task"][2].groups) == 2

    rows = quality.task_rows(tasks, specs, tmp_path, data, small)
    assert [r.get("train_available") for r in rows] == [None, 9]
    text = "\n".join(tasks_section({"scale_settings": small.__dict__, "tasks": rows}))
    assert f"| `{LOW}` | binary | 4 (cut from 9) |" in text


def test_the_report_shows_what_each_method_drew_of_each_task():
    per_method = {"single-task": {"a": 64, "b": 64}, "naive": {"a": 127, "b": 1},
                  "three-stage": {"a": 100, "b": 28}}  # fmt: skip

    def seeds(draws: dict[str, int]) -> dict:
        half = {t: n // 2 for t, n in draws.items()}
        rest = {t: n - half[t] for t, n in draws.items()}
        runs = [{"examples_per_task": half}, {"examples_per_task": rest}]
        return {"0": {"training": {"runs": runs}}, "1": {"training": {"runs": runs}}}

    report = {
        "methods": {m: {"seeds": seeds(d)} for m, d in per_method.items()},
        "analysis": {"tasks": {"a": {}, "b": {}}},
    }
    lines = seeds_report._draws_section(report)
    assert "| `a` | 64 | 127 | 100 |" in lines
    assert "| `b` | 64 | 1 | 28 |" in lines
