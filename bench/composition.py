"""Compositions: two passes, a plain merge, a calibrated merge, on a task made of two tasks.

One command per scale (from the repository root, in the project's venv):

    .venv/bin/python -m bench.composition --scale quick --threads 1   # ~30 min, 2 CPU cores

The compositional task is built from two of the quality benchmark's tasks, on real data
with real references: a BBC article → "<topic>: <headline>". `bbc-topic` (article → topic
label) and `bbc-headline` (article → headline) share the same article split (the
quickstart's `prepare_data.py` splits BBC by article id), so their files are joined on the
input, split by split; an article missing from either file is an error.

* Data: `bench/quality.py`'s work folder for the scale (its data, same seed). The joined
  train split gives the calibration examples (the first `calibration_examples` of it);
  scores are on the first `test_examples` of the joined **test** split. Nothing held out
  is trained on, and no setting here was chosen on a score.
* Adapters: the single-task adapters of `bbc-topic` and `bbc-headline` that the quality
  benchmark's `single-task` method trained (`mtd run`; located by the plan's step hashes,
  trained through `mtd run` if they are missing).
* Methods:
  - `base (zero-shot)`: the base model, the composed instruction, greedy decoding.
  - `two-pass`: the topic adapter picks the label by label likelihood (as evaluation
    does), the headline adapter writes the headline; the output is "<topic>: <headline>".
    Two passes per request, both adapters loaded.
  - `merge-linear`, `merge-cat`: `python -m mtd_trainer compose` (peft
    `add_weighted_adapter`, weights 1 and 1) into one adapter; one greedy pass with the
    composed instruction. `linear` mixes A and B separately (rank stays 8, with cross
    terms), `cat` stacks them (rank 16, exactly the sum of the two updates).
  - `calibrated-linear`, `calibrated-cat`: the same plus Learnable Calibration (a rank-4
    correction trained on the calibration examples with the base and the merge frozen),
    folded into one adapter.
  - `calibration-only` (a control, not a composition): the same correction, same data
    and steps, on the base model alone (`compose` with both merge weights 0, so the merge
    adds nothing). What the calibrated merges score above it is what the two task
    adapters contribute; what it scores itself comes from the calibration examples.
* Metrics: ROUGE-L F of the whole output against "<topic>: <headline>" (what
  `mtd_trainer evaluate` reports for such a composition); topic accuracy (the output's
  prefix before the first ':', or the whole output, must be the right label) and
  headline ROUGE-L (the part after the ':'), so each component is visible; the share of
  outputs in the format (a label, ':', a headline).
* Cost per method: passes per request, adapters loaded, adapter parameters, compose (and
  calibration) wall time, scoring wall time for the test examples.

Artifacts are content-addressed under `<work>/composition/` (a rerun reuses compositions
and predictions, with the wall times measured when they were made). Results:
`bench/results/<scale>/composition.{json,md}`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.provenance import machine, previous_invocations, versions
from bench.report import fmt
from bench.runs import ensure_inputs, log, run_method, tensor_parameters
from bench.scales import BASE_MODEL, DEPLOYMENT, METHODS, SCALES, add_run_arguments
from bench.specs import build_specs, eval_config, plan_of, split_path, task_definitions

ROOT = Path(__file__).resolve().parents[1]
TOPIC, HEADLINE = "bbc-topic", "bbc-headline"
NAME = "bbc-topic-headline"
INSTRUCTION = (
    "Give the topic of the BBC news article (business, entertainment, politics, sport or "
    "tech), a colon, then its headline."
)
MERGE_WEIGHTS = (1.0, 1.0)
CONTROL = "calibration-only"


@dataclass(frozen=True)
class Settings:
    test_examples: int | None  # first N of the joined test split (None: all)
    calibration_examples: int  # first N of the joined train split
    calibration_steps: int
    calibration_rank: int
    calibration_learning_rate: float
    max_new_tokens: int  # room for "<topic>: " and a headline


SETTINGS: dict[str, Settings] = {
    # 40 steps of 4 (the quick scale's batch): one pass over 160 examples.
    "quick": Settings(100, 160, 40, 4, 1e-3, 32),
    "full": Settings(None, 200, 50, 4, 1e-3, 56),
}


def compose_output(topic: str, headline: str) -> str:
    return f"{topic}: {headline}"


def join_examples(
    topic_rows: list[dict[str, str]], headline_rows: list[dict[str, str]]
) -> list[dict[str, str]]:
    """{"input", "output": "<topic>: <headline>"} per article, in the topic file's order.

    The two files must hold the same articles (inputs), each once: anything else means
    they do not come from the same split and the join would be wrong.
    """
    headlines: dict[str, str] = {}
    for row in headline_rows:
        if row["input"] in headlines:
            raise ValueError(f"{HEADLINE}: an article occurs twice: {row['input'][:60]!r}")
        headlines[row["input"]] = row["output"]
    seen: set[str] = set()
    joined = []
    for row in topic_rows:
        text = row["input"]
        if text in seen:
            raise ValueError(f"{TOPIC}: an article occurs twice: {text[:60]!r}")
        seen.add(text)
        if text not in headlines:
            raise ValueError(f"{TOPIC}: an article has no headline: {text[:60]!r}")
        joined.append({"input": text, "output": compose_output(row["output"], headlines[text])})
    missing = set(headlines) - seen
    if missing:
        raise ValueError(f"{HEADLINE}: {len(missing)} articles have no topic")
    return joined


def parse_output(text: str, labels: list[str]) -> tuple[str | None, str]:
    """(topic, headline) of an output meant to read "<topic>: <headline>".

    The topic is the text before the first ':' when it is one of the labels (case and
    surrounding spaces ignored); then the headline is the rest. An output that is just a
    label is (label, ""). Otherwise the output is out of format: (None, the whole text),
    since a colon may belong to a headline ("Blair: I will stay").
    """
    allowed = {label.casefold(): label for label in labels}
    stripped = text.strip()
    head, colon, rest = stripped.partition(":")
    if colon and head.strip().casefold() in allowed:
        return allowed[head.strip().casefold()], rest.strip()
    if stripped.rstrip(".").casefold() in allowed:
        return allowed[stripped.rstrip(".").casefold()], ""
    return None, stripped


def in_format(text: str, labels: list[str]) -> bool:
    """Whether an output reads "<label>: <something>"."""
    topic, headline = parse_output(text, labels)
    return topic is not None and bool(headline) and ":" in text


def component_scores(
    predictions: list[str], references: list[str], labels: list[str]
) -> dict[str, float]:
    """Whole-output ROUGE-L, topic accuracy, headline ROUGE-L, share in format."""
    from mtd_trainer import metrics

    parsed = [parse_output(p, labels) for p in predictions]
    wanted = [parse_output(r, labels) for r in references]
    if any(topic is None for topic, _ in wanted):
        raise ValueError("a reference is not '<topic>: <headline>'")
    return {
        "rougeL": metrics.rouge_l(predictions, references),
        "topic_accuracy": metrics.accuracy([t for t, _ in parsed], [t for t, _ in wanted]),
        "headline_rougeL": metrics.rouge_l([h for _, h in parsed], [h for _, h in wanted]),
        "in_format": (
            sum(in_format(p, labels) for p in predictions) / len(predictions)
            if predictions
            else 0.0
        ),
    }


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")  # unchanged files keep their cache keys


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------
# Running


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


@dataclass
class Inputs:
    """The composed task's data: joined train/test rows, calibration and scored rows."""

    joined: dict[str, list[dict[str, str]]]
    calibration_rows: list[dict[str, str]]
    calibration_path: Path
    texts: list[str]
    references: list[str]
    labels: list[str]


def prepare_inputs(data_dir: Path, folder: Path, settings: Settings) -> Inputs:
    """Join the two tasks' splits on the article; write them and the calibration set."""
    joined = {
        split: join_examples(
            read_jsonl(split_path(data_dir, TOPIC, split)),
            read_jsonl(split_path(data_dir, HEADLINE, split)),
        )
        for split in ("train", "test")
    }
    calibration_rows = joined["train"][: settings.calibration_examples]
    test_rows = joined["test"][: settings.test_examples]
    write_jsonl(folder / "data" / "train.jsonl", joined["train"])
    write_jsonl(folder / "data" / "test.jsonl", joined["test"])
    calibration_path = folder / "data" / f"calibration-{len(calibration_rows)}.jsonl"
    write_jsonl(calibration_path, calibration_rows)
    definitions = {t["name"]: t for t in task_definitions()}
    return Inputs(
        joined=joined,
        calibration_rows=calibration_rows,
        calibration_path=calibration_path,
        texts=[r["input"] for r in test_rows],
        references=[r["output"] for r in test_rows],
        labels=list(definitions[TOPIC]["labels"]),
    )


def task_config(name: str, data_dir: Path, scale):
    """The task as the quality benchmark scores it (prompt, labels, metric)."""
    from mtd_contract.config import TaskConfig
    from mtd_operator.api.spec import TaskSpec

    definitions = {t["name"]: t for t in task_definitions()}
    spec = TaskSpec.model_validate({**definitions[name], "data": {"train": "x"}})
    row = eval_config(name, [spec], None, Path("unused"), data_dir, BASE_MODEL, scale)
    return TaskConfig.model_validate(row["tasks"][0])


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
    from mtd_trainer.evaluation import classify, generate, load_for_inference
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

    def generated(adapter: str | None, task: TaskConfig) -> list[str]:
        model = load_for_inference(base_model, adapter).eval()
        return generate(model, tokenizer, task, texts, batch, max_len, new_tokens)

    def two_pass() -> list[str]:
        topics = classify(
            load_for_inference(base_model, topic_adapter).eval(), tokenizer,
            task_config(TOPIC, data_dir, scale), texts, batch, max_len,
        )  # fmt: skip
        model = load_for_inference(base_model, headline_adapter).eval()
        headline_task = task_config(HEADLINE, data_dir, scale)
        headlines = generate(model, tokenizer, headline_task, texts, batch, max_len, new_tokens)
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


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, sorted(SETTINGS))
    parser.add_argument(
        "--work", type=Path, help="the quality benchmark's work folder (default "
        ".cache/bench/SCALE-seedN)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, help="torch threads (1 on a shared machine)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # compose subprocesses too
        os.environ["MKL_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    scale, settings = SCALES[args.scale], SETTINGS[args.scale]
    out = args.out or ROOT / "bench" / "results" / args.scale
    work = (args.work or ROOT / ".cache" / "bench" / f"{args.scale}-seed{args.seed}").resolve()
    started, t0, load_start = dt.datetime.now(dt.UTC), time.monotonic(), os.getloadavg()
    command = "python -m bench.composition " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    log(f"{command}: work folder {work}; load average {load_start[0]:.2f}")
    code = versions()  # the code that runs (bench/ changes are marked)

    data_dir = ensure_inputs(work, scale, args.data_seed)
    folder = work / "composition"
    inputs = prepare_inputs(data_dir, folder, settings)
    singles = single_task_adapters(work, data_dir, scale, args.seed)
    log(f"adapters: {singles[TOPIC]['adapter']}, {singles[HEADLINE]['adapter']}")
    compose_rows = compose_all(singles, inputs, folder, settings, scale, args.seed)
    runs = predict_all(singles, compose_rows, inputs, folder, data_dir, settings, scale)
    methods = method_rows(runs, singles, compose_rows, inputs)

    made = sorted(
        [f"compose {n}" for n, r in compose_rows.items() if not r["reused"]]
        + [f"predictions {n}" for n, r in runs.items() if not r["reused"]]
    )
    finished = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    invocations = previous_invocations(out / "composition.json", command, legacy_invocation)
    invocations.append(
        {
            "started": started.replace(microsecond=0).isoformat(),
            "finished": finished,
            "minutes": round((time.monotonic() - t0) / 60, 1),
            "load_start": round(load_start[0], 2),
            "load_end": round(os.getloadavg()[0], 2),
            "git": code.get("git"),
            "made": made,
        }
    )
    report: dict[str, Any] = {
        "command": command,
        "scale": args.scale,
        "seed": args.seed,
        "data_seed": args.data_seed,
        "started": invocations[0]["started"],
        "finished": finished,
        "minutes": round(sum(i["minutes"] for i in invocations), 1),
        "invocations": invocations,
        "load": {"start": load_start[0], "end": os.getloadavg()[0]},
        "versions": code,
        "machine": machine(),
        "settings": {
            **asdict(settings),
            "instruction": INSTRUCTION,
            "merge_weights": list(MERGE_WEIGHTS),
            "batch_size": scale.batch_size,
            "eval_batch_size": scale.eval_batch_size,
            "max_seq_length": scale.max_seq_length,
            "max_chars": scale.max_chars,
        },
        "data": {
            "train_articles": len(inputs.joined["train"]),
            "test_articles": len(inputs.joined["test"]),
            "calibration_examples": len(inputs.calibration_rows),
            "test_examples_scored": len(inputs.texts),
        },
        "adapters": {task: adapter_row(info, work, scale) for task, info in singles.items()},
        "methods": methods,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "composition.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out / "composition.md").write_text(markdown(report), encoding="utf-8")
    log(f"wrote {out}/composition.md and composition.json in {invocations[-1]['minutes']} min")
    return 0


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


# ---------------------------------------------------------------------------------------
# Report


def legacy_invocation(old: dict[str, Any]) -> dict[str, Any]:
    """A report written before invocations were recorded: one run."""
    return {
        "started": old["started"],
        "finished": old["finished"],
        "minutes": old["minutes"],
        "load_start": round(old["load"]["start"], 2),
        "load_end": round(old["load"]["end"], 2),
        "git": old.get("versions", {}).get("git"),
        "made": None,
    }


def provenance(report: dict[str, Any]) -> list[str]:
    """Which invocation made which artifacts (a rerun reuses them, with their wall times)."""
    invocations = report.get("invocations") or []
    head = f"Produced by `{report['command']}` (seed {report['seed']})"
    note = (
        "on a shared machine: other jobs ran alongside, so wall times are upper bounds. "
        "Compositions and predictions are content-addressed artifacts: a rerun reuses them, "
        "with the wall times measured when they were made."
    )
    if len(invocations) <= 1:
        return [
            f"{head}, {report['started']} → {report['finished']} ({report['minutes']} min; "
            f"load average {report['load']['start']:.2f} → {report['load']['end']:.2f}) {note}"
        ]
    lines = [f"{head} in {len(invocations)} invocations into this folder, {note}", ""]
    for inv in invocations:
        made = inv.get("made")
        what = (
            "not recorded"
            if made is None
            else ("made " + ", ".join(f"`{x}`" for x in made) if made else "made nothing new")
        )
        lines.append(
            f"* {inv['started']} → {inv['finished']} ({inv['minutes']} min, load "
            f"{inv['load_start']} → {inv['load_end']}, commit {inv.get('git')}): {what}."
            + (f" {inv['note']}" if inv.get("note") else "")
        )
    return [*lines, ""]


def markdown(report: dict[str, Any]) -> str:
    s, d, m = report["settings"], report["data"], report["methods"]
    topic, headline = report["adapters"][TOPIC], report["adapters"][HEADLINE]
    lines = [
        f'# Compositions — `{report["scale"]}` scale: BBC article → "<topic>: <headline>"',
        "",
        *provenance(report),
        "",
        f"* Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, torch "
        f"threads {report['machine']['torch_threads']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        f"* Task: `bbc-topic` (article → one of 5 topics) and `bbc-headline` (article → "
        'headline) joined on the article (same article split), output "<topic>: '
        f'<headline>"; instruction: "{s["instruction"]}". Inputs cut to {s["max_chars"]} '
        "characters.",
        f"* Adapters: the quality benchmark's `single-task` adapters (LoRA r={topic['rank']}, "
        f"{topic['steps']} steps × batch {s['batch_size']} = {topic['examples']} examples "
        f"each; {topic['parameters']:,} parameters each): `{topic['step']}`, "
        f"`{headline['step']}`.",
        f"* Calibration data: the first {d['calibration_examples']} articles of the joined "
        f"**train** split ({d['train_articles']:,}); rank {s['calibration_rank']}, "
        f"{s['calibration_steps']} steps × batch {s['batch_size']}, lr "
        f"{s['calibration_learning_rate']}. Merge weights {s['merge_weights']}. No setting was "
        "chosen on a score.",
        f"* Scoring: the first {d['test_examples_scored']} articles of the joined **test** "
        f"split; greedy decoding (≤ {s['max_new_tokens']} new tokens). `ROUGE-L` is the whole "
        'output against "<topic>: <headline>" (ROUGE-L F, as `mtd_trainer evaluate` scores '
        "a composition); `topic acc.` needs the text before the first ':' (or the whole "
        "output) to be the right label; `headline ROUGE-L` scores the text after the ':' (the "
        "whole output when it does not start with a label); `in format` is the share of "
        'outputs that read "<label>: <headline>". Two-pass picks the topic by label '
        "likelihood, so its topic is always a label.",
        f"* `{CONTROL}` is a control, not a composition: the same rank-"
        f"{s['calibration_rank']} correction on the same examples and steps, trained on the "
        "base model alone (`compose` with merge weights 0 and 0, so the merged part is zero; "
        "its cost below is the correction's). The calibrated merges' margin over it is what "
        "the two task adapters add.",
        "",
        "## Scores and cost",
        "",
        "| method | ROUGE-L (whole) | topic acc. | headline ROUGE-L | in format | passes per "
        "request | adapters loaded | adapter parameters | rank | compose wall time | scoring "
        f"wall time ({d['test_examples_scored']} examples) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, row in m.items():
        cost = row["cost"]
        compose = f"{cost['compose_seconds']:.0f} s" if "compose_seconds" in cost else "–"
        lines.append(
            f"| `{name}` | {fmt(row['rougeL'])} | {fmt(row['topic_accuracy'])} | "
            f"{fmt(row['headline_rougeL'])} | {row['in_format']:.0%} | {cost['passes']} | "
            f"{cost['adapters']} | {cost['parameters']:,} | {cost['rank']} | {compose} | "
            f"{row['scoring_seconds']:.0f} s |"
        )
    calibrated = [(n, r) for n, r in m.items() if "calibration" in r.get("compose", {})]
    if calibrated:
        lines += [
            "",
            "## Calibration",
            "",
            "| method | examples | steps | rank | correction parameters | loss before (the "
            "merge; the base for the control) | loss after | compose + calibration wall time |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in calibrated:
            c = row["compose"]["calibration"]
            lines.append(
                f"| `{name}` | {c['examples']} | {c['steps']} | {c['rank']} | "
                f"{c['parameters']:,} | {c['loss_before']:.3f} | {c['loss_after']:.3f} | "
                f"{row['cost']['compose_seconds']:.0f} s |"
            )
        lines += [
            "",
            "Losses are the mean answer-token loss on the calibration examples themselves "
            "(training data), before and after the correction; the test scores above are "
            "the held-out measure.",
        ]
    lines += ["", "## First outputs", ""]
    first = next(iter(m.values()))["examples"]
    for i, example in enumerate(first[:3]):
        lines += [f"{i + 1}. *{example['input']}…* — reference: `{example['reference']}`"]
        for name, row in m.items():
            lines.append(f"   * `{name}`: `{row['examples'][i]['prediction']}`")
    lines += ["", "## Findings", "", *findings(report), ""]
    return "\n".join(lines)


def findings(report: dict[str, Any]) -> list[str]:
    m, d = report["methods"], report["data"]
    n = d["test_examples_scored"]
    best = max((name for name in m if name != "base (zero-shot)"), key=lambda k: m[k]["rougeL"])
    out = [
        f"* Highest whole-output ROUGE-L: `{best}` ({fmt(m[best]['rougeL'])}); base model "
        f"zero-shot {fmt(m['base (zero-shot)']['rougeL'])}.",
    ]
    for merge in ("linear", "cat"):
        plain, cal = m.get(f"merge-{merge}"), m.get(f"calibrated-{merge}")
        if plain and cal:
            c = cal["compose"]["calibration"]
            out.append(
                f"* `{merge}`: calibration moved ROUGE-L {fmt(plain['rougeL'])} → "
                f"{fmt(cal['rougeL'])}, topic accuracy {fmt(plain['topic_accuracy'])} → "
                f"{fmt(cal['topic_accuracy'])}, in format {plain['in_format']:.0%} → "
                f"{cal['in_format']:.0%} (calibration loss {c['loss_before']:.3f} → "
                f"{c['loss_after']:.3f}, {c['parameters']:,} more parameters)."
            )
    control = m.get(CONTROL)
    if control:
        cals = {k: v for k, v in m.items() if k.startswith("calibrated-")}
        out.append(
            f"* The control `{CONTROL}` (the same correction on the base model, no adapters) "
            f"scores ROUGE-L {fmt(control['rougeL'])}, topic accuracy "
            f"{fmt(control['topic_accuracy'])}, headline ROUGE-L "
            f"{fmt(control['headline_rougeL'])}; the calibrated merges "
            + "; ".join(
                f"`{k}` {fmt(v['rougeL'])} / {fmt(v['topic_accuracy'])} / "
                f"{fmt(v['headline_rougeL'])}"
                for k, v in cals.items()
            )
            + " (ROUGE-L / topic accuracy / headline ROUGE-L). The difference is what the "
            f"merged task adapters add on top of the {d['calibration_examples']} "
            "compositional examples."
        )
        margin = max(v["rougeL"] - control["rougeL"] for v in cals.values())
        if margin <= 0:
            out.append(
                "* **On this run the calibrated merges do not beat the control**: what "
                "calibration gains over the plain merges comes from training on the "
                "compositional examples, not from the two task adapters, which add nothing "
                "measurable here."
            )
        else:
            out.append(
                f"* The best calibrated merge is {margin:+.3f} ROUGE-L above the control; "
                "compare it with the noise level below before reading it as the adapters' "
                "contribution."
            )
    two = m.get("two-pass")
    if two:
        out.append(
            f"* `two-pass` costs two passes per request and both adapters "
            f"({two['cost']['parameters']:,} parameters); its topic accuracy "
            f"{fmt(two['topic_accuracy'])} is the topic adapter's own, by label likelihood "
            f"(trained on {report['adapters'][TOPIC]['examples']} articles; the calibration "
            f"saw {d['calibration_examples']} more labelled articles, in the composed format)."
        )
    if report["scale"] == "quick":
        out.append(
            f"* Read this as a working end-to-end run, not a measurement: the two adapters "
            f"were trained for {report['adapters'][TOPIC]['steps']} steps each, calibration "
            f"saw {d['calibration_examples']} examples, and {n} test articles put a binomial "
            f"standard error of about ±{(0.25 / n) ** 0.5:.2f} on an accuracy near 0.5; "
            "differences smaller than about twice that are noise. One seed."
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
