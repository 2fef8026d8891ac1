"""Every committed benchmark report re-renders byte for byte from its results file.

The tables are a pure function of the measured numbers, so a change to the report code
that alters a committed report shows up here, not in a reader's diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import composition_report, seeds_report
from bench.quality_report import findings, markdown

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
RENDERERS = {"results": markdown, "composition": composition_report.markdown}
REPORTS = sorted(path for name in RENDERERS for path in RESULTS.glob(f"*/{name}.json"))
SEEDED = sorted(path.parent for path in RESULTS.glob("*/per_example.json"))


def renderer(path: Path, report: dict):
    """A several-seed report (it has `seeds`) has its own renderer."""
    if path.stem == "results" and "seeds" in report:
        return seeds_report.markdown, seeds_report.findings
    return RENDERERS[path.stem], findings


def test_there_are_committed_reports():
    assert REPORTS, f"no results.json or composition.json under {RESULTS}"


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_committed_report_re_renders_identically(path: Path):
    report = json.loads(path.read_text(encoding="utf-8"))
    committed = path.with_suffix(".md").read_text(encoding="utf-8")
    assert renderer(path, report)[0](report) == committed


def test_the_committed_quality_findings_follow_from_the_figures():
    """`--render-only` recomputes the findings: they must still read what was committed."""
    for path in RESULTS.glob("*/results.json"):
        report = json.loads(path.read_text(encoding="utf-8"))
        assert renderer(path, report)[1](report) == report["findings"], path


@pytest.mark.parametrize("folder", SEEDED, ids=lambda p: p.name)
def test_a_committed_analysis_follows_from_its_per_example_results(folder: Path):
    """Every interval and verdict of a several-seed report, recomputed from what each test
    example contributed to each model's score."""
    report = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    per_example = json.loads((folder / "per_example.json").read_text(encoding="utf-8"))
    tasks = [t["name"] for t in report["tasks"]]
    assert seeds_report.analyse(per_example, tasks) == report["analysis"]
