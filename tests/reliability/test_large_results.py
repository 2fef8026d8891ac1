"""A result larger than the API server's 1 MiB per ConfigMap reaches the operator whole.

The pod side's `write_result` publishes through the API emulator, which refuses a
ConfigMap over 1 MiB as the API server does; the operator's reader gets it back."""

from __future__ import annotations

from kubernetes import client, config
from kubernetes.config import kube_config

from k8s_emulator.fixtures import emulator  # noqa: F401  (fixture)
from mtd_operator.labels import NAMESPACE_ENV
from mtd_operator.pod.publish import write_result
from mtd_operator.result_parts import read_result
from tests.pod.test_result_parts import chrf_result


def config_maps(kubeconfig: str) -> dict[str, dict]:
    """As the controller lists them (kube/controller.py `_children`)."""
    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    return {
        cm.metadata.name: {"data": cm.data or {}, "binaryData": cm.binary_data or {}}
        for cm in api.list_namespaced_config_map("default").items
    }


def test_a_3_mb_evaluation_result_is_published_and_read_back(emulator, monkeypatch):  # noqa: F811
    # What KUBECONFIG gives a process that starts with it (read at import).
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", emulator.kubeconfig_path)
    monkeypatch.setenv(NAMESPACE_ENV, "default")
    payload = chrf_result(50_000)
    write_result("support-eval-result", payload)
    maps = config_maps(emulator.kubeconfig_path)
    assert len(maps) > 1
    assert read_result("support-eval-result", maps) == payload
    # A retried pod writes it again (create, 409, replace) and the reader still agrees.
    write_result("support-eval-result", payload)
    assert read_result("support-eval-result", config_maps(emulator.kubeconfig_path)) == payload
