"""The report of a several-seed scale: what is significant and what is not.

`analyse` turns the per-example results (`per_example.json`) into point values and
intervals (bench.paired); `findings`, `markdown` and `plot` are pure functions of
results.json, so `--render-only` re-renders a committed report byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import paired
from bench.quality_report import tasks_section
from bench.report import fmt
from bench.scales import METHOD_NAMES, THRESHOLD
from mtd_operator.api.spec import Qualification
from mtd_operator.core.confidence import PerExample, verdict

REFERENCE = "single-task"
BASE = "base"
CONFIDENCE = 0.9
# The product's qualification.minEvalExamples default, read from its model.
MIN_EXAMPLES: int = Qualification.model_fields["min_eval_examples"].default
VERDICTS = ("Qualified", "Inconclusive", "NotQualified")


def _runs(per_example: dict[str, Any], task: str, methods: list[str]) -> dict[str, list]:
    """method → its seeds' PerExample for one task; the base model is a method of one seed."""
    runs = {BASE: [PerExample.from_result({"per_example": per_example["base"][task]})]}
    for method in methods:
        seeds = per_example["methods"][method]
        runs[method] = [
            PerExample.from_result({"per_example": seeds[s][task]}) for s in sorted(seeds)
        ]
    return runs


def _task_analysis(runs: dict[str, list], methods: list[str]) -> dict[str, Any]:
    one = next(iter(runs.values()))[0]
    row: dict[str, Any] = {"examples": one.count}
    for method in methods:
        only = {"t": {method: runs[method], BASE: runs[BASE]}}
        seeds = [r.score() for r in runs[method]]
        entry: dict[str, Any] = {
            "score": round(sum(seeds) / len(seeds), 6),
            "seeds": [round(s, 6) for s in seeds],
            "vs_base": paired.bootstrap(only, paired.difference(method, BASE)).to_json(),
        }
        if method != REFERENCE:
            pair = {"t": {method: runs[method], REFERENCE: runs[REFERENCE]}}
            estimate = paired.bootstrap(pair, paired.ratio(method, REFERENCE))
            entry["ratio"] = estimate.to_json()
            entry["verdict"] = verdict(
                estimate.value,
                None if estimate.low is None else (estimate.low, estimate.high),
                threshold=THRESHOLD,
                confidence=CONFIDENCE,
                examples=one.count,
                min_examples=MIN_EXAMPLES,
            )
        row[method] = entry
    if {"three-stage", "naive"} <= set(methods):
        pair = {"t": {"three-stage": runs["three-stage"], "naive": runs["naive"]}}
        row["three-stage − naive"] = paired.bootstrap(
            pair, paired.difference("three-stage", "naive")
        ).to_json()
    return row


def analyse(per_example: dict[str, Any], tasks: list[str]) -> dict[str, Any]:
    """Every interval of the report, from what each test example contributed."""
    methods = [m for m in METHOD_NAMES if m in per_example["methods"]]
    runs = {task: _runs(per_example, task, methods) for task in tasks}
    out: dict[str, Any] = {
        "confidence": CONFIDENCE,
        "resamples": paired.RESAMPLES,
        "tasks": {task: _task_analysis(runs[task], methods) for task in tasks},
        "methods": {},
    }
    for method in methods:
        if method == REFERENCE:
            continue
        both = {t: {method: r[method], REFERENCE: r[REFERENCE]} for t, r in runs.items()}
        counts = {v: 0 for v in VERDICTS}
        for task in tasks:
            counts[out["tasks"][task][method]["verdict"]] += 1
        out["methods"][method] = {
            "mean_ratio": paired.bootstrap(both, paired.mean_ratio(method, REFERENCE)).to_json(),
            "verdicts": counts,
        }
    if {"three-stage", "naive"} <= set(methods):
        three = {t: {m: r[m] for m in ("three-stage", "naive", REFERENCE)} for t, r in runs.items()}
        out["three-stage − naive"] = paired.bootstrap(
            three, paired.mean_ratio_difference("three-stage", "naive", REFERENCE)
        ).to_json()
    return out


def _ci(estimate: dict[str, Any], digits: int = 3) -> str:
    if estimate["low"] is None:
        return f"{fmt(estimate['value'], digits)} [–]"
    return (
        f"{fmt(estimate['value'], digits)} [{fmt(estimate['low'], digits)}, "
        f"{fmt(estimate['high'], digits)}]"
    )


def _signed(estimate: dict[str, Any]) -> str:
    v, lo, hi = estimate["value"], estimate["low"], estimate["high"]
    if lo is None:
        return f"{v:+.3f} [–]"
    return f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _significance(estimate: dict[str, Any]) -> str:
    """Whether a difference's interval excludes 0, and in which direction."""
    if estimate["low"] is None:
        return "–"
    if estimate["low"] > 0:
        return "**higher**"
    if estimate["high"] < 0:
        return "**lower**"
    return "not significant"


def methods_of(report: dict[str, Any]) -> list[str]:
    return [m for m in METHOD_NAMES if m in report["methods"]]


def _lanes(report: dict[str, Any]) -> str:
    if report.get("device") == "cuda":
        return f"{report['jobs']} lane(s) on one CUDA GPU, bf16 frozen weights"
    return f"{report['jobs']} lanes of {report['machine']['torch_threads']} torch thread each"


def _reused(report: dict[str, Any]) -> str:
    """Training runs are content-addressed: say how many this invocation found done."""
    todo = report.get("trained_runs", {})
    total = sum(len(row["training"]["runs"]) for m in report["methods"].values()
                for row in m["seeds"].values())  # fmt: skip
    trained = sum(len(runs) for runs in todo.values())
    if trained == total:
        return ""
    return (
        f"; {total - trained} of its {total} training runs were already done when it "
        "started and were reused (each run's own wall time is in the summary)"
    )


def _header(report: dict[str, Any]) -> list[str]:
    scale, a = report["scale_settings"], report["analysis"]
    seeds = ", ".join(str(s) for s in report["seeds"])
    level = f"{a['confidence']:.0%}"
    return [
        f"# Quality benchmark — `{report['scale']}` scale, seeds {seeds}",
        "",
        f"Produced by `{report['command']}`, {report['started']} → {report['finished']} "
        f"({report['wall_minutes']:.1f} min wall, {_lanes(report)}; load average "
        f"{report['load']['start'][0]:.2f} at start, {report['load']['end'][0]:.2f} at end)"
        f"{_reused(report)}.",
        "",
        f"* Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores "
        f"({report['machine']['platform']}).",
        "* Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        f"* Base model: SmolLM2-135M-Instruct; LoRA r={scale['lora_rank']} "
        f"α={scale['lora_alpha']}, lr {scale['learning_rate']}, batch {scale['batch_size']}, "
        f"max_seq_length {scale['max_seq_length']}; inputs cut to {scale['max_chars']} "
        "characters (Chinese 25%). Training seeds "
        f"{seeds}; one data split (seed {report['data_seed']}) for all.",
        f"* **Budget, equal for every method and seed: {scale['budget_steps']} optimizer "
        f"steps × batch {scale['batch_size']} = {scale['budget_steps'] * scale['batch_size']} "
        f"training examples** (single-task: {scale['budget_steps'] // len(report['tasks'])} "
        "steps per task).",
        f"* Scoring: the first {scale['test_examples']} examples of each task's test split "
        "(never in any training spec; no setting was chosen on any score), every model on "
        "the same examples; classification by label likelihood (accuracy), generation "
        f"greedy (≤ {scale['max_new_tokens']} new tokens, ROUGE-L F).",
        f"* **Intervals ({level}, {a['resamples']} resamples, `bench/paired.py`)**: each "
        "resample draws the test examples (the same draw for every model: paired) and, for "
        "each method on its own, which of its seeds count; a method's score is the mean "
        "over its drawn seeds. So an interval covers both the test sample and the "
        "training seed. A difference is *significant* when its interval excludes 0.",
        f"* Verdicts as the operator gives them (`qualification.confidence` "
        f"{a['confidence']}, threshold {THRESHOLD}, `minEvalExamples` {MIN_EXAMPLES}): "
        "Qualified when the ratio's interval is at or above the threshold, NotQualified "
        "when it is below, Inconclusive otherwise.",
        "",
    ]


def _scores_section(report: dict[str, Any]) -> list[str]:
    methods = methods_of(report)
    tasks = report["analysis"]["tasks"]
    lines = [
        "## Test scores (mean over seeds; each seed in brackets)",
        "",
        "| task | examples | base (zero-shot) | " + " | ".join(f"`{m}`" for m in methods) + " |",
        "|---|---:|---:|" + "---:|" * len(methods),
    ]
    for name, row in tasks.items():
        cells = [
            f"{fmt(row[m]['score'])} ({' / '.join(fmt(s) for s in row[m]['seeds'])})"
            for m in methods
        ]
        lines.append(
            f"| `{name}` | {row['examples']} | {fmt(report['base_scores'][name])} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "## Single-task models against the untrained model",
        "",
        "| task | base | `single-task` | difference [interval] | |",
        "|---|---:|---:|---:|---|",
    ]
    for name, row in tasks.items():
        vs = row[REFERENCE]["vs_base"]
        lines.append(
            f"| `{name}` | {fmt(report['base_scores'][name])} | {fmt(row[REFERENCE]['score'])} "
            f"| {_signed(vs)} | {_significance(vs)} |"
        )
    return lines


def _ratio_section(report: dict[str, Any]) -> list[str]:
    methods = [m for m in methods_of(report) if m != REFERENCE]
    tasks = report["analysis"]["tasks"]
    lines = [
        "",
        "## Ratio to single-task [interval] and verdict",
        "",
        "| task | " + " | ".join(f"`{m}`" for m in methods) + " | three-stage − naive (score) |",
        "|---|" + "---:|" * len(methods) + "---:|",
    ]
    for name, row in tasks.items():
        cells = [f"{_ci(row[m]['ratio'])} {row[m]['verdict']}" for m in methods]
        diff = row.get("three-stage − naive")
        extra = f"{_signed(diff)} {_significance(diff)}" if diff else "–"
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {extra} |")
    return lines


def _draws_section(report: dict[str, Any]) -> list[str]:
    """How many training examples of each task each method drew (mean over seeds, from the
    runs' own counts): what the sampling gave a low-resource task, not what it promised."""
    methods = methods_of(report)
    names = list(report["analysis"]["tasks"])
    lines = [
        "",
        "## Training examples drawn per task (mean over seeds)",
        "",
        "| task | " + " | ".join(f"`{m}`" for m in methods) + " |",
        "|---|" + "---:|" * len(methods),
    ]
    for name in names:
        cells = []
        for m in methods:
            seeds = report["methods"][m]["seeds"].values()
            drawn = [
                sum(r.get("examples_per_task", {}).get(name, 0) for r in s["training"]["runs"])
                for s in seeds
            ]
            cells.append(f"{sum(drawn) / len(drawn):,.0f}")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return lines


def _summary_section(report: dict[str, Any]) -> list[str]:
    a = report["analysis"]
    lines = [
        "",
        "## Summary per method",
        "",
        "| method | Qualified | Inconclusive | NotQualified | mean ratio [interval] | "
        "mean score | tokens trained (per seed) | train wall time (per seed) | adapters "
        "served | deployments |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in methods_of(report):
        row = report["methods"][m]
        seeds = row["seeds"].values()
        tokens = sum(s["training"]["tokens"] for s in seeds) / len(seeds)
        wall = sum(s["training"]["wall_seconds"] for s in seeds) / len(seeds) / 60
        mean_score = sum(a["tasks"][t][m]["score"] for t in a["tasks"]) / len(a["tasks"])
        if m == REFERENCE:
            verdicts, ratio = ["–", "–", "–"], "1 (ref.)"
        else:
            verdicts = [str(a["methods"][m]["verdicts"][v]) for v in VERDICTS]
            ratio = _ci(a["methods"][m]["mean_ratio"])
        lines.append(
            f"| `{m}` | " + " | ".join(verdicts) + f" | {ratio} | {fmt(mean_score)} | "
            f"{tokens:,.0f} | {wall:.1f} min | {row['serving']['adapters']} | "
            f"{row['serving']['deployments']} |"
        )
    if "three-stage − naive" in a:
        lines += [
            "",
            "Mean ratio, three-stage − naive: "
            f"{_signed(a['three-stage − naive'])}, {_significance(a['three-stage − naive'])}.",
        ]
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The whole report, a pure function of results.json."""
    lines = [
        *_header(report),
        *tasks_section(report),
        "",
        *_scores_section(report),
        *_ratio_section(report),
        *_draws_section(report),
        *_summary_section(report),
        "",
        "![ratio to single-task per task, with intervals](ratio.png)",
        "",
        "## Findings",
        "",
        *report["findings"],
        "",
    ]
    if report.get("discussion"):
        lines += ["## Discussion", "", *report["discussion"], ""]
    return "\n".join(lines)


def findings(report: dict[str, Any]) -> list[str]:
    """What the figures say, significant or not, generated from results.json."""
    a = report["analysis"]
    tasks = a["tasks"]
    lines = []
    weaker = [t for t, r in tasks.items() if r[REFERENCE]["vs_base"]["high"] is not None
              and r[REFERENCE]["vs_base"]["low"] <= 0]  # fmt: skip
    better = [t for t in tasks if t not in weaker]
    lines.append(
        f"* Single-task models significantly above the untrained model on {len(better)} of "
        f"{len(tasks)} tasks"
        + (f" ({', '.join(f'`{t}`' for t in better)})" if better else "")
        + (
            f"; not significantly above on {', '.join(f'`{t}`' for t in weaker)}."
            if weaker
            else "."
        )
    )
    for m, row in a["methods"].items():
        v = row["verdicts"]
        lines.append(
            f"* `{m}`: {v['Qualified']} Qualified, {v['Inconclusive']} Inconclusive, "
            f"{v['NotQualified']} NotQualified of {len(tasks)}; mean ratio "
            f"{_ci(row['mean_ratio'])}."
        )
    if "three-stage − naive" in a:
        d = a["three-stage − naive"]
        verdict_text = {
            "**higher**": "the three-stage method **beats** naive multi-task training",
            "**lower**": "the three-stage method does **worse** than naive multi-task training",
        }.get(_significance(d), "the difference between three-stage and naive multi-task "
                                "training is **not significant**")  # fmt: skip
        per_task = [
            f"`{t}` {_significance(r['three-stage − naive']).strip('*')}"
            for t, r in tasks.items()
            if _significance(r["three-stage − naive"]) in ("**higher**", "**lower**")
        ]
        lines.append(
            f"* Mean ratio three-stage − naive {_signed(d)}: {verdict_text}. Per task, "
            + (
                "significant score differences: " + ", ".join(per_task) + "."
                if per_task
                else "no score difference is significant."
            )
        )
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    """Per-task ratios with their intervals, and each method's mean ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = report["analysis"]
    methods = [m for m in methods_of(report) if m != REFERENCE]
    names = list(a["tasks"])
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [4, 1]}, sharey=True
    )
    width = 0.4 / len(methods)  # offsets of the methods around each task
    for i, method in enumerate(methods):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(names))]
        estimates = [a["tasks"][n][method]["ratio"] for n in names]
        _errorbars(left, xs, estimates, method, f"C{i}")
        _errorbars(right, [i], [a["methods"][method]["mean_ratio"]], None, f"C{i}")
    for ax in (left, right):
        ax.axhline(THRESHOLD, color="black", linestyle="--", linewidth=1)
    left.set_xticks(range(len(names)), names, rotation=15)
    left.set_ylabel("score / single-task score")
    left.set_title(
        f"Ratio to single-task with {a['confidence']:.0%} intervals (examples and seeds), "
        f"{report['scale']} scale; dashed: {THRESHOLD}"
    )
    left.legend(fontsize=8)
    right.set_xticks(range(len(methods)), methods, rotation=15)
    right.set_title("mean over tasks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _errorbars(ax, xs, estimates, label, color) -> None:
    ys = [e["value"] for e in estimates]
    lows = [e["value"] - e["low"] if e["low"] is not None else 0 for e in estimates]
    highs = [e["high"] - e["value"] if e["high"] is not None else 0 for e in estimates]
    ax.errorbar(xs, ys, yerr=[lows, highs], fmt="o", capsize=4, label=label, color=color)
