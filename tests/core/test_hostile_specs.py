"""Specs and data written by an attacker: exit 2 with a message, bounded memory, no
traceback, no file read outside the spec's folder, no secret quoted back (issue #15)."""

from __future__ import annotations

import json
import resource as rlimit
import subprocess
import sys
from pathlib import Path

import pytest

from mtd_operator.cli import main

from .specs import resource, task

MEMORY_CAP_BYTES = 1024**3  # the validating process is killed if it grows beyond this


def validate_in_subprocess(path: str | Path) -> subprocess.CompletedProcess[str]:
    """`mtd validate` in its own process: a segfault or a memory blow-up shows as such
    (instead of ending the test run), and memory is capped by the kernel."""

    def cap_memory() -> None:
        rlimit.setrlimit(rlimit.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))

    return subprocess.run(
        [sys.executable, "-m", "mtd_operator.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap_memory,
    )


def assert_rejected(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


HEAD = "apiVersion: multitask.dev/v1alpha1\n"


def billion_laughs(levels: int = 9) -> str:
    """An anchor `x` that expands to 9**levels strings: a few hundred bytes on disk."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ",".join([f"*l{level - 1}"] * 9) + "]")
    lines.append(f"x: &x *l{levels - 1}")
    return "\n".join(lines) + "\n"


def test_30000_nested_brackets_are_rejected(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(HEAD + "kind: " + "[" * 30000 + "]" * 30000 + "\n")
    assert_rejected(validate_in_subprocess(path), "nested deeper than 64 levels", f"{path}:2:")


@pytest.mark.parametrize(
    "where",
    [
        "kind: *x\n",
        "kind: MultiTaskDeployment\nspec:\n  tasks:\n  - type: *x\n",
        "kind: MultiTaskDeployment\nspec:\n  tasks:\n  - metric: *x\n",
    ],
    ids=["kind", "type", "metric"],
)
def test_alias_bombs_are_rejected(tmp_path, where):
    path = tmp_path / "bomb.yaml"
    path.write_text(HEAD + billion_laughs() + where)
    assert_rejected(validate_in_subprocess(path), "nodes once aliases are expanded")


def test_aliases_of_reasonable_size_still_work(write_spec, tmp_path, capsys):
    path = write_spec(resource([task("a"), task("b")]))
    text = path.read_text(encoding="utf-8")
    text = text.replace("instruction: Do a.", "instruction: &shared Do a.").replace(
        "instruction: Do b.", "instruction: *shared"
    )
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_a_repeated_key_is_rejected_at_its_line(write_spec, capsys):
    path = write_spec(resource([task("a"), task("b")]))
    lines = path.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == "instruction: Do b.")
    lines.insert(at + 1, lines[at].replace("Do b.", "Do something else."))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{at + 2}:" in err and "duplicate key 'instruction'" in err, err


def test_the_same_key_in_different_mappings_and_merge_keys_are_fine(tmp_path, capsys):
    path = tmp_path / "ok.yaml"
    path.write_text("a: {x: 1, y: 2}\nb: {x: 1}\nc: &c {z: 1}\nd: {<<: *c, x: 2}\n")
    from mtd_operator.specfile import _scan_events

    _scan_events(path.read_text(), str(path))  # raises InvalidSpec on a duplicate


def test_an_integer_of_5000_digits_is_a_spec_error(write_spec, capsys):
    path = write_spec(resource([task("a"), task("b")]))
    path.write_text(path.read_text(encoding="utf-8") + "extra: " + "9" * 5000 + "\n")
    assert main(["validate", str(path)]) == 2
    assert "a value cannot be read: Exceeds the limit" in capsys.readouterr().err


def test_dev_zero_as_the_spec_is_rejected():
    assert_rejected(validate_in_subprocess("/dev/zero"), "/dev/zero: not a regular file")


def test_an_oversized_spec_is_rejected_unread(tmp_path, capsys, monkeypatch):
    from mtd_operator import specfile

    monkeypatch.setattr(specfile, "MAX_SPEC_BYTES", 1000)
    path = tmp_path / "big.yaml"
    path.write_text(HEAD + "# " + "x" * 2000 + "\n")
    assert main(["validate", str(path)]) == 2
    assert "larger than 1000 bytes" in capsys.readouterr().err


def test_a_deeply_nested_data_line_is_a_data_error(write_spec, tmp_path, capsys):
    path = write_spec(resource([task("a")]))
    with (tmp_path / "data/a/train.jsonl").open("a") as handle:
        handle.write("[" * 3000 + "]" * 3000 + "\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "train.jsonl:11: not a record: JSON nested too deeply" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("data_path", ["../outside.jsonl", "/etc/passwd", "/proc/self/environ"])
def test_data_paths_outside_the_spec_folder_are_spec_errors(
    write_spec, tmp_path, capsys, data_path
):
    (tmp_path.parent / "outside.jsonl").write_text('{"input": "x", "output": "no"}\n')
    doc = resource([task("a")])
    path = write_spec(doc)
    doc["spec"]["tasks"][0]["data"]["train"] = data_path
    path.write_text(json.dumps(doc))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "spec.tasks[0].data.train:" in err and "outside" in err, err


def test_a_symlink_out_of_the_spec_folder_is_a_spec_error(write_spec, tmp_path, capsys):
    secret = tmp_path.parent / f"{tmp_path.name}-secret.jsonl"
    secret.write_text('{"input": "x", "output": "AWS_SECRET=hunter2"}\n')
    path = write_spec(resource([task("a")]))
    (tmp_path / "data/a/train.jsonl").unlink()
    (tmp_path / "data/a/train.jsonl").symlink_to(secret)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "spec.tasks[0].data.train:" in err and "outside" in err
    assert "hunter2" not in err


def test_errors_quote_only_a_prefix_of_a_data_value(write_spec, tmp_path, capsys):
    path = write_spec(resource([task("a")]))
    with (tmp_path / "data/a/train.jsonl").open("a") as handle:
        handle.write(json.dumps({"input": "x", "output": "AWS_SECRET=hunter2"}) + "\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is not a label" in err and "'AWS_SECRET=h'..." in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("training", "field"),
    [
        ({"stage2": {"maxSteps": True}}, "spec.training.stage2.maxSteps"),
        ({"stage1": {"maxSteps": 10**40}}, "spec.training.stage1.maxSteps"),
        ({"batchSize": 10**9}, "spec.training.batchSize"),
        ({"stage2": {"temperature": True}}, "spec.training.stage2.temperature"),
        ({"stage2": {"maxSteps": 2.0}}, "spec.training.stage2.maxSteps"),
    ],
)
def test_out_of_bounds_and_mistyped_values(write_spec, capsys, training, field):
    assert main(["validate", str(write_spec(resource([task("a")], training=training)))]) == 2
    assert field in capsys.readouterr().err


def test_a_boolean_must_be_a_boolean(write_spec, capsys):
    path = write_spec(resource([task("a", labels=["x", "y", "z"], ordinal="yes")]))
    assert main(["validate", str(path)]) == 2
    assert "spec.tasks[0].ordinal" in capsys.readouterr().err


def test_ordinal_needs_three_labels(write_spec, capsys):
    assert main(["validate", str(write_spec(resource([task("a", ordinal=True)])))]) == 2
    assert "'ordinal: true' needs 3 or more labels" in capsys.readouterr().err


def test_validate_checks_a_local_base_model(write_spec, capsys):
    doc = resource([task("a")])
    doc["spec"]["baseModel"]["uri"] = "/no/such/model"
    assert main(["validate", str(write_spec(doc))]) == 2
    err = capsys.readouterr().err
    assert "spec.baseModel.uri: '/no/such/model': no model folder" in err


def test_plan_into_a_closed_pipe_has_no_traceback(write_spec):
    path = write_spec(resource([task("a"), task("b")]))
    plan = subprocess.Popen(
        [sys.executable, "-m", "mtd_operator.cli", "plan", str(path), "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert plan.stdout is not None and plan.stderr is not None
    plan.stdout.close()  # the reader leaves before the first line, as `| head -0` does
    err = plan.stderr.read().decode()
    plan.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_a_broken_serving_manifest_is_one_line_not_a_traceback(tmp_path, capsys):
    manifest = tmp_path / "ws" / "tiny" / "serving.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{not json")
    assert main(["serve", "--workspace", str(tmp_path / "ws")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {manifest}: Expecting property name") and "Traceback" not in err
    assert err.rstrip().endswith("run `mtd run` again") and err.count("\n") == 1


def test_a_data_folder_without_permission_is_a_problem_not_a_crash(write_spec, capsys, monkeypatch):
    """A folder on the data path the user may not search makes `stat` fail with EACCES
    (pathlib raises it from exists()); as root here, that failure is simulated."""
    import errno
    import os
    from pathlib import Path

    path = write_spec(resource([task("a")]))
    train = (path.parent / resource([task("a")])["spec"]["tasks"][0]["data"]["train"]).resolve()
    real_stat = Path.stat

    def stat(self, *args, **kwargs):
        if self == train:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "spec.tasks[0].data.train" in err and "cannot be read: Permission denied" in err


@pytest.mark.parametrize("name", ["tgi", "binary", "single-x", "solo-y"])
def test_a_reserved_adapter_name_is_refused_for_a_cgc_task(write_spec, capsys, name):
    doc = resource([task(name), task("other")])
    doc["spec"]["training"] = {
        **doc["spec"].get("training", {}),
        "method": "cgcLora",
        "cgcLora": {"commonExperts": 1, "specificExperts": 1, "expertRank": 2},
    }
    assert main(["validate", str(write_spec(doc))]) == 2
    assert f"spec.tasks[0].name: {name!r} is reserved under training.method cgcLora" in (
        capsys.readouterr().err
    )
    doc["spec"]["training"]["method"] = "lora"  # adapters are named by group: no clash
    doc["spec"]["training"].pop("cgcLora")
    assert main(["validate", str(write_spec(doc))]) == 0


def test_a_bad_task_name_is_said_in_words_not_as_a_regex(write_spec, capsys):
    assert main(["validate", str(write_spec(resource([task("Bad_Name")])))]) == 2
    err = capsys.readouterr().err
    assert "spec.tasks[0].name: 'Bad_Name' is not a DNS-1123 label: lowercase letters" in err
    assert "^[a-z0-9]" not in err
