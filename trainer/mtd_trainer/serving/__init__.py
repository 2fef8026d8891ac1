"""A development server that speaks TGI's HTTP API for one base model and its LoRA adapters.

Not a replacement for TGI on GPUs: it exists so that the whole pipeline, and every
client, can be exercised on a laptop or in CI, where TGI cannot run. See docs/serving.md.
"""

from __future__ import annotations

from .app import build_app, serve
from .engine import Engine, EngineError

__all__ = ["Engine", "EngineError", "build_app", "serve"]
