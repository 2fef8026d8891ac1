"""The multi-task sampler: which task each training example comes from.

The planner computes the rates (instance-balanced, or temperature-scaled with a cap);
here each draw picks a task with those probabilities, then the next example of that
task in a per-epoch shuffled order. Everything follows from the seed and a few
counters, so the state fits in a checkpoint and a resumed run draws what an
uninterrupted one would have drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TaskSampler:
    """Seeded, resumable draws of (task name, example index)."""

    def __init__(self, sizes: dict[str, int], rates: dict[str, float], seed: int) -> None:
        if set(sizes) != set(rates):
            raise ValueError(f"sizes {sorted(sizes)} and rates {sorted(rates)} differ")
        self.tasks = list(sizes)
        self.sizes = dict(sizes)
        probs = np.array([rates[task] for task in self.tasks], dtype=np.float64)
        self.probs = probs / probs.sum()
        self.seed = seed
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self.epoch = dict.fromkeys(self.tasks, 0)
        self.cursor = dict.fromkeys(self.tasks, 0)
        self.drawn = dict.fromkeys(self.tasks, 0)
        self._orders: dict[str, np.ndarray] = {}

    def draw(self) -> tuple[str, int]:
        task = self.tasks[int(self._rng.choice(len(self.tasks), p=self.probs))]
        if self.cursor[task] == self.sizes[task]:
            self.epoch[task] += 1
            self.cursor[task] = 0
            self._orders.pop(task, None)
        index = int(self._order(task)[self.cursor[task]])
        self.cursor[task] += 1
        self.drawn[task] += 1
        return task, index

    def draw_many(self, count: int) -> list[tuple[str, int]]:
        return [self.draw() for _ in range(count)]

    def _order(self, task: str) -> np.ndarray:
        """A task's example order in its current epoch: a pure function of seed and epoch."""
        if task not in self._orders:
            key = [self.seed, self.tasks.index(task), self.epoch[task]]
            self._orders[task] = np.random.default_rng(key).permutation(self.sizes[task])
        return self._orders[task]

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "sizes": self.sizes,
            "rng": self._rng.bit_generator.state,
            "epoch": self.epoch,
            "cursor": self.cursor,
            "drawn": self.drawn,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["seed"] != self.seed or state["sizes"] != self.sizes:
            raise ValueError(
                "the checkpoint's sampler was made for other data or another seed: "
                f"{state['sizes']} seed {state['seed']}, now {self.sizes} seed {self.seed}"
            )
        self._rng.bit_generator.state = state["rng"]
        self.epoch = dict(state["epoch"])
        self.cursor = dict(state["cursor"])
        self.drawn = dict(state["drawn"])
        self._orders.clear()
