"""Seconds per training step with and without one competing CPU-bound process.

Each measurement is a fresh `python -m mtd_trainer train` child process on the
quickstart's tweet-sentiment data (SmolLM2-135M, LoRA r=16, batch 8), whose own
metrics.jsonl gives each step's tokens/s; the median over all but the first step
(cold caches) is reported. Variants:

* `chosen`: the trainer's own thread choice (`mtd_trainer.threads`: affinity and
  cgroup quota, idle OpenMP workers sleep);
* `torch-default`: the same with OMP_WAIT_POLICY and OMP_NUM_THREADS as torch leaves
  them (one spinning thread per core; set here to the core count);
* `one-thread`: OMP_NUM_THREADS=1.

Each runs alone, then beside `python -c 'while 1: pass'`. The 1-minute load average is
recorded before each run: on a shared machine the figures are upper bounds.

    python -m bench.cpu_contention [MODEL_DIR] [--steps 6] [--variants chosen,torch-default]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "quickstart" / "data" / "tweet-sentiment"
VARIANTS = ("chosen", "torch-default", "one-thread")


def variant_env(name: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
    }
    if name == "torch-default":
        # What torch does on its own: a thread per core, libgomp's spin-then-sleep wait.
        env["OMP_NUM_THREADS"] = str(os.cpu_count() or 1)
        env["OMP_WAIT_POLICY"] = "ACTIVE"
    elif name == "one-thread":
        env["OMP_NUM_THREADS"] = "1"
    return env


def train_config(model: Path, out: Path, steps: int) -> dict:
    return {
        "kind": "train",
        "run_name": "contention",
        "base_model": str(model),
        "tasks": [
            {
                "name": "tweet-sentiment",
                "type": "classification",
                "labels": ["negative", "neutral", "positive"],
                "instruction": "Classify the sentiment of the tweet.",
                "metric": "accuracy",
                "train_path": str(DATA / "train.jsonl"),
            }
        ],
        "sampling": {"strategy": "instance", "rates": {"tweet-sentiment": 1.0}},
        "hyperparameters": {
            "max_steps": steps,
            "batch_size": 8,
            "max_seq_length": 128,
            "log_every": 1,
            "checkpoint_every": steps,
        },
        "output_dir": str(out),
    }


def seconds_per_step(model: Path, variant: str, steps: int, competing: bool) -> dict:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(train_config(model, Path(tmp) / "out", steps)))
        rival = subprocess.Popen([sys.executable, "-c", "while 1: pass"]) if competing else None
        try:
            subprocess.run(
                [sys.executable, "-m", "mtd_trainer", "train", "--config", str(config)],
                env=variant_env(variant),
                check=True,
                capture_output=True,
            )
        finally:
            if rival is not None:
                rival.kill()
                rival.wait()
        lines = (Path(tmp) / "out" / "metrics.jsonl").read_text().splitlines()
        result = json.loads((Path(tmp) / "out" / "result.json").read_text())
    rates = sorted(json.loads(line)["tokens_per_second"] for line in lines[1:])
    rate = rates[len(rates) // 2]  # median over the warm steps
    # Every run draws the same examples (same seed), so a step's mean token count is
    # the same for every variant and the seconds follow from the rate.
    return {
        "variant": variant,
        "competing": competing,
        "load_1min_before": round(load, 2),
        "tokens_per_second": round(rate, 1),
        "seconds_per_step": round(result["tokens_trained"] / result["steps"] / rate, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=str(ROOT / ".cache/models/smollm2-135m"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--variants", default="chosen,torch-default")
    args = parser.parse_args()
    rows = []
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"--variants: {variant!r} is not one of {', '.join(VARIANTS)}")
        for competing in (False, True):
            row = seconds_per_step(Path(args.model), variant, args.steps, competing)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
