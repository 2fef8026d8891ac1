"""The gateway's server limits (mtd_contract.limits), measured as a client meets them:
headers within a deadline, a bounded number of connections, bodies refused in bounded
memory by the gateway and, for a client without its key, by the real engine (issue #29)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from mtd_contract.limits import MAX_BODY_BYTES
from mtd_operator.gateway.app import build_gateway, serve_in_thread
from tests.support.net import free_port

GIB = 1 << 30
MIB = 1 << 20
CLIENTS = 8
RSS_LIMIT_KB = 1 << 20  # 1 GiB, in /proc's kB
#: How long a test waits for the server to act (a deadline for the test, not a timing).
WAIT_S = 60.0


def closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Whether the server closes `sock` (EOF or reset) before `deadline` (monotonic)."""
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_client_that_never_finishes_its_headers_is_disconnected(catalogue_file, vllm):
    _, url = vllm
    gateway = build_gateway(str(catalogue_file), url, engine="vllm", base_model="org/tiny-base")
    port = free_port()
    server = serve_in_thread(gateway, "127.0.0.1", port, header_timeout=0.5)
    try:
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        for sock in slow:
            sock.sendall(b"POST /tasks/sounds HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
        deadline = time.monotonic() + WAIT_S
        assert all(closed_by_server(sock, deadline) for sock in slow)
        # A whole request on a fresh connection is served, and so is a second request on
        # the same connection (keep-alive): the deadline is per request's headers.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S) as client:
            assert client.get("/health").status_code == 200
            time.sleep(1.0)  # past the header deadline, idle between requests
            assert client.get("/health").status_code == 200
    finally:
        server.should_exit = True


def start_gateway(catalogue: Path, upstream: str) -> tuple[subprocess.Popen, int]:
    """`mtd gateway` as its own process (its memory is measured from /proc)."""
    port = free_port()
    command = [sys.executable, "-m", "mtd_operator.cli", "gateway", "--upstream", upstream]
    command += ["--catalogue", str(catalogue), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return process, port
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.2)


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in kB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))


def send_gigabytes(url: str, headers: dict[str, str] | None = None) -> list[str]:
    """CLIENTS clients at once, each streaming a 1 GiB body (no Content-Length, so the
    server can only count what arrives); what each got: a status, or how it was cut."""
    chunk = b"x" * MIB

    def body():
        for _ in range(GIB // MIB):
            yield chunk

    outcomes: list[str] = []

    def one() -> None:
        try:
            response = httpx.post(url, content=body(), headers=headers, timeout=WAIT_S)
            outcomes.append(str(response.status_code))
        except httpx.TransportError as exc:  # the server closed mid-body, after answering
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=one) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.slow
def test_eight_gigabyte_bodies_keep_the_gateway_under_1_gib(catalogue_file, vllm):
    _, url = vllm
    process, port = start_gateway(catalogue_file, url)
    try:
        outcomes = send_gigabytes(f"http://127.0.0.1:{port}/tasks/sounds")
        assert len(outcomes) == CLIENTS
        assert all(o in ("413", "WriteError", "RemoteProtocolError", "ReadError") for o in outcomes)
        peak = peak_rss_kb(process.pid)
        print(f"gateway peak RSS with {CLIENTS} x 1 GiB bodies: {peak / 1024:.0f} MiB; {outcomes}")
        assert peak < RSS_LIMIT_KB
        assert MAX_BODY_BYTES * CLIENTS < RSS_LIMIT_KB * 1024  # what the cap itself allows
        # Still serving after it.
        answer = httpx.post(f"http://127.0.0.1:{port}/tasks/sounds", json={"text": "cow"})
        assert answer.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.slow
def test_eight_gigabyte_bodies_without_the_key_keep_the_engine_under_1_gib(real_vllm):
    """The real vLLM, reached without its API key (the gateway holds it; on a cluster a
    NetworkPolicy admits only the gateway and the operator): refused on its headers."""
    engine = real_vllm.engine
    before = peak_rss_kb(engine.process.pid)
    outcomes = send_gigabytes(f"{engine.url}/v1/chat/completions")
    peak = peak_rss_kb(engine.process.pid)
    print(f"vLLM API server peak RSS {before / 1024:.0f} -> {peak / 1024:.0f} MiB; {outcomes}")
    assert all(o in ("401", "WriteError", "RemoteProtocolError", "ReadError") for o in outcomes)
    assert peak - before < RSS_LIMIT_KB
    assert peak < RSS_LIMIT_KB


def test_a_client_that_leaves_cancels_its_engine_request(catalogue_file):
    """The gateway stops waiting and closes its engine request (vLLM aborts a request
    whose connection closes) when its client disconnects, on /tasks and on /v1."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.support.net import serve_app

    seen: list[str] = []

    async def slow(request: Request) -> JSONResponse:
        body = await request.json()
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                seen.append(body["model"])
                break
            await asyncio.sleep(0.05)
        return JSONResponse({"choices": [{"message": {"content": "late"}}]})

    async def models(_: Request) -> JSONResponse:
        return JSONResponse({"data": [{"id": "org/tiny-base", "parent": None}]})

    engine = Starlette(
        routes=[
            Route("/v1/chat/completions", slow, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )
    with serve_app(engine) as engine_url:
        gateway = build_gateway(str(catalogue_file), engine_url, engine="vllm")
        port = free_port()
        server = serve_in_thread(gateway, "127.0.0.1", port)
        try:
            for path, body in (
                ("/tasks/sounds", {"text": "cow"}),
                ("/v1/chat/completions",
                 {"model": "echo", "messages": [{"role": "user", "content": "x"}]}),
            ):  # fmt: skip
                with pytest.raises(httpx.ReadTimeout):  # the client gives up and leaves
                    httpx.post(f"http://127.0.0.1:{port}{path}", json=body, timeout=1.0)
            deadline = time.monotonic() + WAIT_S
            while len(seen) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert seen == ["sounds", "org/tiny-base"]  # each engine request was closed
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert 'status="499"' in metrics
        finally:
            server.should_exit = True
