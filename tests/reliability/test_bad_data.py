"""Bad data files: clear errors from profiling (field path, file and line), nothing
trained. The core profiler directly, then once through the operator (real `mtd profile`
in the profiling Job): the resource says InvalidData and no trainer Job is created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtd_contract.records import MAX_LINE_BYTES
from mtd_operator.api.spec import MultiTaskDeploymentSpec
from mtd_operator.data_files import profile_spec

from .conftest import condition, resource, task, wait_until, write_data

GOOD = [{"input": f"text {i}", "output": "yes" if i % 2 else "no"} for i in range(10)]


def lines(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


CASES = {
    "truncated": (lines(GOOD) + b'{"input": "cut here", "outp', "train.jsonl:11"),
    "wrong-encoding": (
        lines(GOOD[:3]) + '{"input": "caf\u00e9", "output": "yes"}\n'.encode("latin-1"),
        "train.jsonl:4",
    ),
    "huge-line": (
        lines(GOOD[:2])
        + json.dumps({"input": "x" * (MAX_LINE_BYTES + 10), "output": "no"}).encode()
        + b"\n",
        "train.jsonl:3",
    ),
    "mixed-label-spellings": (
        lines([*GOOD[:4], {"input": "a", "output": "Yes"}, {"input": "b", "output": " no"}]),
        "train.jsonl:5",
    ),
    "not-json-lines": (b"input,output\nhello,yes\n", "train.jsonl:1"),
    "no-examples": (b"", "train.jsonl"),
}


def spec_for(eval_path: str | None = "data/t/eval.jsonl") -> MultiTaskDeploymentSpec:
    body = task("t", "classification", labels=["yes", "no"])
    body["data"] = {"train": "data/t/train.jsonl", **({"eval": eval_path} if eval_path else {})}
    return MultiTaskDeploymentSpec.model_validate(resource("x", "default", [body])["spec"])


@pytest.mark.parametrize("case", list(CASES))
def test_bad_train_file_is_a_clear_problem(tmp_path: Path, case: str) -> None:
    content, where = CASES[case]
    (tmp_path / "data" / "t").mkdir(parents=True)
    (tmp_path / "data" / "t" / "train.jsonl").write_bytes(content)
    (tmp_path / "data" / "t" / "eval.jsonl").write_bytes(lines(GOOD))
    _profiles, problems = profile_spec(spec_for(), tmp_path)
    assert problems, case
    text = "\n".join(map(str, problems))
    assert all(p.path == "spec.tasks[0].data.train" for p in problems), text
    assert where in text, text
    if case == "mixed-label-spellings":
        assert "did you mean 'yes'" in text and "allowed: yes, no" in text, text


def test_empty_eval_set_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "data" / "t").mkdir(parents=True)
    (tmp_path / "data" / "t" / "train.jsonl").write_bytes(lines(GOOD))
    (tmp_path / "data" / "t" / "eval.jsonl").write_bytes(b"\n\n")
    _, problems = profile_spec(spec_for(), tmp_path)
    assert [p.path for p in problems] == ["spec.tasks[0].data.eval"], problems
    assert "no examples" in str(problems[0])


def test_missing_file_is_a_clear_problem(tmp_path: Path) -> None:
    _, problems = profile_spec(spec_for(), tmp_path)
    assert problems and problems[0].path == "spec.tasks[0].data.train"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_operator_reports_bad_data_and_trains_nothing(make_cluster) -> None:
    cluster = make_cluster("c")  # no precomputed profiles: the real `mtd profile` runs
    write_data(cluster.workspace)
    bad = cluster.workspace / "data" / "sounds.train.jsonl"
    bad.write_bytes(bad.read_bytes()[:-20])  # truncated mid-line
    tasks = [task("sentiment", "classification", labels=["pos", "neg"]),
             task("sounds", "generation", metric="exactMatch")]  # fmt: skip
    cluster.start_operator()
    cluster.apply(resource("support", "default", tasks))
    obj = wait_until(
        lambda: (o := cluster.get("support"))
        and condition(o, "Planned").get("reason") == "InvalidData" and o,
        90, "Planned=False/InvalidData", cluster.operator_logs,
    )  # fmt: skip
    message = condition(obj, "Planned")["message"]
    assert "spec.tasks[1].data.train" in message and "sounds.train.jsonl:20" in message, message
    assert condition(obj, "Ready")["reason"] == "InvalidData"
    jobs = [j["metadata"]["name"] for j in cluster.emulator.list("batch/v1/jobs", "default")]
    assert len(jobs) == 1 and "-profile-" in jobs[0], jobs
    assert not (cluster.workspace / "artifacts").exists()
