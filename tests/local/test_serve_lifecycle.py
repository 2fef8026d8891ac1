"""`mtd serve` and its server live and die together; a taken port fails first (issue #15)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from mtd_operator.local.serve import ServingError, push_adapters
from tests.serving.conftest import SENTIMENT_ENTRY, build_base
from tests.support.models import build_adapter
from tests.support.net import free_port
from tests.support.processes import interruptible, processes_mentioning


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace as `mtd run` leaves it: one deployment with a serving manifest."""
    root = tmp_path_factory.mktemp("serve-lifecycle")
    base = build_base(root / "base")
    adapter = build_adapter(base, root / "sentiment", seed=1)
    deployment = root / "ws" / "tiny"
    deployment.mkdir(parents=True)
    manifest = {
        "revision": "r1",
        "baseModel": str(base),
        "adapters": {"sentiment": str(adapter)},
        "catalogue": {"tasks": [SENTIMENT_ENTRY]},
    }
    (deployment / "serving.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root / "ws"


def start_mtd_serve(
    workspace: Path, port: int, engine_port: int | None = None
) -> tuple[subprocess.Popen[str], queue.Queue]:
    """`mtd serve`: the task gateway on `port`, our server behind it on `engine_port`."""
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
        env={**os.environ, "OMP_NUM_THREADS": "1"},
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


@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL],
    ids=lambda s: signal.Signals(s).name,
)
def test_no_server_outlives_mtd_serve(workspace: Path, signum: int) -> None:
    port = free_port()
    process, lines = start_mtd_serve(workspace, port)
    try:
        wait_for(lines, "Serving at")
        servers = processes_mentioning(f"{workspace}/tiny/admin-token")
        assert len(servers) == 1, servers
        process.send_signal(signum)
        process.wait(timeout=60)
        deadline = time.monotonic() + 60
        while processes_mentioning(f"{workspace}/tiny/admin-token"):
            assert time.monotonic() < deadline, "the server outlived mtd serve"
            time.sleep(0.2)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        process.kill()
        process.wait()
        for pid in processes_mentioning(f"{workspace}/tiny/admin-token"):
            os.kill(pid, signal.SIGKILL)


def test_the_admin_token_guards_the_served_adapters(workspace: Path) -> None:
    port, engine_port = free_port(), free_port()
    process, lines = start_mtd_serve(workspace, port, engine_port)
    url = f"http://127.0.0.1:{engine_port}"  # the admin route is the engine's, not the gateway's
    try:
        wait_for(lines, "Serving at")
        token = workspace / "tiny" / "admin-token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        anonymous = httpx.post(f"{url}/adapters", json={"adapters": {}}, timeout=30)
        assert anonymous.status_code == 401
        assert push_adapters(url, workspace / "tiny" / "serving.json") == ["sentiment"]
        # Another workspace holds no token for this server: refused before any request.
        stranger = workspace.parent / "other" / "tiny"
        stranger.mkdir(parents=True, exist_ok=True)
        (stranger / "serving.json").write_bytes((workspace / "tiny/serving.json").read_bytes())
        with pytest.raises(ServingError, match="not this workspace's server"):
            push_adapters(url, stranger / "serving.json")
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_a_taken_port_is_reported_before_serving_is_claimed(workspace: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, lines = start_mtd_serve(workspace, port)
        code = process.wait(timeout=120)
        output = ""
        while (line := lines.get(timeout=10)) is not None:
            output += line
    assert code == 1, output
    assert f"cannot serve on 127.0.0.1:{port}: already in use" in output
    assert "Serving at" not in output and "Traceback" not in output
