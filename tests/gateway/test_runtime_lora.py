"""Loading adapters into a running vLLM (the stand-in), as the operator does per pod."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from mtd_operator.engines.runtime_lora import LoadError, load_into, ready_pod_urls
from tests.support.net import serve_app

from .vllm_standin import VllmStandIn


def test_load_into_loads_only_what_is_missing(vllm) -> None:
    standin, url = vllm
    wanted = {"sentiment": "/workspace/a/sentiment", "topic-1a2b3c4d": "/workspace/b/topic"}
    assert load_into(url, wanted) == ["topic-1a2b3c4d"]
    assert standin.loras["topic-1a2b3c4d"] == "/workspace/b/topic"
    assert load_into(url, wanted) == []  # idempotent: a second pass loads nothing


def test_load_into_reports_a_server_without_runtime_updating() -> None:
    standin = VllmStandIn("base", {}, runtime_lora_updating=False)
    with (
        serve_app(standin.app()) as url,
        pytest.raises(LoadError, match="load topic: HTTP 404"),
    ):
        load_into(url, {"topic": "/workspace/b/topic"})
    with pytest.raises(LoadError, match=r"127\.0\.0\.1:9"):
        load_into("http://127.0.0.1:9", {"topic": "/p"})


def pod(name, phase="Running", ip="10.0.0.1", ready="True", port=8080):
    return NS(
        metadata=NS(name=name),
        status=NS(phase=phase, pod_ip=ip, conditions=[NS(type="Ready", status=ready)]),
        spec=NS(containers=[NS(ports=[NS(name="http", container_port=port)])]),
    )


def test_only_running_ready_pods_with_an_ip_are_asked() -> None:
    pods = [
        pod("a"),
        pod("b", ready="False"),
        pod("c", phase="Pending"),
        pod("d", ip=None),
        pod("e", ip="10.0.0.5", port=9000),
    ]
    assert ready_pod_urls(pods) == {"a": "http://10.0.0.1:8080", "e": "http://10.0.0.5:9000"}
