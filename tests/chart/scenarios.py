"""Value sets the chart is rendered with: the defaults and the non-default modes."""

from __future__ import annotations

from typing import Any

RELEASE = "mto"
RELEASE_NAMESPACE = "multitask-system"

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # Route through the Gateway API Inference Extension (InferencePool + llm-d's rewrite).
    "inference-pool": {"serving": {"router": "inferencePool", "endpointPicker": "epp:9002"}},
    # Watch two namespaces, custom images and workload settings, CRD managed elsewhere.
    "namespaced": {
        "watchNamespaces": ["team-a", "team-b"],
        "crds": {"enabled": False},
        "image": {"repository": "registry.example.com/ml/mto-operator", "tag": "1.2.3"},
        "imagePullSecrets": ["registry-creds"],
        "trainer": {
            "image": {"repository": "registry.example.com/ml/mto-trainer", "tag": "1.2.3-cu128"},
            "gpus": 2,
            "backoffLimit": 5,
            "serviceAccount": {"name": "mtd-trainer"},
        },
        "serving": {
            "tgiImage": {"repository": "registry.example.com/ml/tgi", "tag": "3.3.6-patched"},
            "vllmImage": {"repository": "registry.example.com/ml/vllm", "tag": "v0.11.0"},
            "gpus": 4,
        },
        "workloads": {
            "gpuResource": "amd.com/gpu",
            "nodeSelector": {"node.kubernetes.io/instance-type": "g5.xlarge"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "imagePullSecrets": ["registry-creds", "mirror-creds"],
        },
        "workspace": {
            "claim": "ml-workspace",
            "mountPath": "/mnt/workspace",
        },
        "metrics": {"port": 9090, "service": {"port": 9191, "annotations": {"a": "b"}}},
        "liveness": {"port": 9081},
        "logLevel": "debug",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "control", "operator": "Exists"}],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {
                            "matchExpressions": [
                                {"key": "pool", "operator": "In", "values": ["system"]}
                            ]
                        },
                    }
                ]
            }
        },
        "podAnnotations": {"prometheus.io/scrape": "true"},
    },
    # All namespaces, the trainer account in two of them, CRD not kept on uninstall.
    "cluster-wide-trainer-namespaces": {
        "trainer": {"namespaces": ["ml", "ml-staging"]},
        "crds": {"keep": False},
        "fullnameOverride": "mtd",
    },
    # Everything an administrator provides instead: accounts, RBAC, no metrics Service.
    "bring-your-own": {
        "serviceAccount": {"create": False, "name": "preapproved"},
        "rbac": {"create": False},
        "trainer": {"serviceAccount": {"create": False}},
        "metrics": {"service": {"enabled": False}},
    },
}
