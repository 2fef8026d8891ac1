"""The several-seed report: analysis from per-example results, findings, tables, plot."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bench import quality, seeds_report
from bench.scales import SCALES
from bench.specs import build_specs, plan_budget, plan_of, task_definitions

TASKS = ("alpha", "beta")


def labels(p: float, n: int, seed: int) -> dict:
    """A classification result: right with probability p."""
    rng = random.Random(seed)
    refs = [rng.randrange(3) for _ in range(n)]
    preds = [r if rng.random() < p else (r + 1) % 3 for r in refs]
    return {"metric": "accuracy", "kind": "labels", "predictions": preds, "references": refs}


def rouge(mean: float, n: int, seed: int) -> dict:
    rng = random.Random(seed)
    return {"metric": "rougeL", "kind": "mean",
            "values": [min(1.0, max(0.0, rng.gauss(mean, 0.1))) for _ in range(n)]}  # fmt: skip


def fake_per_example(naive: float, three: float, n: int = 200) -> dict:
    def model(p: float, seed: int) -> dict:
        return {"alpha": labels(p, n, seed), "beta": rouge(p / 2, n, seed + 1)}

    return {
        "base": model(0.4, 1),
        "methods": {
            "single-task": {str(s): model(0.7, 10 + s) for s in range(3)},
            "naive": {str(s): model(naive, 20 + s) for s in range(3)},
            "three-stage": {str(s): model(three, 30 + s) for s in range(3)},
        },
    }


def fake_report(per_example: dict) -> dict:
    methods = {}
    for m in per_example["methods"]:
        methods[m] = {
            "serving": {"adapters": 2, "deployments": 2 if m == "single-task" else 1},
            "seeds": {
                s: {"training": {"tokens": 1000, "wall_seconds": 60.0, "runs": [{}, {}]}}
                for s in per_example["methods"][m]
            },
        }
    report = {
        "scale": "medium",
        "seeds": [0, 1, 2],
        "data_seed": 0,
        "command": "python -m bench.quality --scale medium",
        "jobs": 2,
        "trained_runs": {"seed0/naive": ["a", "b"], "seed1/naive": ["c", "d"]},
        "started": "2026-12-04T16:00:00+00:00",
        "finished": "2026-12-04T18:00:00+00:00",
        "wall_minutes": 120.0,
        "load": {"start": [2.0, 2.0, 2.0], "end": [2.0, 2.0, 2.0]},
        "versions": {"torch": "2.13.0"},
        "machine": {"cpu": "cpu", "cores": 2, "platform": "linux", "torch_threads": 1},
        "scale_settings": {**SCALES["medium"].__dict__},
        "tasks": [
            {
                "name": t,
                "kind": "k",
                "train_examples": 10,
                "test_examples": 200,
                "metric": "accuracy",
                "high_resource": False,
            }
            for t in TASKS
        ],
        "base_scores": {t: 0.3 for t in TASKS},
        "methods": methods,
        "analysis": seeds_report.analyse(per_example, list(TASKS)),
    }
    report["findings"] = seeds_report.findings(report)
    return report


def test_a_clearly_better_method_is_significant_and_qualified():
    report = fake_report(fake_per_example(naive=0.45, three=0.75))
    a = report["analysis"]
    assert a["three-stage − naive"]["low"] > 0
    assert a["methods"]["naive"]["verdicts"]["NotQualified"] == 2
    assert a["tasks"]["alpha"]["single-task"]["vs_base"]["low"] > 0
    assert "the three-stage method **beats** naive multi-task training" in "".join(
        report["findings"]
    )


def test_equal_methods_are_not_significant():
    report = fake_report(fake_per_example(naive=0.7, three=0.7))
    text = " ".join(report["findings"])
    assert "**not significant**" in text
    # same success rate, different seeds: the verdicts cannot be NotQualified
    for m in ("naive", "three-stage"):
        assert report["analysis"]["methods"][m]["verdicts"]["NotQualified"] == 0


def test_verdicts_use_the_products_min_eval_examples():
    """The report's verdicts follow the operator's own default, not a copy of it: one
    example fewer and a clearly worse method is Inconclusive instead of NotQualified."""
    from mtd_operator.api.spec import Qualification

    least = Qualification().min_eval_examples
    assert least == seeds_report.MIN_EXAMPLES
    for n, expected in ((least, "NotQualified"), (least - 1, "Inconclusive")):
        analysis = seeds_report.analyse(fake_per_example(0.3, 0.7, n), list(TASKS))
        assert {analysis["tasks"][t]["naive"]["verdict"] for t in TASKS} == {expected}, n


def test_markdown_and_plot_render_from_the_report_alone(tmp_path: Path):
    report = fake_report(fake_per_example(naive=0.6, three=0.7))
    report = json.loads(json.dumps(report))  # what results.json gives back
    quality.write_seeds_report(report, tmp_path)
    text = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "## Ratio to single-task [interval] and verdict" in text
    assert "14 of its 18 training runs were already done when it started" in text
    assert "Mean ratio, three-stage − naive:" in text
    assert (tmp_path / "ratio.png").stat().st_size > 10_000
    assert quality.render_only(tmp_path) == 0
    assert (tmp_path / "results.md").read_text(encoding="utf-8") == text


def test_the_medium_scale_gives_every_method_the_same_budget(tmp_path: Path):
    """Three seeds of the three methods that matter, 300 test examples, equal budgets."""
    scale = SCALES["medium"]
    assert scale.seeds == (0, 1, 2) and scale.test_examples == 300
    assert scale.methods == ("single-task", "naive", "three-stage")
    tasks = task_definitions()
    data = tmp_path / "data"
    sizes = {"tweet-sentiment": 36, "chinese-review-sentiment": 16,
             "movie-review-sentiment": 12}  # fmt: skip
    for task in tasks:
        folder = data / task["name"]
        folder.mkdir(parents=True)
        rows = [{"input": f"text {i}", "output": (task.get("labels") or ["x"])[0]}
                for i in range(sizes.get(task["name"], 3))]  # fmt: skip
        (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    small = quality.seeds.Scale(**{**scale.__dict__, "high_resource_min_examples": 10})
    methods = quality.seeds.selected_methods(small, set())
    specs = build_specs(tasks, data, tmp_path, tmp_path / "m", small, 1, methods)
    assert set(specs) == set(scale.methods)
    for spec in specs.values():
        _, _, plan = plan_of(spec, tmp_path)
        assert plan_budget(plan, small.batch_size)["steps"] == scale.budget_steps


@pytest.mark.parametrize("jobs", [1, 2])
def test_lanes_return_results_in_order_and_stop_on_failure(jobs: int):
    assert quality.seeds.in_lanes(jobs, [(str(i), i) for i in range(5)], lambda i: i * i) == [
        0, 1, 4, 9, 16,
    ]  # fmt: skip

    def boom(i: int) -> int:
        if i == 2:
            raise SystemExit("unit 2 failed")
        return i

    with pytest.raises(SystemExit, match="unit 2 failed"):
        quality.seeds.in_lanes(jobs, [(str(i), i) for i in range(4)], boom)


def test_methods_that_share_a_training_run_never_train_at_once():
    """three-stage and tau-1 plan the same stage 1 in one workspace: one chain, one lane."""
    runs = {
        "single-task": {"solo-a", "solo-b"},
        "naive": {"all"},
        "three-stage": {"binary-s1", "binary-s2-t2"},
        "tau-1": {"binary-s1", "binary-s2-t1"},
        "no-stage1": {"binary-s2-low"},
        "no-cap": {"x", "binary-s2-t1"},  # linked to three-stage through tau-1
    }
    assert quality.seeds.chained(runs) == [
        ["single-task"], ["naive"], ["three-stage", "tau-1", "no-cap"], ["no-stage1"],
    ]  # fmt: skip
    assert quality.seeds.chained({"a": {"1"}, "b": {"2"}, "c": {"1", "2"}}) == [["a", "b", "c"]]
    assert quality.seeds.chained({}) == []
