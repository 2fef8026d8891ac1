"""A verdict describes the answers users get: what evaluation scored is what the gateway
serves, answer for answer, on the real vLLM.

The trainer's `evaluate` verb runs as a step runs it (its own process, the config `mtd
run` renders, with the engine section), scoring through vLLM; then every eval example is
asked again through the task gateway, one request at a time (other batches than the
evaluation's 16 concurrent requests), and the two answers are compared. Classification:
the share of identical labels; generation: ROUGE-L between the scored and the served
answer. Both must be at least 0.99 (issue #27's bar); the figures are printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mtd_contract.catalogue import Catalogue
from mtd_contract.config import EngineScoring, EvalConfig, TaskConfig
from mtd_operator.engines.base import adapter_name
from mtd_operator.gateway.app import build_gateway, serve_in_thread
from mtd_operator.local.engine import LocalEngine
from mtd_trainer.answers import answer_budget, first_line
from mtd_trainer.engine_scoring import answers_path
from tests.support.engine import engine_venv
from tests.support.models import build_adapter, build_model
from tests.support.net import free_port
from tests.support.tiny_tasks import sentiment_examples, sound_examples, write_jsonl

pytestmark = pytest.mark.slow

SENTIMENT = TaskConfig(
    name="sentiment",
    type="classification",
    instruction="Classify the sentiment.",
    labels=["pos", "neg", "neutral"],
    metric="accuracy",
)
SOUNDS = TaskConfig(name="sounds", type="generation", instruction="What sound?", metric="rougeL")


def rouge_l(a: str, b: str) -> float:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"]).score(a, b)["rougeL"].fmeasure if a or b else 1.0


def test_scored_answers_are_the_served_answers(tmp_path: Path) -> None:
    venv = engine_venv()
    base = build_model(tmp_path / "base", hidden=64, heads=2)
    adapters = {
        "sentiment": build_adapter(base, tmp_path / "sentiment-adapter", seed=1),
        "sounds": build_adapter(base, tmp_path / "sounds-adapter", seed=2),
    }
    names = {task: adapter_name(str(path)) for task, path in adapters.items()}
    data = {
        "sentiment": write_jsonl(tmp_path / "sentiment.jsonl", sentiment_examples(120, 7)),
        "sounds": write_jsonl(tmp_path / "sounds.jsonl", sound_examples(30, 8)),
    }
    tasks = [
        SENTIMENT.model_copy(update={"eval_path": str(data["sentiment"])}),
        SOUNDS.model_copy(update={"eval_path": str(data["sounds"])}),
    ]
    with LocalEngine(tmp_path / "state", max_model_len=512, lora_rank=4, venv=str(venv)) as engine:
        engine.ensure(str(base))
        engine.load({names[t]: str(p) for t, p in adapters.items()})
        config = EvalConfig(
            run_name="agreement",
            base_model=str(base),
            adapter=None,
            tasks=tasks,
            max_new_tokens=24,
            max_seq_length=256,
            output_path=str(tmp_path / "eval" / "results.json"),
            engine=EngineScoring(
                url=engine.url,
                base_model=str(base),
                adapters=names,
                api_key_file=str(engine.key_file),
            ),
        )
        config_path = tmp_path / "eval.json"
        config_path.write_text(config.model_dump_json(), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "mtd_trainer", "evaluate", "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results = json.loads(Path(config.output_path).read_text())
        scored = json.loads(answers_path(config.output_path).read_text())
        assert {row["scored_by"] for row in results["tasks"].values()} == {"engine"}

        catalogue = Catalogue.model_validate(
            {
                "tasks": [
                    {**task.model_dump(include={"name", "type", "instruction", "labels"}),
                     "metric": task.metric, "adapter": names[task.name]}
                    for task in tasks
                ]
            }
        )  # fmt: skip
        catalogue_path = tmp_path / "catalogue.json"
        catalogue_path.write_text(catalogue.to_json(), encoding="utf-8")
        gateway = build_gateway(
            str(catalogue_path), engine.url, "vllm", str(base), api_key=engine.api_key()
        )
        port = free_port()
        server = serve_in_thread(gateway, "127.0.0.1", port)
        try:
            served = ask_gateway(f"http://127.0.0.1:{port}", data, base)
        finally:
            server.should_exit = True

    labels = list(zip(scored["sentiment"], served["sentiment"], strict=True))
    assert all(a in SENTIMENT.labels for a, _ in labels)
    agreement = sum(a == b for a, b in labels) / len(labels)
    texts = list(zip(scored["sounds"], served["sounds"], strict=True))
    similarity = sum(rouge_l(a, b) for a, b in texts) / len(texts)
    print(f"classification agreement {agreement:.3f} on {len(labels)}; "
          f"generation ROUGE-L {similarity:.3f} on {len(texts)}")  # fmt: skip
    assert agreement >= 0.99, labels
    assert similarity >= 0.99, texts
    # The accuracy in the results is that of the served labels.
    references = [row["output"] for row in sentiment_examples(120, 7)]
    accuracy = sum(a == r for a, r in zip(served["sentiment"], references, strict=True)) / 120
    assert results["tasks"]["sentiment"]["score"] == pytest.approx(accuracy, abs=0.011)


def ask_gateway(url: str, data: dict[str, Path], base: Path) -> dict[str, list[str]]:
    """Every eval example through the gateway, one at a time, as a client asks."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    answers: dict[str, list[str]] = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        for task, path in data.items():
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            # The evaluation's budget for generation, from the references (answers.py).
            budget = answer_budget(tokenizer, [row["output"] for row in rows], 24)
            answers[task] = []
            for row in rows:
                body = {"text": row["input"], "max_new_tokens": budget}
                response = client.post(f"/tasks/{task}", json=body)
                assert response.status_code == 200, response.text
                output = response.json()["output"]
                answers[task].append(output if task == "sentiment" else first_line(output))
    return answers
