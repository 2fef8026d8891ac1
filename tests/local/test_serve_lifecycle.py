"""`mtd serve` and its engine (the real vLLM) live and die together; a taken port fails
first; the engine answers only this workspace's key (issue #15)."""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mtd_contract.catalogue import Catalogue
from mtd_operator.client import MultiTaskClient
from mtd_operator.local.engine import KEY_FILE, EngineError, LocalEngine, adapter_name
from mtd_operator.local.serve import read_manifest
from tests.support.models import build_adapter
from tests.support.net import free_port
from tests.support.processes import (
    engine_processes,
    interruptible,
    kill_all,
    processes_mentioning,
)

from .conftest import MAX_MODEL_LENGTH, assert_no_engine_under, build_tiny

pytestmark = pytest.mark.slow

LABELS = ["pos", "neg"]


def write_deployment(deployment: Path, base: Path, adapter: Path) -> None:
    """serving.json and catalogue.json as `mtd run` leaves them: the adapter under the name
    the engine serves it by, the catalogue naming that adapter."""
    name = adapter_name(str(adapter), "sentiment")
    catalogue = {
        "revision": "r1",
        "tasks": [
            {
                "name": "sentiment",
                "type": "classification",
                "instruction": "Classify the sentiment.",
                "labels": LABELS,
                "metric": "accuracy",
                "adapter": name,
                "servedBy": "multiTask",
                "verdict": "Qualified",
            }
        ],
    }
    manifest = {
        "revision": "r1",
        "engine": "vllm",
        "baseModel": str(base),
        "maxModelLength": MAX_MODEL_LENGTH,
        "loraRank": 4,
        "adapters": {name: str(adapter)},
        "catalogue": catalogue,
    }
    deployment.mkdir(parents=True)
    (deployment / "serving.json").write_text(json.dumps(manifest), encoding="utf-8")
    (deployment / "catalogue.json").write_text(Catalogue.model_validate(catalogue).to_json())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A workspace as `mtd run` leaves it: one deployment with a serving manifest."""
    root = tmp_path_factory.mktemp("serve-lifecycle")
    base = build_tiny(root / "base")
    adapter = build_adapter(base, root / "sentiment", seed=1)
    write_deployment(root / "ws" / "tiny", base, adapter)
    yield root / "ws"
    assert_no_engine_under(root, "the module")


def start_mtd_serve(
    workspace: Path, port: int, engine_port: int | None = None
) -> tuple[subprocess.Popen[str], queue.Queue]:
    """`mtd serve`: the task gateway on `port`, the engine behind it on `engine_port`."""
    engine = ["--engine-port", str(engine_port)] if engine_port else []
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mtd_operator.cli",
            "serve",
            "--workspace",
            str(workspace),
            "--port",
            str(port),
            *engine,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=interruptible,
    )
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return process, lines


def wait_for(lines: queue.Queue, text: str, timeout: float = 300) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never printed; output:\n{seen}")


def rest_of(lines: queue.Queue, timeout: float = 30) -> str:
    """What the command printed until it closed its output."""
    output = ""
    while (line := lines.get(timeout=timeout)) is not None:
        output += line
    return output


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
    except httpx.ConnectError:
        return True
    return False


@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL],
    ids=lambda s: signal.Signals(s).name,
)
def test_no_engine_outlives_mtd_serve(workspace: Path, signum: int) -> None:
    port, engine_port = free_port(), free_port()
    process, lines = start_mtd_serve(workspace, port, engine_port)
    deployment = workspace / "tiny"
    try:
        wait_for(lines, "Serving at")
        servers = processes_mentioning("vllm serve")
        (server,) = [pid for pid in servers if pid in engine_processes(deployment)]
        engine = engine_processes(deployment)
        # The server and what it started (its engine core names no workspace in its
        # command line): the check below sees those too.
        assert len(engine) >= 2 and server in engine, engine
        assert httpx.get(f"http://127.0.0.1:{port}/tasks", timeout=30).status_code == 200
        process.send_signal(signum)
        code = process.wait(timeout=60)
        if signum != signal.SIGKILL:
            assert code in (0, 130), rest_of(lines)
        assert_no_engine_under(deployment, f"mtd serve stopped by {signal.Signals(signum).name}")
        assert refused(f"http://127.0.0.1:{port}/tasks")
        assert refused(f"http://127.0.0.1:{engine_port}/health")
    finally:
        process.kill()
        process.wait()
        kill_all(engine_processes(deployment))


def test_the_engine_serves_this_workspace_alone(workspace: Path) -> None:
    """Its API key (0600 beside the status) guards it; this workspace's later commands
    use it, another workspace's are refused."""
    port, engine_port = free_port(), free_port()
    process, lines = start_mtd_serve(workspace, port, engine_port)
    engine_url = f"http://127.0.0.1:{engine_port}"
    deployment = workspace / "tiny"
    try:
        wait_for(lines, "Serving at")
        key_file = deployment / KEY_FILE
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text(encoding="utf-8").strip()
        manifest = read_manifest(deployment / "serving.json")
        # Every /v1 route wants the key (the adapter-loading one among them).
        assert httpx.get(f"{engine_url}/v1/models", timeout=30).status_code == 401
        wrong = {"Authorization": "Bearer not-the-key"}
        assert httpx.get(f"{engine_url}/v1/models", headers=wrong, timeout=30).status_code == 401
        load = {"lora_name": "x", "lora_path": str(next(iter(manifest["adapters"].values())))}
        anonymous = httpx.post(f"{engine_url}/v1/load_lora_adapter", json=load, timeout=30)
        assert anonymous.status_code == 401
        right = {"Authorization": f"Bearer {key}"}
        models = httpx.get(f"{engine_url}/v1/models", headers=right, timeout=30).json()["data"]
        assert {m["id"] for m in models} == {manifest["baseModel"], *manifest["adapters"]}
        # The gateway holds the key: a task is answered through it.
        with MultiTaskClient(f"http://127.0.0.1:{port}") as client:
            answer = client.predict("sentiment", "the day was awful")
        assert answer.output in LABELS and answer.adapter in manifest["adapters"]

        # This workspace may use its engine (a later `mtd run` attaches to it) ...
        ours = LocalEngine(deployment, port=engine_port)
        assert ours.attach(manifest["baseModel"]) and ours.attached
        ours.stop()  # not ours to stop: a no-op
        assert httpx.get(f"{engine_url}/health", timeout=30).status_code == 200
        # ... and so may a second `mtd serve`: it serves until stopped, then leaves the
        # engine to the command that started it.
        second_port = free_port()
        second, second_lines = start_mtd_serve(workspace, second_port, engine_port)
        try:
            wait_for(second_lines, "Serving at", timeout=120)
            with MultiTaskClient(f"http://127.0.0.1:{second_port}") as client:
                again = client.predict("sentiment", "the day was awful")
            assert (again.output, again.adapter) == (answer.output, answer.adapter)
            time.sleep(2)
            assert second.poll() is None, rest_of(second_lines)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
        finally:
            second.kill()
            second.wait()
        assert refused(f"http://127.0.0.1:{second_port}/tasks")
        assert httpx.get(f"{engine_url}/health", timeout=30).status_code == 200

        # ... another workspace, with a key of its own, may not.
        stranger = workspace.parent / "other" / "tiny"
        stranger.mkdir(parents=True)
        for name in ("serving.json", "catalogue.json"):
            shutil.copy(deployment / name, stranger / name)
        fd = os.open(stranger / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        with pytest.raises(EngineError, match="not this workspace's engine"):
            LocalEngine(stranger, port=engine_port).attach(manifest["baseModel"])
        other, other_lines = start_mtd_serve(stranger.parent, free_port(), engine_port)
        code = other.wait(timeout=120)
        output = rest_of(other_lines)
        assert code == 1, output
        assert "not this workspace's engine" in output and str(stranger / KEY_FILE) in output
        assert "Serving at" not in output and "Traceback" not in output
        assert engine_processes(stranger) == []
        # The refused command left the engine serving its own workspace.
        assert httpx.get(f"{engine_url}/v1/models", headers=right, timeout=30).status_code == 200
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert_no_engine_under(deployment, "mtd serve stopped by SIGTERM")


@pytest.mark.parametrize("which", ["gateway", "engine"])
def test_a_taken_port_is_reported_before_serving_is_claimed(workspace: Path, which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = (port, free_port()) if which == "gateway" else (free_port(), port)
        process, lines = start_mtd_serve(workspace, *ports)
        code = process.wait(timeout=120)
        output = rest_of(lines)
    assert code == 1, output
    assert f"cannot serve on 127.0.0.1:{port}: already in use" in output
    assert "Serving at" not in output and "Traceback" not in output
    assert engine_processes(workspace) == []  # no model was loaded
