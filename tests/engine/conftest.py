"""A cluster's serving side, run here: the workspace volume as the trainer pods leave it,
the objects `mtd manifests` renders, and the real vLLM started from them."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtd_operator.cli import main
from mtd_trainer.atomic import make_readable
from tests.support.engine import engine_venv
from tests.support.kubelet import can_run_pods
from tests.support.models import build_model, random_lora
from tests.support.tiny_tasks import task, tiny_resource, write_task_data

TRAINER_UID = 65532  # the trainer Jobs' runAsUser (kube/builders.py)
CLAIM = "multitask-workspace"  # the chart's default workspace claim
MOUNT = "/workspace"
# What the node adds: vLLM's CPU build sizes its KV cache from this (GiB); a GPU node
# sizes it from the GPU's memory instead, so the pod does not set it.
NODE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}

pytestmark = pytest.mark.skipif(bool(can_run_pods()), reason=can_run_pods() or "")


@dataclass
class Cluster:
    """A workspace folder (the claim) and the objects rendered for one resource."""

    workspace: Path
    objects: list[dict[str, Any]]

    def one(self, kind: str, suffix: str) -> dict[str, Any]:
        return next(
            o for o in self.objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)
        )

    def host(self, pod_path: str) -> Path:
        """Where a path under the workspace mount lies on this machine."""
        return self.workspace / Path(pod_path).relative_to(MOUNT)

    def config_maps(self) -> dict[str, dict[str, str]]:
        return {o["metadata"]["name"]: o["data"] for o in self.objects if o["kind"] == "ConfigMap"}

    def secrets(self) -> dict[str, dict[str, str]]:
        return {
            o["metadata"]["name"]: o["stringData"] for o in self.objects if o["kind"] == "Secret"
        }


def as_trainer_wrote_it(folder: Path) -> None:
    """Hand a folder to the trainer pods' uid, keeping the modes our code gave its files."""
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, TRAINER_UID, TRAINER_UID, follow_symlinks=False)


def write_adapter(base: Path, target: Path, seed: int) -> Path:
    """A LoRA adapter saved by the trainer's own writer (`save_artifact`), random B."""
    from transformers import AutoTokenizer

    from mtd_trainer.modeling import save_artifact

    save_artifact(random_lora(base, seed, scale=0.5), AutoTokenizer.from_pretrained(base), target)
    as_trainer_wrote_it(target)
    return target


def write_full_model(base: Path, target: Path) -> Path:
    """A fully fine-tuned model as the trainer saves one (`save_artifact`, method full)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mtd_trainer.modeling import save_artifact

    model = AutoModelForCausalLM.from_pretrained(base)
    save_artifact(model, AutoTokenizer.from_pretrained(base), target)
    as_trainer_wrote_it(target)
    return target


def render(
    workspace: Path, doc: dict[str, Any], capsys: pytest.CaptureFixture[str] | None = None
) -> Cluster:
    """`mtd manifests` as the chart's operator renders: with its engine-key secret (a file,
    as the chart mounts it) and its namespace. Without `capsys` (a module-scoped fixture
    has none) the output is captured here."""
    spec_file = workspace / "mtd.yaml"
    spec_file.write_text(yaml.safe_dump(doc))
    key_file = workspace / "operator-engine-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(36))
        key_file.chmod(0o600)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTD_ENGINE_KEY_FILE", str(key_file))
        patch.setenv("MTD_OPERATOR_NAMESPACE", "multitask-system")
        out = io.StringIO()
        with contextlib.redirect_stdout(out) if capsys is None else contextlib.nullcontext():
            assert main(["manifests", str(spec_file), "--namespace", "default"]) == 0
    text = out.getvalue() if capsys is None else capsys.readouterr().out
    return Cluster(workspace, list(yaml.safe_load_all(text)))


@pytest.fixture(scope="module")
def venv() -> Path:
    return engine_venv()


@pytest.fixture(scope="module")
def workspace() -> Iterator[Path]:
    """The claim's folder, under /tmp so the pods' uid can reach it (pytest's own tmp
    folders are mode 0700), with the base model and the tasks' data."""
    folder = Path(tempfile.mkdtemp(prefix="mtd-claim-", dir="/tmp"))
    folder.chmod(0o755)
    # head_dim 32: vLLM's CPU attention has no kernel for the tiny default's 8.
    base = build_model(folder / "models" / "tiny", hidden=64, heads=2)
    make_readable(base)  # as our conversion leaves a base model (save_pretrained: 0600)
    write_task_data(folder)
    as_trainer_wrote_it(folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def lora_resource() -> dict[str, Any]:
    """Two tasks in two groups (two adapters), served by vLLM at the tiny model's context."""
    doc = tiny_resource(
        [
            task("sentiment", "classification", labels=["pos", "neg"]),
            task("sounds", "generation", metric="exactMatch"),
        ],
        base_uri="models/tiny",
    )
    doc["spec"]["serving"] = {"engine": "vllm", "maxModelLength": 512}
    return doc
