"""The composition benchmark's pure parts (bench/composition_task.py, composition_report.py):
the join of the two tasks, the output parsing, the scores and the provenance lines.

No model here: small rows and strings only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import composition_task as task
from bench import quality
from bench.composition_report import provenance
from bench.provenance import previous_invocations

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["business", "entertainment", "politics", "sport", "tech"]


def test_join_on_the_article():
    topics = [{"input": "a", "output": "sport"}, {"input": "b", "output": "tech"}]
    headlines = [
        {"input": "b", "output": "Phones: the next step"},
        {"input": "a", "output": "X wins"},
    ]
    assert task.join_examples(topics, headlines) == [
        {"input": "a", "output": "sport: X wins"},
        {"input": "b", "output": "tech: Phones: the next step"},
    ]


@pytest.mark.parametrize(
    ("topics", "headlines", "message"),
    [
        ([{"input": "a", "output": "sport"}], [{"input": "b", "output": "B"}], "no headline"),
        (
            [{"input": "a", "output": "sport"}],
            [{"input": "a", "output": "A"}, {"input": "b", "output": "B"}],
            "no topic",
        ),
        (
            [{"input": "a", "output": "sport"}, {"input": "a", "output": "tech"}],
            [{"input": "a", "output": "A"}],
            "twice",
        ),
        ([{"input": "a", "output": "sport"}], [{"input": "a", "output": "A"}] * 2, "twice"),
    ],
)
def test_join_refuses_files_of_different_articles(topics, headlines, message):
    with pytest.raises(ValueError, match=message):
        task.join_examples(topics, headlines)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sport: Hewitt fights back", ("sport", "Hewitt fights back")),
        ("  Tech : Phones: the next step ", ("tech", "Phones: the next step")),
        ("politics", ("politics", "")),
        ("Politics.", ("politics", "")),
        ("Blair: I will stay", (None, "Blair: I will stay")),
        ("Hewitt fights back", (None, "Hewitt fights back")),
        ("", (None, "")),
    ],
)
def test_parse_output(text, expected):
    assert task.parse_output(text, LABELS) == expected


def test_component_scores():
    references = ["sport: Hewitt wins final", "tech: Phones get smaller"]
    predictions = ["sport: Hewitt wins final", "Phones get smaller"]
    scores = task.component_scores(predictions, references, LABELS)
    assert scores["topic_accuracy"] == 0.5  # the second has no topic
    assert scores["headline_rougeL"] == pytest.approx(1.0)  # out of format: the whole text
    assert scores["in_format"] == 0.5
    assert 0.5 < scores["rougeL"] < 1.0
    with pytest.raises(ValueError, match="reference"):
        task.component_scores(["x"], ["no topic here"], LABELS)


def test_settings_fit_the_quality_scales():
    """Every composition scale is a quality scale (it reuses that scale's trained runs);
    the several-seed scales (medium, imbalanced), which compare training methods, have
    none."""
    several = {name for name, scale in quality.SCALES.items() if len(scale.seeds) > 1}
    assert several == {"medium", "imbalanced"}
    assert set(task.SETTINGS) == set(quality.SCALES) - several
    for settings in task.SETTINGS.values():
        assert settings.calibration_examples >= 100
        assert settings.max_new_tokens > 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sport: Hewitt fights back", True),
        ("politics", False),  # a topic, but no headline
        ("politics:", False),
        ("Blair: I will stay", False),
        ("Hewitt fights back", False),
    ],
)
def test_in_format(text, expected):
    assert task.in_format(text, LABELS) is expected


def test_a_rerun_keeps_the_first_runs_provenance(tmp_path: Path):
    import json

    first = {
        "started": "2026-01-01T09:00:00+00:00",
        "finished": "2026-01-01T09:20:00+00:00",
        "minutes": 20.0,
        "load_start": 2.5,
        "load_end": 1.0,
        "git": "abc1234",
        "made": ["compose merge-linear", "predictions two-pass"],
    }
    old = {"command": "python -m bench.composition --scale quick", "invocations": [first]}
    path = tmp_path / "composition.json"
    path.write_text(json.dumps(old))
    assert previous_invocations(path, "python -m bench.composition") == []  # another command
    assert previous_invocations(tmp_path / "missing.json", old["command"]) == []
    assert previous_invocations(path, old["command"]) == [first]
    later = {**first, "started": "2026-01-02T09:00:00+00:00", "made": ["compose x"]}
    report = {"command": old["command"], "seed": 0, "invocations": [first, later]}
    text = "\n".join(provenance(report))
    assert "2 invocations" in text
    assert "2026-01-01T09:00:00+00:00 → 2026-01-01T09:20:00+00:00 (20.0 min" in text
    assert "made `compose merge-linear`, `predictions two-pass`." in text
    assert "made `compose x`." in text


def test_a_report_without_an_invocation_record_gives_none(tmp_path: Path):
    import json

    path = tmp_path / "composition.json"
    path.write_text(json.dumps({"command": "python -m bench.composition --scale quick"}))
    assert previous_invocations(path, "python -m bench.composition --scale quick") == []


def test_the_documented_command_line_parses():
    """`python -m bench.composition --scale quick --threads 1` (docs/benchmarks.md)."""
    from bench import composition

    args = composition.parser().parse_args(["--scale", "quick", "--threads", "1"])
    assert (args.scale, args.threads, args.seed, args.work) == ("quick", 1, 0, None)
    with pytest.raises(SystemExit):
        composition.parser().parse_args(["--scale", "medium"])  # a several-seed scale
