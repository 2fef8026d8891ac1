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

The parts: this module is the command line (arguments, the report's assembly);
`composition_task.py` the composed task (settings, join, output format, scores);
`composition_runs.py` the single-task adapters, compositions, predictions and costs;
`composition_report.py` the report (provenance, tables, findings) rendered from the JSON.
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

from bench.composition_report import markdown
from bench.composition_runs import (
    adapter_row,
    compose_all,
    method_rows,
    predict_all,
    single_task_adapters,
)
from bench.composition_task import (
    HEADLINE,
    INSTRUCTION,
    MERGE_WEIGHTS,
    SETTINGS,
    TOPIC,
    prepare_inputs,
)
from bench.provenance import machine, previous_invocations, versions
from bench.runs import ensure_inputs, log
from bench.scales import ROOT, SCALES, add_run_arguments


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
    invocations = previous_invocations(out / "composition.json", command)
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


if __name__ == "__main__":
    sys.exit(main())
