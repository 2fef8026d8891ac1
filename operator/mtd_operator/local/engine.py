"""The real vLLM on this machine: what `mtd run` evaluates through and `mtd serve` serves.

The engine is vLLM's own server (`vllm serve`, the CPU build at the release the chart
deploys; `tools/engine-venv.sh` builds its virtualenv), started as its own process with
LoRA enabled and runtime adapter loading on, exactly as the serving pods start it
(engines/vllm.py). Adapters are loaded by name at run time (`POST /v1/load_lora_adapter`),
so one engine scores every evaluation step and then serves, without restarts. A fully
fine-tuned model is an engine of its own (it replaces the base model).

Found at `$MTD_ENGINE_VENV/bin/vllm` (what `make` sets), else `vllm` on the PATH. The
engine's API key (VLLM_API_KEY: it guards every /v1 route) is a random token written 0600
beside the workspace's status; the gateway and the evaluation read it from there. The
engine lives exactly as long as the command that started it (its own process group,
stopped as a whole; SIGTERM from the kernel should that command die without a word).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mtd_contract.digests import adapter_problem

from ..engines.base import adapter_name
from ..engines.runtime_lora import LoadError, load_into
from ..engines.vllm import max_lora_rank

__all__ = ["EngineError", "LocalEngine", "ServingError", "adapter_name", "find_vllm"]

ENGINE_VENV_ENV = "MTD_ENGINE_VENV"
#: KV cache for the CPU build, in GiB (vLLM refuses to start on a CPU without it sized).
KVCACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
DEFAULT_KVCACHE_GIB = "1"
READY_TIMEOUT_S = 600.0
STOP_GRACE_S = 20.0
KEY_FILE = "engine-key"
LOG_TAIL_LINES = 15
#: vLLM's CPU build keeps one core for its scheduler by default (vllm/utils/
#: ompmultiprocessing.py): on 2 cores that halves the compute. Measured on the quickstart
#: (SmolLM2-135M, a rank-16 adapter, 16 classification requests at once): 12.9 s with the
#: reserved core, 8.1 s without, 5.0 s without and with --enforce-eager (no graph capture
#: or compilation per new batch shape). A user's own setting wins.
CPU_ENV_DEFAULTS = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
#: LoRA slots: adapters used in one batch (--max-loras) and kept in memory (CPU cache).
MAX_LORAS = 4
MAX_CPU_LORAS = 16
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ServingError(RuntimeError):
    """Serving cannot start or go on; the message says why and what to do."""


class EngineError(ServingError):
    """The engine cannot be found, started, reached or given an adapter; says which."""


def find_vllm(venv: str | None = None) -> str:
    """The `vllm` command: in the engine virtualenv (`MTD_ENGINE_VENV`), else on PATH."""
    venv = venv or os.environ.get(ENGINE_VENV_ENV)
    if venv:
        command = Path(venv) / "bin" / "vllm"
        if os.access(command, os.X_OK):
            return str(command)
        raise EngineError(
            f"{ENGINE_VENV_ENV}={venv}: no {command}; build it with "
            f"`tools/engine-venv.sh {venv}` (or `make engine`)"
        )
    found = shutil.which("vllm")
    if found:
        return found
    raise EngineError(
        "no vLLM to evaluate and serve with: build the engine virtualenv with `make engine` "
        f"(or `tools/engine-venv.sh DIR`) and set {ENGINE_VENV_ENV}=DIR, or put `vllm` on PATH"
    )


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Fail now, before a slow model load, if `host:port` cannot be bound (as a server
    binds it: SO_REUSEADDR, so a socket in TIME_WAIT does not count as taken)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise EngineError(
            f"cannot serve on {host}:{port}: {reason}; stop what uses it or pick another port"
        ) from None


def stop_group(process: subprocess.Popen, grace: float) -> None:
    """Stop a child started in its own session and everything it started: SIGTERM to its
    process group, then SIGKILL to whatever of the group is left after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _own_group_dying_with_parent() -> None:
    """In the child, before exec: its own process group (stopped as a whole), and SIGTERM
    when the parent dies (Linux only)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def is_full_model(path: str) -> bool:
    """A fully fine-tuned model folder (it replaces the base) rather than a LoRA adapter."""
    return not (Path(path) / "adapter_config.json").is_file()


@dataclass
class LocalEngine:
    """One vLLM process for one model (base or fully fine-tuned), started on demand."""

    state_dir: Path  # where the key file and the log go (the deployment's folder)
    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port, chosen at start
    lora_rank: int = 16
    max_model_len: int = 4096
    venv: str | None = None
    process: subprocess.Popen | None = field(default=None, init=False)
    model: str | None = field(default=None, init=False)
    loaded: set[str] = field(default_factory=set, init=False)
    #: An engine an earlier `mtd run`/`mtd serve` of this workspace started and still runs
    #: at `port`: used (adapters load into it at run time), never stopped by us.
    attached: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        assert self.port is not None, "the engine has not started"
        return f"http://{self.host}:{self.port}"

    @property
    def key_file(self) -> Path:
        return self.state_dir / KEY_FILE

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / "engine.log"

    def api_key(self) -> str:
        return self.key_file.read_text(encoding="utf-8").strip()

    def command(self, model: str) -> list[str]:
        assert self.port is not None
        return [
            find_vllm(self.venv),
            "serve",
            model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
            "--enable-lora",
            "--max-lora-rank",
            str(max_lora_rank(self.lora_rank)),
            "--max-loras",
            str(MAX_LORAS),
            "--max-cpu-loras",
            str(MAX_CPU_LORAS),
            "--enforce-eager",  # see CPU_ENV_DEFAULTS: faster on the CPU build
        ]

    def env(self) -> dict[str, str]:
        return {
            **CPU_ENV_DEFAULTS,
            **os.environ,
            "VLLM_API_KEY": self.api_key(),
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
            KVCACHE_ENV: os.environ.get(KVCACHE_ENV, DEFAULT_KVCACHE_GIB),
            # The engine's own caches beside its log, never in someone's home.
            "VLLM_CACHE_ROOT": str(self.state_dir / ".cache" / "vllm"),
            "PYTHONUNBUFFERED": "1",
        }

    def ensure(self, model: str) -> str:
        """An engine serving `model`, started (or restarted from another model) if need be;
        returns its URL."""
        if self.model == model and (
            self.attached or (self.process is not None and self.process.poll() is None)
        ):
            return self.url
        self.stop()
        if not self.attach(model):
            self.start(model)
        return self.url

    def attach(self, model: str) -> bool:
        """Use an engine of this workspace already running `model` at `port` (True), so a
        second `mtd run` evaluates and serves through the first one's engine."""
        if self.port is None or not self.key_file.exists():
            return False
        try:
            response = httpx.get(
                f"{self.url}/v1/models",
                headers={"Authorization": f"Bearer {self.api_key()}"},
                timeout=5,
            )
        except httpx.HTTPError:
            return False  # nothing there: start one
        if response.status_code in (401, 403):
            raise EngineError(
                f"{self.url} is serving, but not this workspace's engine (it refused the key "
                f"in {self.key_file}); stop it or pick another port"
            )
        try:
            data = response.json().get("data", []) if response.status_code == 200 else []
        except ValueError:
            data = []
        ids = {entry.get("id") for entry in data if isinstance(entry, dict)}
        if model not in ids:
            raise EngineError(
                f"{self.url} is this workspace's engine but serves another model "
                f"({', '.join(sorted(map(str, ids))) or 'none'}), not {model}: stop it (the "
                "`mtd run` or `mtd serve` that started it) and run again"
            )
        self.model, self.attached = model, True
        self.loaded = {entry.get("id") for entry in data if isinstance(entry, dict)} - {model}
        return True

    def start(self, model: str) -> None:
        command = find_vllm(self.venv)  # before anything else: say what is missing first
        if self.port is None:
            self.port = free_port(self.host)
        check_port_free(self.host, self.port)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.key_file.exists():
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [command, *self.command(model)[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(),
                preexec_fn=_own_group_dying_with_parent,
            )
        self.model, self.loaded = model, set()
        try:
            self.wait_ready()
        except BaseException:  # not ready, or interrupted while loading: leave nothing
            self.stop()
            raise

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineError(
                    f"vLLM exited with code {self.process.returncode} before it was ready "
                    f"(log: {self.log_file}):\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise EngineError(f"vLLM at {self.url} was not ready within {timeout:.0f}s")

    def log_tail(self) -> str:
        try:
            with self.log_file.open(encoding="utf-8", errors="replace") as handle:
                return "".join(deque(handle, maxlen=LOG_TAIL_LINES))
        except OSError:
            return ""

    def load(self, adapters: dict[str, str], digests: Mapping[str, str] | None = None) -> None:
        """Make the engine serve every adapter (name → folder). Each is checked first
        against its digest in `digests` (by name) and for finite weights: an adapter that
        differs from what its step recorded is refused (EngineError), never served."""
        wanted = {name: path for name, path in adapters.items() if name not in self.loaded}
        if not wanted:
            return
        for name, path in wanted.items():
            problem = adapter_problem(path, (digests or {}).get(name))
            if problem is not None:
                raise EngineError(f"adapter {name} refused: {problem}; `mtd run` rebuilds it")
        try:
            load_into(self.url, wanted, self.api_key())
        except LoadError as exc:
            raise EngineError(f"vLLM at {self.url} did not take an adapter: {exc}") from None
        self.loaded |= set(wanted)

    def stop(self) -> None:
        """SIGTERM to the engine's process group, SIGKILL to whatever is left after a grace."""
        process, self.process, self.model = self.process, None, None
        self.attached = False
        if process is None:
            return
        # The whole group even when the server has gone: its engine-core child may not have.
        stop_group(process, STOP_GRACE_S)

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
