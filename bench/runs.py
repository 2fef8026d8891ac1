"""Running a method: inputs, `mtd run`, the trainer's `evaluate`, and what a run cost."""

from __future__ import annotations

import datetime as dt
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.scales import BASE_MODEL, DEPLOYMENT, QUICKSTART, ROOT, Scale
from bench.specs import plan_of, write_train_limits


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    # one write per line: lanes log from threads, and print() writes the newline apart
    sys.stdout.write(f"[{stamp}] {message}\n")
    sys.stdout.flush()


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
    write_train_limits(data_dir, scale)
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
