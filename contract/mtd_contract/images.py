"""What each image must be able to import: its Dockerfile's build check runs this.

`python -m mtd_contract.images trainer` imports every module that any command the operator
runs in the trainer image imports, including those imported only once a command runs
(the trainer's verbs, the Kubernetes client that publishes results); `operator` does the
same for `kopf run -m mtd_operator.kube.handlers`. A missing package fails the image
build instead of the first Job on a cluster.
"""

from __future__ import annotations

import importlib
import sys

# Per image: (the project's extra it installs, the modules its commands import).
IMAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "trainer": (
        "trainer",
        (
            # `mtd profile` and `mtd step`: the CLI, the pod entrypoint, publishing.
            "mtd_operator.cli",
            "mtd_operator.pod.jobs",
            "mtd_operator.pod.publish",
            "kubernetes.client",
            "kubernetes.config",
            # `python -m mtd_trainer VERB`: every verb's modules (imported lazily).
            "mtd_trainer.cli",
            "mtd_trainer.training",
            "mtd_trainer.evaluation",
            "mtd_trainer.engine_scoring",
            "mtd_contract.upstream",
            "httpx",
            "mtd_trainer.compose",
            "datasets",
            # `mtd step --processes N`: torchrun; `mtd profile --download-model`: the hub.
            "torch.distributed.run",
            "mtd_operator.pod.download",
            "huggingface_hub",
            # `mtd verify`: the serving pods' init container (finite-weights check).
            "mtd_operator.pod.verify",
            "numpy",
        ),
    ),
    "operator": (
        "operator",
        (
            "kopf",
            "mtd_operator.kube.handlers",
            "mtd_operator.kube.controller",
            "mtd_operator.kube.metrics",
            # The task gateway's Deployment runs this image too (`mtd gateway`).
            "mtd_operator.gateway.app",
            "uvicorn",
        ),
    ),
}


def missing_modules(image: str) -> list[str]:
    """`module: error` for every module of `image` that does not import."""
    failures = []
    for module in IMAGES[image][1]:
        try:
            importlib.import_module(module)
        except Exception as exc:  # an image check reports every failure, not the first
            failures.append(f"{module}: {type(exc).__name__}: {exc}")
    return failures


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in IMAGES:
        print(f"usage: python -m mtd_contract.images {{{','.join(IMAGES)}}}", file=sys.stderr)
        return 2
    failures = missing_modules(args[0])
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if not failures:
        print(f"{args[0]} image: {len(IMAGES[args[0]][1])} modules import")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
