"""Scoring in process against scoring through vLLM: time, and whether the answers agree.

    .venv/bin/python -m bench.scoring_speed --workspace workspace/quickstart \\
        --spec examples/quickstart/mtd.yaml [--tasks a,b] [--examples N] [--threads T]

Takes a finished `mtd run` (its serving.json: the base model and each task's served
adapter) and the spec's eval sets. For each task it scores the first N eval examples
twice with the same adapter and prompt:

* in process, as evaluation did before it scored through the engine (evaluation.py:
  label likelihood for classification, HF `generate` for generation, batch 8; the
  seconds include loading the model with its adapter, as an evaluation step does);
* through the real vLLM (engine_scoring.py: what the task gateway asks, as many requests
  at once as `mtd run` sends), the engine started once beforehand (its start-up is
  printed apart).

and prints the seconds of each, and how often the two answers agree (classification: the
same label; generation: mean ROUGE-L between the two answers). Needs the engine
virtualenv (`make engine`; MTD_ENGINE_VENV). Run it alone: on 2 cores any other process
changes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from mtd_contract.config import TaskConfig


def task_configs(spec_file: Path, names: list[str] | None) -> list[TaskConfig]:
    from mtd_operator.data_files import resolve_data_path
    from mtd_operator.specfile import load_resource

    spec = load_resource(spec_file).spec
    tasks = []
    for task in spec.tasks:
        if (names and task.name not in names) or not task.data.eval:
            continue
        tasks.append(
            TaskConfig(
                name=task.name,
                type=task.type,
                instruction=task.instruction,
                labels=list(task.labels) if task.labels else None,
                ordinal=task.ordinal,
                metric=task.metric or ("accuracy" if task.type == "classification" else "rougeL"),
                eval_path=str(resolve_data_path(task.data.eval, spec_file.resolve().parent)),
            )
        )
    return tasks


def agreement(task: TaskConfig, a: list[str], b: list[str]) -> float:
    if task.type == "classification":
        return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    pairs = zip(a, b, strict=True)
    scores = [scorer.score(x, y)["rougeL"].fmeasure if x or y else 1.0 for x, y in pairs]
    return sum(scores) / len(scores)


def in_process(base: str, adapter: str, task: TaskConfig, examples, max_len: int) -> list[str]:
    from mtd_trainer.answers import answer_budget, one_line
    from mtd_trainer.evaluation import Scorer, classify, generate, load_for_inference
    from mtd_trainer.modeling import load_tokenizer

    tokenizer = load_tokenizer(base)
    scorer = Scorer(load_for_inference(base, adapter).eval(), tokenizer, 8, max_len)
    texts, references = list(examples["input"]), list(examples["output"])
    if task.type == "classification":
        return classify(scorer, task, texts)
    budget = answer_budget(tokenizer, references, 64)
    return generate(scorer, task, texts, budget, one_line(references))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, required=True, help="WORKSPACE/NAME")
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--tasks", help="comma-separated (default: every task with eval data)")
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    os.environ["MTD_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from mtd_contract.config import EngineScoring
    from mtd_operator.local.engine import LocalEngine, free_port
    from mtd_operator.local.runner import LOCAL_SCORING_CONCURRENCY
    from mtd_trainer.data import load_examples
    from mtd_trainer.engine_scoring import connect, score_task_served
    from mtd_trainer.modeling import load_tokenizer

    manifest = json.loads((args.workspace / "serving.json").read_text())
    base, adapters = manifest["baseModel"], manifest["adapters"]
    served = {t["name"]: t.get("adapter") for t in manifest["catalogue"]["tasks"]}
    tasks = task_configs(args.spec, args.tasks.split(",") if args.tasks else None)
    state = Path(os.environ.get("TMPDIR", "/tmp")) / f"scoring-speed-{os.getpid()}"
    rows = []
    with LocalEngine(state, port=free_port("127.0.0.1"), lora_rank=manifest["loraRank"],
                     max_model_len=manifest["maxModelLength"]) as engine:  # fmt: skip
        started = time.monotonic()
        engine.ensure(base)
        engine.load(adapters)
        startup = time.monotonic() - started
        tokenizer = load_tokenizer(base)
        for task in tasks:
            examples = load_examples(task.eval_path, task)
            examples = examples.select(range(min(args.examples, len(examples))))
            name = served[task.name]
            scoring = EngineScoring(
                url=engine.url, base_model=base, adapters={task.name: name},
                api_key_file=str(engine.key_file), concurrency=LOCAL_SCORING_CONCURRENCY,
            )  # fmt: skip
            upstream = connect(scoring)
            t0 = time.monotonic()
            _, via_engine = score_task_served(
                upstream, name, tokenizer, task, examples, 64, scoring.concurrency
            )
            engine_s = time.monotonic() - t0
            upstream.close()
            t0 = time.monotonic()
            local = in_process(base, adapters[name], task, examples, 128)
            hf_s = time.monotonic() - t0
            rows.append((task, len(examples), hf_s, engine_s, agreement(task, local, via_engine)))
    print(f"vLLM start-up and adapter loads: {startup:.1f} s (once per run)")
    print(f"load average: {os.getloadavg()[0]:.2f}; torch threads {args.threads}")
    print(f"{'task':28} {'type':15} {'n':>4} {'in-process s':>13} {'vLLM s':>8} "
          f"{'speed-up':>9} {'agreement':>10}")  # fmt: skip
    for task, n, hf_s, engine_s, agree in rows:
        print(f"{task.name:28} {task.type:15} {n:>4} {hf_s:>13.1f} {engine_s:>8.1f} "
              f"{hf_s / engine_s:>8.1f}x {agree:>10.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
