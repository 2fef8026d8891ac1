"""How long `mtd plan` takes as the task count grows (issue: planner at 10,000 tasks).

Writes a spec with N tasks (a mix of generation, binary, ordinal and multi-class, each
with a small JSON Lines file), then times the real CLI end to end in a subprocess and the
phases in-process: YAML load + validation, data profiling, planning.

    .venv/bin/python -m bench.plan_scale --tasks 10 1000 10000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mtd_operator.core.planner import plan
from mtd_operator.data_files import profile_spec
from mtd_operator.specfile import load_resource

KINDS = [
    ("generation", None, False),
    ("classification", ["no", "yes"], False),
    ("classification", ["low", "mid", "high"], True),
    ("classification", ["a", "b", "c", "d"], False),
]


def write_spec(folder: Path, n_tasks: int, examples: int) -> Path:
    tasks = []
    for i in range(n_tasks):
        kind, labels, ordinal = KINDS[i % len(KINDS)]
        name = f"task-{i}"
        train = folder / "data" / f"{name}.jsonl"
        train.parent.mkdir(parents=True, exist_ok=True)
        count = examples * (1 + i % 7)
        rows = (
            json.dumps(
                {
                    "input": f"example {j} of {name}",
                    "output": labels[j % len(labels)] if labels else f"answer {j}",
                }
            )
            for j in range(count)
        )
        train.write_text("\n".join(rows) + "\n")
        task = {
            "name": name,
            "type": kind,
            "instruction": f"Do {name}.",
            "data": {"train": f"data/{name}.jsonl"},
        }
        if labels:
            task["labels"] = labels
            task["ordinal"] = ordinal
        tasks.append(task)
    doc = {
        "apiVersion": "multitask.dev/v1alpha1",
        "kind": "MultiTaskDeployment",
        "metadata": {"name": "scale"},
        "spec": {
            "baseModel": {"uri": "/models/base"},
            "tasks": tasks,
            "training": {"highResourceMinExamples": examples * 4},
        },
    }
    path = folder / "mtd.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def measure(n_tasks: int, examples: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_spec(Path(tmp), n_tasks, examples)
        start = time.perf_counter()
        resource = load_resource(path)
        loaded = time.perf_counter()
        profiles, problems = profile_spec(resource.spec, path.parent)
        assert not problems, problems[:3]
        profiled = time.perf_counter()
        result = plan(resource.spec, profiles)
        planned = time.perf_counter()
        cli_start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "mtd_operator.cli", "plan", str(path), "-o", "json"],
            capture_output=True,
            check=True,
        )
        cli = time.perf_counter() - cli_start
        assert len(json.loads(proc.stdout)["groups"]) == len(result.groups)
    return {
        "tasks": n_tasks,
        "load_validate_s": loaded - start,
        "profile_s": profiled - loaded,
        "plan_s": planned - profiled,
        "cli_total_s": cli,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--examples", type=int, default=20, help="base examples per task")
    args = parser.parse_args()
    print(f"{'tasks':>7} {'load+validate':>14} {'profile':>9} {'plan':>8} {'mtd plan (CLI)':>15}")
    for n in args.tasks:
        r = measure(n, args.examples)
        print(
            f"{r['tasks']:>7} {r['load_validate_s']:>13.3f}s {r['profile_s']:>8.3f}s "
            f"{r['plan_s']:>7.3f}s {r['cli_total_s']:>14.3f}s"
        )


if __name__ == "__main__":
    main()
