"""``kopf run`` as a separate process, logging in through the generated kubeconfig.

Issue 9's kill-and-restart tests run the operator this way: the emulator keeps the state
while the operator process is killed with SIGKILL and started again.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
from typing import Any

from k8s_emulator import Emulator

WIDGETS = "test.example.com/v1/widgets"

OPERATOR = """
import kopf

@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.persistence.finalizer = "test.example.com/finalizer"
    settings.posting.enabled = False

@kopf.on.create("test.example.com", "v1", "widgets")
@kopf.on.update("test.example.com", "v1", "widgets", field="spec")
def reconcile(patch, meta, **_):
    patch.status["observedGeneration"] = meta["generation"]

@kopf.on.delete("test.example.com", "v1", "widgets")
def gone(**_):
    pass
"""


def _start(emulator: Emulator, script: pathlib.Path) -> subprocess.Popen[str]:
    env = {**os.environ, "KUBECONFIG": emulator.kubeconfig_path}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "--namespace",
            "default",
            str(script),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _observed(emulator: Emulator, generation: int) -> dict[str, Any] | None:
    obj = emulator.try_get(WIDGETS, "w")
    return (
        obj if ((obj or {}).get("status") or {}).get("observedGeneration") == generation else None
    )


def test_kopf_process_killed_and_restarted(
    emulator: Emulator, widgets: str, tmp_path: pathlib.Path
) -> None:
    script = tmp_path / "operator.py"
    script.write_text(OPERATOR)
    emulator.create(
        {
            "apiVersion": "test.example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 1},
        }
    )
    proc = _start(emulator, script)
    try:
        emulator.wait_for(lambda: _observed(emulator, 1), timeout=30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)

    emulator.patch(WIDGETS, "w", {"spec": {"size": 2}})  # changed while nobody watches
    proc = _start(emulator, script)
    try:
        obj = emulator.wait_for(lambda: _observed(emulator, 2), timeout=30)
        assert obj["metadata"]["finalizers"] == ["test.example.com/finalizer"]
        emulator.delete(WIDGETS, "w")  # the restarted operator releases its finalizer
        emulator.wait_for(lambda: emulator.try_get(WIDGETS, "w") is None, timeout=30)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert "Traceback" not in output, output
