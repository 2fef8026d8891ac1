"""Start the local TGI-compatible server for a workspace's current serving revision.

The server runs as its own process (`python -m mtd_trainer.serving`), as TGI runs in its
own pod: the control plane never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HEALTH_TIMEOUT_S = 600


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
    catalogue.write_text(json.dumps(manifest["catalogue"], indent=2), encoding="utf-8")
    command = [python, "-m", "mtd_trainer.serving", "--base-model", manifest["baseModel"]]
    for name, path in manifest["adapters"].items():
        command += ["--adapter", f"{name}={path}"]
    return [*command, "--catalogue", str(catalogue), "--host", host, "--port", str(port)]


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


def start_server(manifest_path: Path, host: str, port: int) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(server_command(manifest_path, host, port))
    url = f"http://{host}:{port}"
    try:
        wait_healthy(url, process)
    except BaseException:  # not ready, or interrupted while waiting: leave nothing behind
        process.terminate()
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
    body = json.dumps({"adapters": manifest["adapters"], "catalogue": manifest["catalogue"]})
    request = urllib.request.Request(
        f"{url}/adapters", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=HEALTH_TIMEOUT_S) as response:
            return json.loads(response.read())["adapters"]
    except urllib.error.HTTPError as exc:
        raise ServingError(f"{url} refused the new adapters: {exc.read().decode()[:500]}") from None
