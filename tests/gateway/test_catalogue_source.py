"""The gateway's catalogue file (gateway/source.py): reloaded on change, and never a way
to hang or stall the gateway."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from mtd_operator.gateway.source import CatalogueSource, CatalogueUnavailable

from .conftest import catalogue_doc


def test_a_fifo_at_the_catalogue_path_is_refused_not_waited_on(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.json"
    os.mkfifo(path)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            CatalogueSource(path).current()
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)
    if reader.is_alive():  # unblock it before failing: open the FIFO for writing
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading the catalogue blocked on a FIFO")
    (error,) = outcome
    assert isinstance(error, CatalogueUnavailable) and "not a regular file" in str(error)


def test_a_catalogue_of_20000_tasks_loads_and_a_repeated_name_is_named(tmp_path: Path) -> None:
    (template,) = [t for t in catalogue_doc()["tasks"] if t["name"] == "sounds"]
    tasks = [{**template, "name": f"task-{i}"} for i in range(20_000)]
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps({"revision": "r1", "tasks": tasks}))
    source = CatalogueSource(path)
    assert len(source.current().tasks) == 20_000
    path.write_text(json.dumps({"revision": "r2", "tasks": [*tasks, tasks[7]]}))
    assert len(source.current().tasks) == 20_000  # the last good one keeps serving
    assert source.error is not None and "task names repeat: task-7" in source.error
