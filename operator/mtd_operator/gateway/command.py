"""`mtd gateway`: the task gateway as its own process, what the gateway Deployment's pod
runs (operator image) in front of a vLLM or TGI server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mtd_contract.exits import EXIT_INVALID

#: The engine's API key, as the gateway Deployment's env gives it (kube/builders.py sets it
#: from the resource's Secret).
GATEWAY_KEY_ENV = "MTD_ENGINE_API_KEY"


def run_gateway(
    catalogue: str,
    upstream: str,
    engine: str | None,
    base_model: str | None,
    host: str,
    port: int,
) -> int:
    """Serve until stopped; EXIT_INVALID at once when there is no catalogue file. The
    engine's API key comes from the environment (the resource's Secret on a cluster)."""
    from .app import build_gateway, serve

    if not Path(catalogue).is_file():
        print(f"error: --catalogue {catalogue}: no such file", file=sys.stderr)
        return EXIT_INVALID
    gateway = build_gateway(
        catalogue, upstream, engine, base_model, api_key=os.environ.get(GATEWAY_KEY_ENV) or None
    )
    serve(gateway, host, port)
    return 0
