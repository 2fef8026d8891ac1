"""`mtd run` killed in the middle of a training step: no process is left, and the rerun
resumes that step from its checkpoint instead of starting it again (then evaluates
through its own engine, stopped when it ends)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tests.local.test_mtd_run import SOUNDS, write_spec
from tests.support.net import free_port
from tests.support.processes import engine_processes, interruptible, processes_mentioning
from tests.support.tiny_tasks import write_task_data
from tests.support.waiting import wait_until

from .conftest import assert_no_engine_under

pytestmark = pytest.mark.slow

MTD = [sys.executable, "-c", "import sys; from mtd_operator.cli import main; sys.exit(main())"]
STEPS = 400  # checkpoints every 50 steps; the signal lands soon after the first


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_killed_run_leaves_no_process_and_resumes_from_the_checkpoint(tmp_path, model, sig):
    write_task_data(tmp_path)
    spec = write_spec(tmp_path, model, [SOUNDS], stage2={"maxSteps": STEPS})
    workspace = tmp_path / "ws"
    # Ports of its own: the engine that evaluates listens even with --no-serve.
    ports = ["--port", str(free_port()), "--engine-port", str(free_port())]
    command = [*MTD, "run", str(spec), "--workspace", str(workspace), "--no-serve", *ports]
    run = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=interruptible,
    )
    try:
        checkpoint = wait_until(
            lambda: sorted(workspace.glob("tiny/**/checkpoints/step-*")), 240, "a checkpoint"
        )[0]
        configs = str(workspace / "tiny" / "configs")  # in the trainer's command line only
        assert len(processes_mentioning(configs)) == 1
        run.send_signal(sig)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, output
    assert "stopped; the next run resumes it" in output, output
    assert "rerun the same command to resume" in output
    assert processes_mentioning(configs) == [], "a child outlived mtd run"
    assert engine_processes(workspace) == []  # killed while training: no engine yet
    stage = checkpoint.parent.parent
    assert not (stage / "result.json").exists()
    assert sorted(stage.glob("checkpoints/step-*")), "the checkpoint must survive the stop"
    if sig != signal.SIGTERM:
        return  # both signals stop alike (above); the resume after it is the same, once

    # The rerun resumes from the newest checkpoint (the trainer logs where it resumed).
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    # It evaluated through an engine of its own, which ended with it.
    assert (workspace / "tiny" / "logs" / "engine.log").exists()
    assert_no_engine_under(workspace, "mtd run")
    log = next(workspace.glob("tiny/logs/*stage2*.log")).read_text()
    resumed = [line for line in log.splitlines() if "resumed from" in line]
    assert len(resumed) == 1, log[-2000:]
    step = int(resumed[0].rsplit("at step", 1)[1])
    assert step >= int(checkpoint.name.removeprefix("step-")) > 0
    result = json.loads((stage / "result.json").read_text())
    assert result["steps"] == STEPS
