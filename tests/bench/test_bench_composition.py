"""bench/composition.py's pure parts: the join of the two tasks and the output parsing.

No model here: small rows and strings only.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["business", "entertainment", "politics", "sport", "tech"]


@pytest.fixture(scope="module")
def composition():
    name = "bench_composition"
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "composition.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(name, None)


def test_join_on_the_article(composition):
    topics = [{"input": "a", "output": "sport"}, {"input": "b", "output": "tech"}]
    headlines = [
        {"input": "b", "output": "Phones: the next step"},
        {"input": "a", "output": "X wins"},
    ]
    assert composition.join_examples(topics, headlines) == [
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
def test_join_refuses_files_of_different_articles(composition, topics, headlines, message):
    with pytest.raises(ValueError, match=message):
        composition.join_examples(topics, headlines)


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
def test_parse_output(composition, text, expected):
    assert composition.parse_output(text, LABELS) == expected


def test_component_scores(composition):
    references = ["sport: Hewitt wins final", "tech: Phones get smaller"]
    predictions = ["sport: Hewitt wins final", "Phones get smaller"]
    scores = composition.component_scores(predictions, references, LABELS)
    assert scores["topic_accuracy"] == 0.5  # the second has no topic
    assert scores["headline_rougeL"] == pytest.approx(1.0)  # out of format: the whole text
    assert scores["in_format"] == 0.5
    assert 0.5 < scores["rougeL"] < 1.0
    with pytest.raises(ValueError, match="reference"):
        composition.component_scores(["x"], ["no topic here"], LABELS)


def test_settings_fit_the_quality_scales(composition):
    quality = composition.load_quality()
    assert set(composition.SETTINGS) == set(quality.SCALES)
    for settings in composition.SETTINGS.values():
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
def test_in_format(composition, text, expected):
    assert composition.in_format(text, LABELS) is expected


def test_a_rerun_keeps_the_first_runs_provenance(composition, tmp_path: Path):
    import json

    old = {
        "command": "python bench/composition.py --scale quick",
        "started": "2026-01-01T09:00:00+00:00",
        "finished": "2026-01-01T09:20:00+00:00",
        "minutes": 20.0,
        "load": {"start": 2.5, "end": 1.0},
        "versions": {"git": "abc1234"},
    }
    path = tmp_path / "composition.json"
    path.write_text(json.dumps(old))
    assert composition.previous_invocations(path, "python bench/composition.py") == []
    (first,) = composition.previous_invocations(path, old["command"])
    assert first["made"] is None and first["git"] == "abc1234"
    later = {**first, "started": "2026-01-02T09:00:00+00:00", "made": ["compose x"]}
    report = {"command": old["command"], "seed": 0, "invocations": [first, later]}
    text = "\n".join(composition.provenance(report))
    assert "2 invocations" in text
    assert "2026-01-01T09:00:00+00:00 → 2026-01-01T09:20:00+00:00 (20.0 min" in text
    assert "made `compose x`." in text
