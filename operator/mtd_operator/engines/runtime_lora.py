"""Load LoRA adapters into running vLLM pods, so a new adapter set needs no spare GPU.

vLLM started with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` serves
`POST /v1/load_lora_adapter {"lora_name", "lora_path"}` and lists loaded adapters in
`GET /v1/models` (entries with a `parent`); docs.vllm.ai, "LoRA Adapters", "Dynamically
serving LoRA Adapters". Each pod holds its own set, so every ready pod is asked. Loading
is idempotent here: a name already listed is not loaded again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

TIMEOUT_S = 30.0


class LoadError(RuntimeError):
    """A pod did not list or did not take an adapter; the message says which and why."""


def loaded_adapters(http: httpx.Client) -> set[str]:
    response = http.get("/v1/models")
    if response.status_code != 200:
        raise LoadError(f"GET /v1/models: HTTP {response.status_code}")
    data = response.json().get("data", [])
    return {entry["id"] for entry in data if isinstance(entry, dict) and entry.get("parent")}


def load_into(url: str, adapters: Mapping[str, str], api_key: str | None = None) -> list[str]:
    """Make the pod at `url` serve every adapter (name → folder); returns those loaded now.
    `api_key`: the engine's key (kube/engine_key.py), sent as a bearer token."""
    loaded_now: list[str] = []
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(base_url=url, timeout=TIMEOUT_S, headers=headers) as http:
            present = loaded_adapters(http)
            for name, path in adapters.items():
                if name in present:
                    continue
                response = http.post(
                    "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path}
                )
                if response.status_code != 200:
                    raise LoadError(
                        f"load {name}: HTTP {response.status_code}: {response.text[:300]}"
                    )
                loaded_now.append(name)
    except httpx.HTTPError as exc:
        raise LoadError(f"{url}: {exc}") from None
    return loaded_now


def ready_pod_urls(pods: list[Any]) -> dict[str, str]:
    """Pod name → `http://IP:PORT` of each running, ready pod (the container port `http`)."""
    urls: dict[str, str] = {}
    for pod in pods:
        status = pod.status
        if status is None or status.phase != "Running" or not status.pod_ip:
            continue
        ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
        if not ready:
            continue
        port = next(
            (
                p.container_port
                for c in pod.spec.containers
                for p in c.ports or []
                if p.name == "http"
            ),
            None,
        )
        if port is not None:
            urls[pod.metadata.name] = f"http://{status.pod_ip}:{port}"
    return urls
