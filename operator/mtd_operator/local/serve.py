"""Start the local TGI-compatible server for a workspace's current serving revision.

The server runs as its own process (`python -m mtd_trainer.serving`), as TGI runs in its
own pod: the control plane never imports torch. It lives exactly as long as the command
that started it: SIGINT, SIGTERM and SIGHUP stop both, and on Linux the kernel sends it
SIGTERM should its parent die without a word (prctl PR_SET_PDEATHSIG). A port already in
use is reported before the model loads and before anything claims to be serving.
"""

from __future__ import annotations

import ctypes
import errno
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.catalogue import Catalogue
from .artifacts import damaged_artifact

HEALTH_TIMEOUT_S = 600
STOP_TIMEOUT_S = 30
#: The admin token of a deployment's server, beside its serving manifest (mode 0600).
ADMIN_TOKEN_FILE = "admin-token"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ServingError(RuntimeError):
    pass


def find_manifest(workspace: Path, name: str | None) -> Path:
    """The serving.json of the named deployment, or of the only one in the workspace."""
    if name is not None:
        path = workspace / name / "serving.json"
        if not path.exists():
            raise ServingError(f"{path}: no serving manifest; run `mtd run` first")
        return path
    found = sorted(workspace.glob("*/serving.json"))
    if not found:
        raise ServingError(
            f"{workspace}: no deployment with a serving manifest; run `mtd run` first"
        )
    if len(found) > 1:
        names = ", ".join(p.parent.name for p in found)
        raise ServingError(f"{workspace} holds several deployments ({names}); pick one with --name")
    return found[0]


def server_command(
    manifest_path: Path, host: str, port: int, python: str = sys.executable
) -> list[str]:
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    catalogue = manifest_path.parent / "catalogue.json"
    if not catalogue.exists():  # workspaces from before `mtd run` wrote it
        text = Catalogue.model_validate(manifest["catalogue"]).to_json()
        catalogue.write_text(text, encoding="utf-8")
    command = [python, "-m", "mtd_trainer.serving", "--base-model", manifest["baseModel"]]
    for name, path in manifest["adapters"].items():
        command += ["--adapter", f"{name}={path}"]
    if manifest.get("modelId"):  # method full: the fine-tuned model answers to its group
        command += ["--model-id", manifest["modelId"]]
    token = manifest_path.parent / ADMIN_TOKEN_FILE
    return [
        *command,
        "--catalogue",
        str(catalogue),
        "--admin-token-file",
        str(token),
        "--host",
        host,
        "--port",
        str(port),
    ]


def check_port_free(host: str, port: int) -> None:
    """Fail now, before a slow model load, if `host:port` cannot be bound (as uvicorn binds
    it: SO_REUSEADDR, so a socket in TIME_WAIT does not count as taken)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ServingError(
            f"cannot serve on {host}:{port}: {reason}; stop what uses it or pick --port"
        ) from None


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled like Ctrl-C: the server is stopped, then we exit."""


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into `Stopped` for the duration (SIGINT already raises)."""

    def stop(signum: int, _frame: object) -> None:
        raise Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM (uvicorn finishes in-flight requests), then SIGKILL if it will not go."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = HEALTH_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServingError(
                f"the server exited with code {process.returncode} before it was ready"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise ServingError(f"{url}/health did not answer within {timeout:.0f}s")


def check_adapters(manifest_path: Path) -> None:
    """Every adapter the manifest serves is whole (see artifacts.py), before a slow load."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for name, path in manifest["adapters"].items():
        problem = damaged_artifact(Path(path))
        if problem is not None:
            raise ServingError(f"adapter {name} is damaged: {problem}; `mtd run` rebuilds it")


def start_server(manifest_path: Path, host: str, port: int) -> tuple[subprocess.Popen, str]:
    check_adapters(manifest_path)
    check_port_free(host, port)
    process = subprocess.Popen(
        server_command(manifest_path, host, port), preexec_fn=_die_with_parent
    )
    url = f"http://{host}:{port}"
    try:
        wait_healthy(url, process)
    except BaseException:  # not ready, or interrupted while loading: never leave it behind
        stop_server(process)
        raise
    return process, url


def running_server(url: str) -> bool:
    """A server of ours already answers at `url` (it can take a new adapter set)."""
    try:
        with urllib.request.urlopen(f"{url}/info", timeout=2) as response:
            info = json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return False
    return "/adapters" in info.get("extensions", [])


def push_adapters(url: str, manifest_path: Path) -> list[str]:
    """Move a running server to the manifest's adapters without a restart."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("modelId"):
        raise ServingError(
            f"{url} serves another model; a fully fine-tuned model (training.method full) "
            "replaces the base model, which needs a new server: stop it and run again"
        )
    body = json.dumps({"adapters": manifest["adapters"], "catalogue": manifest["catalogue"]})
    try:
        token = (manifest_path.parent / ADMIN_TOKEN_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        raise ServingError(
            f"{url} is serving, but not this workspace's server (no {ADMIN_TOKEN_FILE} "
            f"beside {manifest_path}); stop it or pick another --port"
        ) from None
    request = urllib.request.Request(
        f"{url}/adapters",
        data=body.encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HEALTH_TIMEOUT_S) as response:
            return json.loads(response.read())["adapters"]
    except urllib.error.HTTPError as exc:
        raise ServingError(f"{url} refused the new adapters: {exc.read().decode()[:500]}") from None
