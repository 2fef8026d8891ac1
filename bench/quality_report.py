"""The quality benchmark's report: summary, findings, tables and the plot, all rendered
from results.json alone (so `--render-only` re-renders a committed report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import fmt
from bench.scales import ABLATIONS, METHOD_NAMES, THRESHOLD


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


def _header(report: dict[str, Any]) -> list[str]:
    """Provenance, machine, versions, settings, budget and scoring rules."""
    tasks = report["tasks"]
    scale = report["scale_settings"]
    return [
        f"# Quality and cost benchmark — `{report['scale']}` scale",
        "",
        *provenance(report),
        *(
            [
                f"Tables re-rendered from `results.json` with `--render-only` "
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
    ]


def tasks_section(report: dict[str, Any]) -> list[str]:
    scale = report["scale_settings"]
    lines = [
        "## Tasks",
        "",
        "| task | kind | train examples | test examples scored | metric | high-resource "
        f"(≥ {scale['high_resource_min_examples']:,}) |",
        "|---|---|---:|---:|---|---|",
    ]
    for t in report["tasks"]:
        train = f"{t['train_examples']:,}"
        if "train_available" in t:  # a scale's train_limits made it low-resource
            train += f" (cut from {t['train_available']:,})"
        lines.append(
            f"| `{t['name']}` | {t['kind']} | {train} | {t['test_examples']} "
            f"| {t['metric']} | {'yes' if t['high_resource'] else 'no'} |"
        )
    return lines


def _methods_section(report: dict[str, Any], methods: list[str]) -> list[str]:
    lines: list[str] = []
    lines += ["", "## Methods", "", "| method | what | groups | training runs (steps) |",
              "|---|---|---:|---|"]  # fmt: skip
    for m in methods:
        row = report["methods"][m]
        runs = ", ".join(f"{r['run']} ({r['steps']})" for r in row["training"]["runs"])
        if m == "single-task":
            first = row["training"]["runs"][0]["steps"]
            runs = f"{len(row['training']['runs'])} × solo/stage2 ({first})"
        lines.append(f"| `{m}` | {row['description']} | {row['groups']} | {runs} |")
    return lines


def _score_sections(report: dict[str, Any], methods: list[str]) -> list[str]:
    names = [t["name"] for t in report["tasks"]]
    lines: list[str] = []
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
    return lines


def _summary_section(report: dict[str, Any], methods: list[str]) -> list[str]:
    lines: list[str] = []
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
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The whole report, a pure function of results.json."""
    tasks = report["tasks"]
    methods = [m for m in METHOD_NAMES if m in report["methods"]]
    lines = [
        *_header(report),
        *tasks_section(report),
        *_methods_section(report, methods),
        *_score_sections(report, methods),
        *_summary_section(report, methods),
    ]
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


def _headline(report: dict[str, Any]) -> list[str]:
    """Three-stage against naive multi-task training: the comparison the method rests on."""
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
    return out


def _better_ablations(report: dict[str, Any]) -> list[str]:
    """Ablations that did better than the full method."""
    m = report["methods"]
    three = m["three-stage"]
    out: list[str] = []
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
    return out


def _weak_baselines(report: dict[str, Any]) -> list[str]:
    """Tasks whose single-task baseline is below the untrained model."""
    m = report["methods"]
    out: list[str] = []
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
    return out


def _ablation_lines(report: dict[str, Any]) -> list[str]:
    """Each ablation's figures beside three-stage's."""
    m = report["methods"]
    three = m["three-stage"]
    out: list[str] = []
    for name in ABLATIONS:
        if name in m:
            row = m[name]
            out.append(
                f"* `{name}`: qualified {row['qualified_count']}/6, mean ratio "
                f"{fmt(row['mean_ratio'])} (three-stage: {three['qualified_count']}/6, "
                f"{fmt(three['mean_ratio'])})."
            )
    return out


def _cgc_finding(report: dict[str, Any]) -> list[str]:
    """CGC-LoRA against three-stage LoRA at the same budget."""
    m = report["methods"]
    three = m["three-stage"]
    out: list[str] = []
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
    return out


def _caveats(report: dict[str, Any]) -> list[str]:
    """What this scale can and cannot show."""
    out: list[str] = []
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


def findings(report: dict[str, Any]) -> list[str]:
    """The report's findings, in order; recomputed by `--render-only`."""
    return [
        *_headline(report),
        *_better_ablations(report),
        *_weak_baselines(report),
        *_ablation_lines(report),
        *_cgc_finding(report),
        *_caveats(report),
    ]


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
