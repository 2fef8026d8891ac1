"""`mtd validate` and `mtd plan`: clear errors naming the field, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mtd_contract.quantization import nf4_unavailable
from mtd_operator.cli import main
from mtd_operator.spec_commands import has_cuda

from .specs import resource, task


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_spec(write_spec, capsys):
    path = write_spec(resource([task("spam"), task("summary", "generation")]))
    code, out, err = run(capsys, "validate", str(path))
    assert code == 0, err
    assert "valid MultiTaskDeployment 'support'" in out


def assert_invalid(capsys, path: Path, *expected: str) -> str:
    code, _, err = run(capsys, "validate", str(path))
    assert code == 2
    assert "Traceback" not in err
    for fragment in expected:
        assert fragment in err, err
    return err


def test_malformed_yaml(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("spec: [unclosed\n")
    assert_invalid(capsys, path, "malformed YAML", f"{path}:")


def test_missing_file(tmp_path, capsys):
    assert_invalid(capsys, tmp_path / "nope.yaml", "no such file")


def test_wrong_kind(write_spec, capsys):
    doc = resource([task("a")])
    doc["kind"] = "Deployment"
    assert_invalid(
        capsys, write_spec(doc), "kind: 'Deployment' is not allowed", "MultiTaskDeployment"
    )


def test_unknown_field_lists_allowed_fields(write_spec, capsys):
    doc = resource([task("a", colour="blue")])
    err = assert_invalid(capsys, write_spec(doc), "spec.tasks[0].colour: unknown field; allowed:")
    assert "instruction" in err and "labels" in err


def test_unknown_enum_value_lists_allowed_values(write_spec, capsys):
    doc = resource([task("a")], filtering={"strategy": "clever"})
    assert_invalid(capsys, write_spec(doc), "spec.filtering.strategy", "'none'", "'taxonomy'")


def test_duplicate_task_names(write_spec, capsys):
    doc = resource([task("a"), task("a")])
    assert_invalid(capsys, write_spec(doc), "spec:", "unique", "'a'")


def test_labels_on_a_generation_task(write_spec, capsys):
    gen = task("g", "generation")
    gen["labels"] = ["x", "y"]
    assert_invalid(
        capsys, write_spec(resource([gen])), "spec.tasks[0]:", "only allowed on classification"
    )


def test_too_few_labels(write_spec, capsys):
    assert_invalid(
        capsys, write_spec(resource([task("a", labels=["only"])])), "spec.tasks[0]:", "2 or more"
    )


def test_metric_not_for_task_type(write_spec, capsys):
    doc = resource([task("a", metric="rougeL")])
    assert_invalid(capsys, write_spec(doc), "spec.tasks[0]:", "allowed: accuracy, macroF1")


def test_bad_task_name(write_spec, capsys):
    doc = resource([task("Bad_Name")])
    assert_invalid(capsys, write_spec(doc), "spec.tasks[0].name")


def test_baseline_needs_exactly_one_of_score_or_train(write_spec, capsys):
    doc = resource([task("a", baseline={"score": 0.9, "train": True})])
    assert_invalid(capsys, write_spec(doc), "spec.tasks[0].baseline", "exactly one")


def test_string_where_a_number_is_expected(write_spec, capsys):
    doc = resource([task("a")], training={"stage2": {"temperature": "hot"}})
    assert_invalid(capsys, write_spec(doc), "spec.training.stage2.temperature")


def test_missing_data_file(write_spec, capsys, tmp_path):
    path = write_spec(resource([task("a")]))
    (tmp_path / "data/a/train.jsonl").unlink()
    assert_invalid(capsys, path, "spec.tasks[0].data.train", "file does not exist")


def test_not_json_lines(write_spec, capsys, tmp_path):
    path = write_spec(resource([task("a")]))
    with (tmp_path / "data/a/train.jsonl").open("a") as handle:
        handle.write("{not json\n")
    assert_invalid(capsys, path, "spec.tasks[0].data.train", "train.jsonl:11", "not valid JSON")


def test_output_not_a_label_names_line_and_allowed_labels(write_spec, capsys, tmp_path):
    path = write_spec(resource([task("a", labels=["no", "yes"])]))
    with (tmp_path / "data/a/eval.jsonl").open("a") as handle:
        handle.write(json.dumps({"input": "x", "output": "Yes"}) + "\n")
    assert_invalid(
        capsys,
        path,
        "spec.tasks[0].data.eval",
        "eval.jsonl:5",
        "allowed: no, yes",
        "did you mean 'yes'",
    )


def test_missing_keys_and_non_string_values(write_spec, capsys, tmp_path):
    path = write_spec(resource([task("a")]))
    with (tmp_path / "data/a/train.jsonl").open("a") as handle:
        handle.write(json.dumps({"input": "x"}) + "\n")
        handle.write(json.dumps({"input": 3, "output": "yes"}) + "\n")
        handle.write(json.dumps(["input", "output"]) + "\n")
    err = assert_invalid(
        capsys, path, "missing key(s) output", "must be strings", "expected an object"
    )
    assert err.count("error:") == 3


def test_empty_data_file(write_spec, capsys, tmp_path):
    path = write_spec(resource([task("a")]))
    (tmp_path / "data/a/train.jsonl").write_text("")
    assert_invalid(capsys, path, "spec.tasks[0].data.train", "no examples")


def test_wrong_encoding(write_spec, capsys, tmp_path):
    path = write_spec(resource([task("a")]))
    (tmp_path / "data/a/train.jsonl").write_bytes(
        '{"input": "caf\xe9", "output": "no"}\n'.encode("latin-1")
    )
    assert_invalid(capsys, path, "train.jsonl:1", "not UTF-8")


def test_data_file_is_a_directory(write_spec, capsys, tmp_path):
    path = write_spec(resource([task("a")]))
    (tmp_path / "data/a/train.jsonl").unlink()
    (tmp_path / "data/a/train.jsonl").mkdir()
    assert_invalid(capsys, path, "not a regular file")


def test_every_problem_is_reported_in_one_run(write_spec, capsys, tmp_path):
    path = write_spec(resource([task("a"), task("b")]))
    (tmp_path / "data/a/train.jsonl").unlink()
    (tmp_path / "data/b/eval.jsonl").write_text("oops\n")
    err = assert_invalid(capsys, path, "spec.tasks[0].data.train", "spec.tasks[1].data.eval")
    assert err.count("error:") == 2


def test_plan_json_is_printed(write_spec, capsys):
    doc = resource([task("a"), task("g", "generation")], training={"highResourceMinExamples": 5})
    path = write_spec(doc, counts={"a": 20, "g": 3})
    code, out, err = run(capsys, "plan", str(path), "-o", "json")
    assert code == 0, err
    result = json.loads(out)
    names = {g["name"]: [s["name"] for s in g["stages"]] for g in result["groups"]}
    assert names == {"generation": ["stage2"], "binary": ["stage1", "stage2"]}


def test_plan_table_is_printed(write_spec, capsys):
    path = write_spec(resource([task("a"), task("b")]), counts={"a": 30, "b": 10})
    code, out, _ = run(capsys, "plan", str(path))
    assert code == 0
    assert out.splitlines()[0].split() == [
        "GROUP",
        "STAGE",
        "HASH",
        "STEPS",
        "SAMPLING",
        "TASK",
        "RATE",
    ]
    assert "binary" in out and "temperature τ=2 K=10000" in out


def test_plan_with_invalid_data_exits_2(write_spec, capsys, tmp_path):
    path = write_spec(resource([task("a")]))
    (tmp_path / "data/a/train.jsonl").write_text("nope\n")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 2 and "not valid JSON" in err


@pytest.mark.parametrize("document", ["[]", "just a string", "a: 1\n---\nb: 2\n"])
def test_documents_of_the_wrong_shape(tmp_path, capsys, document):
    path = tmp_path / "x.yaml"
    path.write_text(document)
    code, _, err = run(capsys, "validate", str(path))
    assert code == 2 and "Traceback" not in err


def test_relative_paths_resolve_against_the_spec_folder(write_spec, capsys, tmp_path, monkeypatch):
    path = write_spec(resource([task("a")]))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert run(capsys, "validate", str(path))[0] == 0


def test_spec_file_round_trip_keeps_defaults_explicit():
    from mtd_operator.specfile import parse_resource

    parsed = parse_resource(resource([task("a")]))
    wire = parsed.spec.to_api()
    assert wire["training"]["stage2"] == {"temperature": 2.0, "datasetCap": 10000, "maxSteps": 200}
    assert yaml.safe_load(yaml.safe_dump(wire)) == wire


@pytest.mark.skipif(nf4_unavailable(has_cuda()) is None, reason="can run nf4")
def test_nf4_is_refused_where_it_cannot_run(write_spec, capsys):
    doc = resource([task("spam")], training={"quantization": "nf4"})
    err = assert_invalid(capsys, write_spec(doc), "training.quantization: nf4")
    assert str(nf4_unavailable(has_cuda())) in err


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        ({"quantization": "int8"}, "'none' or 'nf4'"),
        ({"quantization": "nf4", "method": "full"}, "training.quantization: nf4 freezes"),
        (
            {"quantization": "nf4", "resources": {"strategy": "fsdp"}},
            "training.quantization: nf4 is not sharded",
        ),
    ],
)
def test_nf4_spec_errors_name_the_field(write_spec, capsys, training, expected):
    assert_invalid(capsys, write_spec(resource([task("spam")], training=training)), expected)
