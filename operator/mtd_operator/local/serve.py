"""Serve a workspace's current revision: the real vLLM (local/engine.py) with the task
gateway in front, as on a cluster (one serving path).

The gateway runs in the command's own process (a thread), the engine as its own process
group: both live exactly as long as the command. SIGINT, SIGTERM and SIGHUP stop both. A
port already in use is reported before the model loads and before anything claims to be
serving.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtd_contract.digests import adapter_problem

from .engine import LocalEngine, ServingError, check_port_free

__all__ = [
    "ServingError",
    "find_manifest",
    "local_engine",
    "serve_forever",
    "serve_workspace",
    "start_serving",
    "stop_on_signals",
]


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


def check_adapters(manifest: dict[str, Any]) -> None:
    """Every folder the manifest serves (a fully fine-tuned model, the adapters) hashes to
    the digest its step recorded and holds finite weights, before a slow load."""
    digests = manifest.get("digests") or {}
    served = dict(manifest["adapters"])
    if manifest.get("modelId"):
        served[manifest["baseModel"]] = manifest["baseModel"]
    for name, path in served.items():
        problem = adapter_problem(path, digests.get(name))
        if problem is not None:
            raise ServingError(f"adapter {name} refused: {problem}; `mtd run` rebuilds it")


def read_manifest(manifest_path: Path) -> dict[str, Any]:
    """serving.json with its workspace folders (relative to its own folder, so a moved
    workspace serves itself) resolved to absolute paths."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ServingError(f"{manifest_path}: {exc}; run `mtd run` again") from None
    if manifest.get("engine") != "vllm":
        raise ServingError(
            f"{manifest_path} was written for the earlier local server, not vLLM: run "
            "`mtd run` again (it reuses every trained step) to rewrite it"
        )
    root = manifest_path.resolve().parent

    def resolved(path: str) -> str:
        return path if Path(path).is_absolute() else str(root / path)

    manifest["adapters"] = {n: resolved(p) for n, p in manifest.get("adapters", {}).items()}
    if manifest.get("modelId"):  # a fully fine-tuned model of the workspace
        model = manifest["baseModel"]
        manifest["baseModel"] = resolved(model)
        digests = manifest.get("digests") or {}
        if model in digests:
            digests[manifest["baseModel"]] = digests.pop(model)
    return manifest


def start_serving(
    manifest_path: Path, engine: LocalEngine, host: str, port: int
) -> tuple[Any, str]:
    """The manifest's model and adapters in `engine` (started, or already running), and the
    task gateway on `host:port` in front of it; returns the gateway server and its URL."""
    from ..gateway.app import build_gateway, serve_in_thread

    manifest = read_manifest(manifest_path)
    check_adapters(manifest)
    check_port_free(host, port)  # before the slow model load, and before "Serving at"
    engine.max_model_len = manifest.get("maxModelLength", engine.max_model_len)
    engine.lora_rank = manifest.get("loraRank", engine.lora_rank)
    engine.ensure(manifest["baseModel"])
    engine.load(manifest["adapters"], manifest.get("digests"))
    gateway = build_gateway(
        str(manifest_path.parent / "catalogue.json"),
        engine.url,
        engine="vllm",
        base_model=manifest["baseModel"],
        api_key=engine.api_key(),
    )
    try:
        server = serve_in_thread(gateway, host, port)
    except OSError as exc:
        raise ServingError(f"{exc} (is port {port} taken?)") from None
    return server, f"http://{host}:{port}"


def local_engine(root: Path, host: str, port: int, engine_port: int | None) -> LocalEngine:
    """The engine behind a gateway on `port`: on `engine_port`, by default the next one."""
    return LocalEngine(root, host=host, port=engine_port or port + 1)


def serve_forever(engine: LocalEngine, url: str) -> int:
    """Wait on the engine; Ctrl-C, SIGTERM or SIGHUP stop it with us (stop_on_signals)."""
    sys.stdout.write(
        f"\nServing at {url} (the task gateway; Ctrl-C stops). Try:\n"
        f"  mtd predict --url {url} --task TASK 'some text'\n"
        f"  curl {url}/tasks\n"
        f"The vLLM engine behind it: {engine.url} (API key in {engine.key_file})\n"
    )
    sys.stdout.flush()
    try:
        if engine.process is None:  # an earlier command's engine: serve until stopped
            threading.Event().wait()
        assert engine.process is not None
        code = engine.process.wait()
        print(f"the engine exited with code {code}; log: {engine.log_file}", file=sys.stderr)
        return code or 1
    except KeyboardInterrupt:
        return 0
    finally:
        engine.stop()


def serve_workspace(
    workspace: Path, name: str | None, host: str, port: int, engine_port: int | None
) -> int:
    """`mtd serve`: the deployment's serving.json served until stopped; the exit code."""
    manifest = find_manifest(workspace, name)
    engine = local_engine(manifest.parent, host, port, engine_port)
    with engine, stop_on_signals():
        _server, url = start_serving(manifest, engine, host, port)
        return serve_forever(engine, url)
