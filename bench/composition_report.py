"""The composition benchmark's report: provenance, tables and findings, all rendered
from composition.json alone (tests/bench/test_committed_reports.py re-renders the
committed report byte for byte)."""

from __future__ import annotations

from typing import Any

from bench.composition_task import CONTROL, HEADLINE, TOPIC
from bench.report import fmt


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
