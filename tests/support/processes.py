"""Which processes are still alive: the tests that kill runs check nothing is left."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path


def processes_mentioning(text: str) -> list[int]:
    """Live processes (zombies and this one excluded) whose command line contains `text`.

    Read from /proc, so Linux only; a process that ends while it is read is skipped."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def engine_processes(folder: Path) -> list[int]:
    """Live vLLM processes of engines whose state lies under `folder` (local/engine.py's
    `LocalEngine.state_dir`): the `vllm serve` process and everything it started.

    Found by the environment, which every descendant inherits: the engine runs with
    VLLM_CACHE_ROOT=<state dir>/.cache/vllm, while vLLM's engine-core child is spawned with
    a command line that names neither the model nor the workspace. Linux only."""
    wanted = f"VLLM_CACHE_ROOT={os.path.realpath(folder)}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(v.startswith(wanted) for v in environ.split(b"\0")):
            found.append(int(entry.name))
    return found


def kill_all(pids: list[int]) -> None:
    """SIGKILL each of `pids` (a test's own leftovers), ignoring those already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """End a process a test started: SIGTERM, then SIGKILL if it outlives `timeout`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def heavy_imports(*modules: str) -> list[str]:
    """Which of torch, transformers and peft importing `modules` pulls in, checked in a
    fresh interpreter (this one has them loaded already): parts that must stay light."""
    code = (
        f"import sys, {', '.join(modules)}\n"
        "print(' '.join(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.split()


def interruptible() -> None:
    """`preexec_fn` for a child a test will stop with SIGINT: a shell running the suite in
    the background hands its children SIGINT ignored, and Python keeps an ignored SIGINT
    ignored (no KeyboardInterrupt), so the child's Ctrl-C handling would go untested."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
