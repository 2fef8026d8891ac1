"""A scale with several training seeds: train and score every (seed, method) in parallel
lanes, then compare methods with intervals over test examples and seeds.

Each seed has its own work folder (`.cache/bench/SCALE-seedN`: specs, workspace, scores);
every seed uses the same data split (`--data-seed`), so all models are scored on the same
test examples in the same order, which is what pairs them. The untrained base model does
not depend on the seed and is scored once. Training runs are `mtd run` (the product's
local driver) and scoring is `python -m mtd_trainer evaluate --config` (what a cluster
runs), each a child process, `--jobs` at a time; both are content-addressed, so a rerun
reuses whatever is finished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.runs import (
    ensure_inputs,
    log,
    run_method,
    stage_steps,
    training_cost,
    unfinished_runs,
)
from bench.scales import BASE_MODEL, METHODS, ROOT, Method, Scale
from bench.specs import base_model_eval_config, build_specs, eval_configs, task_definitions


@dataclass(frozen=True)
class Seeded:
    """One seed's work folder, data and specs."""

    seed: int
    work: Path
    data_dir: Path
    specs: dict[str, dict[str, Any]]

    @property
    def workspace(self) -> Path:
        return self.work / "workspace"

    def spec_path(self, method: str) -> Path:
        return self.work / f"spec-{method}.yaml"


def prepare(scale_name: str, scale: Scale, seeds: list[int], methods, data_seed: int):
    """Data and specs for every seed (the spec folder is the work folder: data paths must
    stay inside it)."""
    tasks = task_definitions(scale.tasks)
    prepared = []
    for seed in seeds:
        work = (ROOT / ".cache" / "bench" / f"{scale_name}-seed{seed}").resolve()
        data_dir = ensure_inputs(work, scale, data_seed)
        specs = build_specs(tasks, data_dir, work, BASE_MODEL, scale, seed, methods)
        for name, spec in specs.items():
            (work / f"spec-{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        prepared.append(Seeded(seed, work, data_dir, specs))
    return tasks, prepared


def in_lanes(jobs: int, work: list[tuple[str, Any]], run) -> list[Any]:
    """run(item) for every (label, item), `jobs` at a time; the first failure stops it."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [(label, pool.submit(run, item)) for label, item in work]
        return [future.result() for _, future in futures]


def chained(runs: dict[str, set[str]]) -> list[list[str]]:
    """Methods (in order) split into chains that share no training run with each other.

    Methods of one seed train in one workspace, and two methods can plan the very same run
    (three-stage and tau-1 share their stage 1): two `mtd run`s must never train it at
    once, so methods linked by a shared run, directly or through others, form one chain,
    trained one after the other in a lane."""
    chains: list[tuple[list[str], set[str]]] = []  # disjoint: (methods, their runs)
    for method, outputs in runs.items():
        linked = [chain for chain in chains if chain[1] & outputs]
        members = [m for names, _ in linked for m in names] + [method]
        shared = set(outputs).union(*(chain_runs for _, chain_runs in linked))
        chains = [chain for chain in chains if chain not in linked] + [(members, shared)]
    order = list(runs)
    by_order = [sorted(names, key=order.index) for names, _ in chains]
    return sorted(by_order, key=lambda names: order.index(names[0]))


def chains_of(specs: dict[str, Any], spec_dir: Path, methods) -> list[list[str]]:
    """`chained` on the training runs each method's spec plans."""
    runs = {m.name: {step.output for step in stage_steps(specs[m.name], spec_dir)} for m in methods}
    return chained(runs)


def train_all(prepared: list[Seeded], methods: tuple[Method, ...], jobs: int):
    """Every (seed, method) trained with `mtd run`, `jobs` chains at a time (see
    `chained`); returns the runs each had to train."""
    todo = {
        f"seed{s.seed}/{m.name}": unfinished_runs(s.specs[m.name], s.work, s.workspace)
        for s in prepared
        for m in methods
    }
    units = []
    for s in prepared:
        units += [
            (f"seed{s.seed}/{'+'.join(c)}", (s, c)) for c in chains_of(s.specs, s.work, methods)
        ]

    def train(unit: tuple[Seeded, list[str]]) -> None:
        seeded, chain = unit  # logs/METHOD.log and METHOD.serving.json in the seed's folder
        for method in chain:
            run_method(method, seeded.spec_path(method), seeded.workspace, seeded.work / "logs")

    in_lanes(jobs, units, train)
    return todo


def evaluate_child(config: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    """Score one config in a child `python -m mtd_trainer evaluate` (reused when done)."""
    output = Path(config["output_path"])
    if not output.exists():
        config_dir.mkdir(parents=True, exist_ok=True)
        path = config_dir / f"eval-{output.stem}.json"
        path.write_text(json.dumps(config, indent=2))
        started = time.monotonic()
        log(f"scoring {config['run_name']} ({path.name})")
        with (config_dir / f"eval-{output.stem}.log").open("a", encoding="utf-8") as out:
            code = subprocess.run(
                [sys.executable, "-m", "mtd_trainer", "evaluate", "--config", str(path)],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=os.environ.copy(),
            ).returncode  # fmt: skip
        if code != 0:
            raise SystemExit(f"scoring {config['run_name']} failed ({code}); see {out.name}")
        log(f"scored {config['run_name']} in {time.monotonic() - started:.0f}s")
    return json.loads(output.read_text(encoding="utf-8"))


def score_all(prepared: list[Seeded], methods, scale: Scale, tasks, jobs: int):
    """Test-split results: results[method][seed][task] (a task row with per_example), and
    the base model's results[task]. The longest configs go first, so lanes end together."""
    first = prepared[0]
    base = base_model_eval_config(tasks, first.data_dir, first.work / "eval", BASE_MODEL, scale)
    configs: list[tuple[str, tuple[dict[str, Any], Path]]] = [
        ("base", (base, first.work / "configs"))
    ]
    owners: list[tuple[str, int]] = [("base", -1)]
    for s in prepared:
        for m in methods:
            for config in eval_configs(
                m.name, s.specs[m.name], s.work, s.workspace, s.data_dir, s.work / "eval",
                BASE_MODEL, scale,
            ):  # fmt: skip
                configs.append((config["run_name"], (config, s.work / "configs")))
                owners.append((m.name, s.seed))
    order = sorted(range(len(configs)), key=lambda i: -len(configs[i][1][0]["tasks"]))
    done = in_lanes(jobs, [configs[i] for i in order], lambda item: evaluate_child(*item))
    results: dict[str, dict[int, dict[str, Any]]] = {m.name: {} for m in methods}
    base_rows: dict[str, Any] = {}
    for i, result in zip(order, done, strict=True):
        method, seed = owners[i]
        target = base_rows if method == "base" else results[method].setdefault(seed, {})
        target.update(result["tasks"])
    return results, base_rows


def costs(prepared: list[Seeded], methods) -> dict[str, dict[int, dict[str, Any]]]:
    """Each (method, seed)'s training cost, from the runs' own result files (the plan,
    the same for every seed, is left out)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for m in methods:
        out[m.name] = {}
        for s in prepared:
            cost = training_cost(s.specs[m.name], s.work, s.workspace)
            out[m.name][s.seed] = {k: v for k, v in cost.items() if k != "plan"}
    return out


def per_example_file(results, base_rows) -> dict[str, Any]:
    """What each test example contributed, per model: enough to recompute every interval."""
    return {
        "base": {task: row["per_example"] for task, row in base_rows.items()},
        "methods": {
            method: {
                str(seed): {task: row["per_example"] for task, row in rows.items()}
                for seed, rows in seeds.items()
            }
            for method, seeds in results.items()
        },
    }


def selected_methods(scale: Scale, requested: set[str]) -> tuple[Method, ...]:
    wanted = set(scale.methods or ()) | requested
    return tuple(m for m in METHODS if m.name in wanted)
