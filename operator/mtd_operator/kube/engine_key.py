"""Each resource's engine API key, derived, never stored where the operator must read it.

vLLM with runtime LoRA updating serves `POST /v1/load_lora_adapter` to whoever reaches it;
its `--api-key` (here `VLLM_API_KEY`) closes every route under /v1, /v2, /inference and
/cohere (vllm/entrypoints/serve/middleware/authenticate.py, GUARDED_PREFIX). The key is
an HMAC of the resource's identity under the operator's own secret (a file the chart
mounts): the operator computes it on every pass, writes it once into a Secret the
serving and gateway pods read, and needs no permission to read Secrets back.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from ..config import OperatorConfig

SECRET_KEY = "api-key"  # the key within the Secret


def read_master(config: OperatorConfig) -> bytes | None:
    """The operator's secret, or None when none is configured (development only)."""
    if not config.engine_key_file:
        return None
    data = Path(config.engine_key_file).read_bytes().strip()
    if len(data) < 32:
        raise ValueError(
            f"MTD_ENGINE_KEY_FILE: {config.engine_key_file} holds {len(data)} bytes; "
            "at least 32 are needed"
        )
    return data


def engine_api_key(master: bytes, namespace: str, name: str, uid: str) -> str:
    """The key of one resource: stable across operator restarts, another for a resource
    deleted and created again under the same name (its uid differs)."""
    message = f"{namespace}/{name}/{uid}".encode()
    return hmac.new(master, message, hashlib.sha256).hexdigest()
