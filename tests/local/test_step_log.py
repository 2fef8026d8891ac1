"""A step killed together with `mtd run` keeps what it logged (issue #15)."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.support.processes import processes_mentioning

# SIGHUP back to its default first: a run started under `nohup` (or by a CI runner that
# does so) inherits SIGHUP ignored, and this test is about a run that a hang-up does end.
RUNNER = """
import signal
import sys
from pathlib import Path
from mtd_operator.local.runner import LocalRun
signal.signal(signal.SIGHUP, signal.SIG_DFL)
LocalRun(Path(sys.argv[1]), Path(sys.argv[2]), python=sys.argv[3]).run_pipeline()
"""


def write_spec(folder: Path) -> Path:
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text("{}", encoding="utf-8")
    rows = [{"input": f"text {i}", "output": "yes" if i % 2 else "no"} for i in range(8)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    doc = {
        "apiVersion": "multitask.dev/v1alpha1",
        "kind": "MultiTaskDeployment",
        "metadata": {"name": "logs"},
        "spec": {
            "baseModel": {"uri": "model"},
            "tasks": [
                {
                    "name": "a",
                    "type": "classification",
                    "labels": ["no", "yes"],
                    "instruction": "Answer.",
                    "data": {"train": "train.jsonl"},
                }
            ],
        },
    }
    path = folder / "mtd.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_killed_step_keeps_its_log(tmp_path: Path, signum: int) -> None:
    # A stand-in trainer: logs a line, then works for a long time.
    trainer = tmp_path / "trainer.sh"
    trainer.write_text('#!/bin/sh\necho "step started: $*"\nsleep 300\n')
    trainer.chmod(0o755)
    spec = write_spec(tmp_path)
    run = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(spec), str(tmp_path / "ws"), str(trainer)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so the test can clean up after it
    )
    try:
        assert run.stdout is not None
        deadline = time.monotonic() + 120
        for line in run.stdout:
            if "step started" in line:
                break
            assert time.monotonic() < deadline
        run.send_signal(signum)
        run.wait(timeout=60)
        logs = list((tmp_path / "ws" / "logs" / "logs").glob("*.log"))  # ws/NAME/logs
        assert logs, list((tmp_path / "ws").rglob("*"))
        assert "step started: -m mtd_trainer train" in logs[0].read_text(encoding="utf-8")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        # The runner started the stand-in trainer in a session of its own (as it stops
        # steps as a whole); killed outright, it leaves it behind: end that group too.
        for pid in processes_mentioning(str(trainer)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_children_cpu_counts_a_finished_step() -> None:
    """The CPU seconds printed after a step are what the step's process used."""
    from mtd_operator.local.runner import children_cpu

    before = children_cpu()
    burn = "import time\nx = sum(range(3_000_000))\nprint(time.process_time())"
    used = float(subprocess.run([sys.executable, "-c", burn], capture_output=True,
                                text=True, check=True).stdout)  # fmt: skip
    assert used > 0
    assert children_cpu() - before >= used * 0.9


class FullDisk(io.StringIO):
    """A log file on a disk that fills up after `room` characters (ENOSPC)."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, text: str) -> int:
        if self.tell() + len(text) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(text)


def test_a_full_disk_stops_the_log_not_the_step_output(tmp_path: Path) -> None:
    """The pump goes on draining the step's pipe when its log cannot be written (a step
    blocked on a full pipe would never end), says so once, and keeps the tail for the
    step's failure message."""
    from collections import deque

    from mtd_operator.local.runner import LocalRun

    lines = [f"step {i} loss 0.{i}\n" for i in range(200)]
    out, log, tail = io.StringIO(), FullDisk(room=100), deque(maxlen=20)
    pump = LocalRun._pump.__get__(SimpleNamespace(out=out, _say=lambda t: out.write(t)))
    pump(io.StringIO("".join(lines)), log, tail)
    assert list(tail) == lines[-20:]
    assert out.getvalue().count("the step's log is no longer written") == 1
    assert "No space left on device" in out.getvalue()
    assert out.getvalue().endswith("  step 199 loss 0.199\n")
    assert log.getvalue() == "".join(lines[:6])  # what fitted in 100 characters
