"""One pipeline per workspace at a time (local/lock.py): a second `mtd run` of the same
resource is refused while the first runs its pipeline, and a killed run leaves no lock."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mtd_operator.local.lock import LOCK_FILE, WorkspaceBusy, pipeline_lock

HOLD = """
import sys, time
from pathlib import Path
from mtd_operator.local.lock import pipeline_lock
with pipeline_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_pipeline_is_refused_naming_the_first_and_a_kill_frees_it(tmp_path: Path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = rf"another mtd run \(pid {holder.pid}\)"
        with pytest.raises(WorkspaceBusy, match=busy), pipeline_lock(tmp_path):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_FILE).exists()  # left behind, but no longer locked
    with pipeline_lock(tmp_path):  # the kernel dropped the killed holder's lock
        pass
    with pipeline_lock(tmp_path):  # released on exit: taken again
        pass
