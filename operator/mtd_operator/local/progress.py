"""The pipeline's progress for a person: which step runs, how many are done, time left.

The estimate weighs each step by the work its rendered config asks for (optimizer steps
of a training or calibration run, examples scored by an evaluation, plus a fixed
start-up cost for loading torch and the model) and converts work to time at the rate
the steps of this run have achieved so far; before any step finished, it says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# In optimizer steps of batch 4, as measured in one quickstart run on 2 cores: a process
# start (imports, model load) ≈ 1.5 steps; scoring 25 (example, label) pairs by their
# likelihood ≈ 1 step; generating answers for 5 examples ≈ 1 step.
STARTUP_UNITS = 1.5
LABELS_SCORED_PER_UNIT = 25.0
GENERATED_PER_UNIT = 5.0


def step_work(config: dict[str, Any], eval_examples: dict[str, int] | None = None) -> float:
    """Work units of one step, from its rendered trainer config (and eval set sizes)."""
    if config["kind"] == "train":
        units = float(config["hyperparameters"]["max_steps"])
    elif config["kind"] == "compose":
        units = float((config.get("calibration") or {}).get("max_steps", 0))
    else:
        units = 0.0
        for task in config["tasks"]:
            examples = (eval_examples or {}).get(task["name"], 0)
            if task["type"] == "generation":
                units += examples / GENERATED_PER_UNIT
            else:
                units += examples * len(task.get("labels") or ()) / LABELS_SCORED_PER_UNIT
    return STARTUP_UNITS + units


def fmt_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class Progress:
    """Work of the steps this run still has to do, and the rate it has done work at."""

    seconds: float = 0.0  # spent on steps run by this process
    units_done: float = 0.0
    work: dict[str, float] = field(default_factory=dict)  # step key → units

    def finished(self, key: str, seconds: float) -> None:
        self.seconds += seconds
        self.units_done += self.work.get(key, 0.0)

    def line(self, key: str, done: int, total: int, remaining: list[str]) -> str:
        """`▶ KEY [3/11 done, ~4m10s left]` for the step about to start."""
        left = ""
        if self.units_done > 0:
            units = sum(self.work.get(step, 0.0) for step in remaining)
            left = f", ~{fmt_duration(units * self.seconds / self.units_done)} left"
        return f"▶ {key} [{done}/{total} done{left}]"
