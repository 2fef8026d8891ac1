"""Running the composition benchmark: the single-task adapters it starts from, every
composition through the trainer's `compose` verb, each method's predictions (all
content-addressed under `<work>/composition/`, reused by a rerun with the wall times
measured when they were made), and each method's scores and serving cost."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.composition_task import (
    CONTROL,
    HEADLINE,
    INSTRUCTION,
    MERGE_WEIGHTS,
    NAME,
    TOPIC,
    Inputs,
    Settings,
    component_scores,
    compose_output,
    task_config,
)
from bench.runs import log, run_method, tensor_parameters
from bench.scales import BASE_MODEL, DEPLOYMENT, METHODS, ROOT
from bench.specs import build_specs, plan_of, task_definitions


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def single_task_adapters(work: Path, data_dir: Path, scale, seed: int) -> dict:
    """The quality benchmark's single-task adapters of the two tasks (trained if missing)."""
    from mtd_operator.core.steps import pipeline_steps

    spec_dir, workspace = work, work / "workspace"  # data/ inside the spec's folder
    method = next(m for m in METHODS if m.name == "single-task")
    tasks = task_definitions()
    spec = build_specs(tasks, data_dir, spec_dir, BASE_MODEL, scale, seed,
                               (method,))["single-task"]  # fmt: skip
    _, _, plan = plan_of(spec, spec_dir)
    steps = {s.group: s for s in pipeline_steps(plan) if s.role == "stage"}
    wanted = {task: steps[f"solo-{task}"] for task in (TOPIC, HEADLINE)}
    root = workspace / DEPLOYMENT
    if not all((root / s.result_path).exists() for s in wanted.values()):
        spec_path = spec_dir / "spec-single-task.yaml"
        import yaml

        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        log("single-task adapters missing: training them with mtd run")
        run_method("single-task", spec_path, workspace, work / "logs")
    return {
        task: {
            "adapter": str(root / step.adapter_path),
            "step": step.key,
            "train": json.loads((root / step.result_path).read_text()),
        }
        for task, step in wanted.items()
    }


def run_compose(config: dict[str, Any], folder: Path, log) -> dict[str, Any]:
    """`python -m mtd_trainer compose --config`, reused when done; wall time measured once."""
    key = digest({k: v for k, v in config.items() if k != "output_dir"})
    output = folder / f"{config['run_name'].rsplit('/', 1)[-1]}-{key}"
    config = {**config, "output_dir": str(output)}
    timing = output / "timing.json"
    if (output / "result.json").exists() and timing.exists():
        result = json.loads((output / "result.json").read_text())
        return {**result, **json.loads(timing.read_text()), "reused": True}
    output.mkdir(parents=True, exist_ok=True)
    config_path = output / "config.json"
    config_path.write_text(json.dumps(config, indent=2))
    command = [sys.executable, "-m", "mtd_trainer", "compose", "--config", str(config_path)]
    log(f"{config['run_name']}: {shlex.join(command)}")
    started, load = time.monotonic(), os.getloadavg()[0]
    with (output / "compose.log").open("w", encoding="utf-8") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if code != 0:
        raise SystemExit(f"compose failed ({code}); see {output / 'compose.log'}")
    measured = {
        "wall_seconds": round(time.monotonic() - started, 1),
        "load_start": round(load, 2),
        "load_end": round(os.getloadavg()[0], 2),
        "measured": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    }
    timing.write_text(json.dumps(measured, indent=2))
    log(f"{config['run_name']}: composed in {measured['wall_seconds']:.0f}s")
    result = json.loads((output / "result.json").read_text())
    return {**result, **measured, "reused": False}


def cached_predictions(path: Path, compute, log, label: str) -> dict[str, Any]:
    """Predictions and the seconds they took, computed once per content key."""
    if path.exists():
        return {**json.loads(path.read_text()), "reused": True}
    started, load = time.monotonic(), os.getloadavg()[0]
    predictions = compute()
    record = {
        "predictions": predictions,
        "seconds": round(time.monotonic() - started, 1),
        "load_start": round(load, 2),
        "load_end": round(os.getloadavg()[0], 2),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False))
    log(f"{label}: {len(predictions)} predictions in {record['seconds']:.0f}s")
    return {**record, "reused": False}


def adapter_parameters(adapter: str) -> int:
    return tensor_parameters(Path(adapter) / "adapter_model.safetensors")


def adapter_rank(adapter: str) -> int:
    return json.loads((Path(adapter) / "adapter_config.json").read_text())["r"]


def compose_all(singles, inputs: Inputs, folder: Path, settings: Settings, scale, seed: int):
    """Every composition through the trainer's own compose verb, and the control."""
    from mtd_contract.config import CalibrationConfig, ComposeConfig

    rows: dict[str, dict[str, Any]] = {}
    for merge in ("linear", "cat"):
        for calibrated in (False, True):
            name = f"{'calibrated' if calibrated else 'merge'}-{merge}"
            config: dict[str, Any] = {
                "kind": "compose",
                "run_name": f"composition/{name}",
                "base_model": str(BASE_MODEL),
                "adapters": [
                    {"path": singles[TOPIC]["adapter"], "weight": MERGE_WEIGHTS[0]},
                    {"path": singles[HEADLINE]["adapter"], "weight": MERGE_WEIGHTS[1]},
                ],
                "merge": {"method": merge},
                "output_dir": "",
            }
            if calibrated:
                config["calibration"] = CalibrationConfig(
                    train_path=str(inputs.calibration_path),
                    instruction=INSTRUCTION,
                    type="generation",
                    rank=settings.calibration_rank,
                    max_steps=settings.calibration_steps,
                    learning_rate=settings.calibration_learning_rate,
                    batch_size=scale.batch_size,
                    max_seq_length=scale.max_seq_length,
                    seed=seed,
                ).model_dump()
            ComposeConfig.model_validate({**config, "output_dir": "x"})  # fail before running
            rows[name] = run_compose(config, folder / "compose", log)
    # The control: the same correction on the base alone (merge weights 0: the merge is 0).
    control = {
        **config,
        "run_name": f"composition/{CONTROL}",
        "adapters": [{**ref, "weight": 0.0} for ref in config["adapters"]],
        "merge": {"method": "linear"},
    }
    ComposeConfig.model_validate({**control, "output_dir": "x"})
    rows[CONTROL] = run_compose(control, folder / "compose", log)
    return rows


def predict_all(singles, compose_rows, inputs: Inputs, folder: Path, data_dir, settings, scale):
    """Each method's answers on the test articles, cached by content."""
    from mtd_contract.config import TaskConfig
    from mtd_trainer.evaluation import Scorer, classify, generate, load_for_inference
    from mtd_trainer.modeling import load_tokenizer

    base_model = str(BASE_MODEL)
    tokenizer = load_tokenizer(base_model)
    texts, batch, max_len = inputs.texts, scale.eval_batch_size, scale.max_seq_length
    new_tokens = settings.max_new_tokens
    topic_adapter, headline_adapter = singles[TOPIC]["adapter"], singles[HEADLINE]["adapter"]
    composed_task = TaskConfig(
        name=NAME, type="generation", instruction=INSTRUCTION, metric="rougeL"
    )
    data_key = digest([texts, new_tokens, batch, max_len])
    predictions_dir = folder / "predictions"

    def scorer(adapter: str | None) -> Scorer:
        return Scorer(load_for_inference(base_model, adapter).eval(), tokenizer, batch, max_len)

    def generated(adapter: str | None, task: TaskConfig) -> list[str]:
        return generate(scorer(adapter), task, texts, new_tokens)

    def two_pass() -> list[str]:
        topics = classify(scorer(topic_adapter), task_config(TOPIC, data_dir, scale), texts)
        headline_task = task_config(HEADLINE, data_dir, scale)
        headlines = generate(scorer(headline_adapter), headline_task, texts, new_tokens)
        return [compose_output(t, h) for t, h in zip(topics, headlines, strict=True)]

    runs: dict[str, dict[str, Any]] = {}
    base_key = digest([data_key, INSTRUCTION])
    runs["base (zero-shot)"] = cached_predictions(
        predictions_dir / f"base-{base_key}.json",
        lambda: generated(None, composed_task), log, "base (zero-shot)",
    )  # fmt: skip
    two_key = digest([data_key, topic_adapter, headline_adapter, singles[TOPIC]["train"],
                      singles[HEADLINE]["train"]])  # fmt: skip
    runs["two-pass"] = cached_predictions(
        predictions_dir / f"two-pass-{two_key}.json", two_pass, log, "two-pass"
    )
    for name, row in compose_rows.items():
        key = digest([data_key, INSTRUCTION, row["artifact"]])
        runs[name] = cached_predictions(
            predictions_dir / f"{name}-{key}.json",
            lambda artifact=row["artifact"]: generated(artifact, composed_task), log, name,
        )  # fmt: skip
    return runs


def method_cost(name: str, singles, compose_rows) -> tuple[dict[str, Any], dict | None]:
    """What serving a method costs (passes, adapters, parameters, rank), and its compose row."""
    if name == "base (zero-shot)":
        return {"passes": 1, "adapters": 0, "parameters": 0, "rank": 0}, None
    if name == "two-pass":
        topic, headline = singles[TOPIC]["adapter"], singles[HEADLINE]["adapter"]
        return {
            "passes": 2,
            "adapters": 2,
            "parameters": adapter_parameters(topic) + adapter_parameters(headline),
            "rank": f"{adapter_rank(topic)} + {adapter_rank(headline)}",
        }, None
    composed = compose_rows[name]
    cost = {
        "passes": 1,
        "adapters": 1,
        "parameters": composed["parameters"],
        "rank": composed["rank"],
        "compose_seconds": composed["wall_seconds"],
        "compose_load": [composed["load_start"], composed["load_end"]],
    }
    if name == CONTROL:  # only the correction is non-zero (the merge part is 0)
        cost["parameters"] = composed["calibration"]["parameters"]
        cost["rank"] = composed["calibration"]["rank"]
        cost["artifact_rank"] = composed["rank"]
    return cost, {k: v for k, v in composed.items() if k not in ("reused",)}


def method_rows(runs, singles, compose_rows, inputs: Inputs) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        row: dict[str, Any] = {
            **component_scores(run["predictions"], inputs.references, inputs.labels),
            "scoring_seconds": run["seconds"],
            "scoring_load": [run["load_start"], run["load_end"]],
            "examples": [
                {"input": t[:120], "reference": r, "prediction": p}
                for t, r, p in list(
                    zip(inputs.texts, inputs.references, run["predictions"], strict=True)
                )[:5]
            ],
        }
        row["cost"], compose = method_cost(name, singles, compose_rows)
        if compose is not None:
            row["compose"] = compose
        rows[name] = row
    return rows


def adapter_row(info: dict[str, Any], work: Path, scale) -> dict[str, Any]:
    return {
        "path": str(Path(info["adapter"]).relative_to(work)),
        "step": info["step"],
        "steps": info["train"]["steps"],
        "examples": info["train"]["steps"] * scale.batch_size,
        "train_wall_seconds": info["train"]["wall_seconds"],
        "parameters": adapter_parameters(info["adapter"]),
        "rank": adapter_rank(info["adapter"]),
    }
