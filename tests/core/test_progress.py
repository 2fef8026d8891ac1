"""The progress line of `mtd run`: step work from rendered configs, and the time-left estimate."""

from __future__ import annotations

from mtd_operator.local.progress import STARTUP_UNITS, Progress, fmt_duration, step_work


def test_step_work_counts_optimizer_steps_and_scored_examples() -> None:
    train = {"kind": "train", "hyperparameters": {"max_steps": 10}}
    compose = {"kind": "compose", "calibration": {"max_steps": 8}}
    merge_only = {"kind": "compose"}
    evaluate = {
        "kind": "evaluate",
        "tasks": [
            {"name": "topic", "type": "classification", "labels": ["a", "b", "c", "d", "e"]},
            {"name": "headline", "type": "generation"},
            {"name": "no-eval-data", "type": "generation"},
        ],
    }
    assert step_work(train) == STARTUP_UNITS + 10
    assert step_work(compose) == STARTUP_UNITS + 8
    assert step_work(merge_only) == STARTUP_UNITS
    # 50 x 5 label likelihoods = 10 units; 50 generated answers = 10 units
    assert step_work(evaluate, {"topic": 50, "headline": 50}) == STARTUP_UNITS + 20


def test_no_estimate_before_a_step_finished_then_the_pace_of_this_run() -> None:
    progress = Progress(work={"a": 10.0, "b": 20.0, "c": 10.0})
    assert progress.line("a", 0, 3, ["a", "b", "c"]) == "▶ a [0/3 done]"
    progress.finished("a", 50.0)  # 5 s a unit
    assert progress.line("b", 1, 3, ["b", "c"]) == "▶ b [1/3 done, ~2m30s left]"
    progress.finished("b", 60.0)  # 110 s for 30 units
    assert progress.line("c", 2, 3, ["c"]) == "▶ c [2/3 done, ~37s left]"


def test_fmt_duration() -> None:
    assert fmt_duration(5) == "5s"
    assert fmt_duration(65) == "1m05s"
    assert fmt_duration(3600) == "60m00s"
