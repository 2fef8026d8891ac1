"""The tiny model the real vLLM can run, one engine shared by a module's runs, and a check
that no engine a test started outlives it.

vLLM's CPU attention needs head_dim >= 32 (hidden 64 over 2 heads), and the tiny model's
512 positions cap serving.maxModelLength (the specs here set it). A vLLM start takes half
a minute on a small machine, so a module whose tests run several pipelines passes one
`LocalEngine` to every `LocalRun(engine=...)`: adapters load into it under names hashed
from their folders, so runs in different workspaces never collide.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtd_operator.local.engine import LocalEngine
from tests.support.models import build_model
from tests.support.processes import engine_processes, kill_all

MAX_MODEL_LENGTH = 512  # the tiny model's max_position_embeddings
#: The shared engine's --max-lora-rank covers a composed (cat) adapter TGI-padded to 16.
SHARED_LORA_RANK = 16
STOPPED_WITHIN_S = 60.0


def build_tiny(folder: Path) -> Path:
    """The tiny Llama in a shape vLLM's CPU build runs (head_dim 32)."""
    return build_model(folder, hidden=64, heads=2)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny"))


def assert_no_engine_under(folder: Path, what: str) -> None:
    """No vLLM process of an engine whose state lies under `folder` is alive (a grace for
    one being stopped right now); any found is killed, then reported."""
    deadline = time.monotonic() + STOPPED_WITHIN_S
    while (left := engine_processes(folder)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        kill_all(left)
        raise AssertionError(f"{what} left vLLM processes running: {left}")


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[LocalEngine]:
    """One vLLM on the module's tiny model, started now (at the rank every run here
    needs) and stopped after the module's last test. A run scoring a fully fine-tuned
    model restarts it on that model; the next run on the base model restarts it back."""
    state = tmp_path_factory.mktemp("engine")
    engine = LocalEngine(state, lora_rank=SHARED_LORA_RANK, max_model_len=MAX_MODEL_LENGTH)
    try:
        engine.ensure(str(model))
        yield engine
    finally:
        engine.stop()
        assert_no_engine_under(state, "the module's shared engine")


@pytest.fixture(autouse=True)
def no_stray_engine(tmp_path: Path) -> Iterator[None]:
    """Every engine a test started in its own folders (a run's own engine keeps its state
    in the run's workspace) is stopped by the time the test ends."""
    yield
    assert_no_engine_under(tmp_path, "the test")
