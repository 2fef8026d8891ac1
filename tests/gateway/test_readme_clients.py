"""The README's "Calling it from clients" examples, run as written against a gateway
(the vLLM stand-in behind it): the openai client, LangChain's ChatOpenAI,
huggingface_hub's InferenceClient and curl (issue #30)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mtd_operator.gateway.app import build_gateway
from tests.support.net import serve_app

from .conftest import BASE_MODEL, LABELS

README = Path(__file__).resolve().parents[2] / "README.md"


def section_blocks() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Calling it from clients", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


@pytest.fixture
def gateway_url(tmp_path: Path, vllm):
    _, url = vllm
    catalogue = {
        "revision": "r",
        "tasks": [
            {"name": "movie-review-sentiment", "type": "classification",
             "instruction": "Classify the review.", "labels": LABELS, "metric": "accuracy",
             "adapter": "sentiment"},
            {"name": "bbc-headline", "type": "generation", "instruction": "Write a headline.",
             "metric": "rougeL", "adapter": "sounds"},
        ],
    }  # fmt: skip
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(catalogue))
    gateway = build_gateway(str(path), url, engine="vllm", base_model=BASE_MODEL)
    with serve_app(gateway.app) as served:
        yield served


def test_the_readme_has_the_four_examples():
    assert [kind for kind, _ in section_blocks()] == ["python", "python", "python", "sh"]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_each_python_example_runs_as_written(gateway_url, index):
    _, code = section_blocks()[index]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README example {index + 1}", "exec"), {"GATEWAY": gateway_url})
    printed = out.getvalue().splitlines()
    if index == 0:
        assert printed[0] == "['movie-review-sentiment', 'bbc-headline']"
        assert printed[1] in LABELS
        assert printed[2].startswith("sounds says")  # the streamed headline, from its adapter
    elif index == 1:  # LangChain: invoke, then stream
        assert printed[0] == "sounds says: Shares rose sharply on Monday."
        assert printed[1] == "sounds says: Rain is due all week."
    else:
        assert printed == [printed[0]] and printed[0] in LABELS


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
def test_the_curl_example_runs_as_written(gateway_url):
    _, script = section_blocks()[3]
    done = subprocess.run(
        ["bash", "-c", script], env={"GATEWAY": gateway_url, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    first, second = done.stdout.replace("}{", "}\n{").splitlines()
    assert json.loads(first)["choices"][0]["message"]["content"] in LABELS
    assert json.loads(second)["mtd"]["labels"] == LABELS
