"""One pipeline at a time per workspace: two `mtd run` of one resource would run every
step twice in one folder (a trainer resuming from the other's checkpoint in flight,
metrics rows duplicated). An advisory lock (flock) on `<root>/.pipeline.lock` is held
while the pipeline runs; the kernel drops it when the process ends, however it ends, so
no stale lock is ever left. Serving is not locked: a second `mtd run` may hand its new
adapters to the engine the first one serves with."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".pipeline.lock"


class WorkspaceBusy(Exception):
    """Another process runs this workspace's pipeline."""


@contextlib.contextmanager
def pipeline_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise WorkspaceBusy(
                f"{root}: another mtd run (pid {holder}) is running this pipeline; wait for "
                "it to finish or stop it, then run again (it resumes where that one stopped)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
