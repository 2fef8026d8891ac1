"""The server under attack: limits with a 4xx naming them, an admin token for changing
adapters, work off the event loop that stops when its client leaves (issue #15)."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.models import build_adapter
from tests.support.net import serve_app

from .conftest import LABELS, Served

TOKEN = "the-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def engine(served: Served) -> Any:
    from mtd_trainer.serving import Engine

    return Engine(
        served.base, served.adapters, model_id="tiny", max_input_tokens=200, max_total_tokens=256
    )


@pytest.fixture
def app_url(engine: Any) -> Iterator[str]:
    from mtd_trainer.serving import build_app
    from mtd_trainer.serving.limits import Limits

    limits = Limits(max_body_bytes=50_000, max_labels=8, max_concurrent_requests=2, label_batch=2)
    with serve_app(build_app(engine, limits=limits, admin_token=TOKEN)) as url:
        yield url


# -- limits -------------------------------------------------------------------------------


def test_ten_thousand_labels_get_a_4xx_naming_the_limit(served: Served) -> None:
    """On the default limits, the server that a 10,000-label request used to run past
    20 GB answers 422 and keeps serving."""
    labels = [f"label-{i}" for i in range(10_000)]
    with httpx.Client(base_url=served.url, timeout=60) as client:
        answer = client.post("/classify", json={"inputs": "the film", "labels": labels})
        assert answer.status_code == 422, answer.text
        assert "max_labels (64)" in answer.json()["error"]
        assert client.get("/health").status_code == 200
        ok = client.post(
            "/classify",
            json={"inputs": "the film", "labels": LABELS, "adapter_id": "sentiment"},
        )
        assert ok.status_code == 200


def test_a_long_label_is_refused(app_url: str) -> None:
    body = {"inputs": "the film", "labels": ["pos", "x" * 300]}
    answer = httpx.post(f"{app_url}/classify", json=body, timeout=60)
    assert answer.status_code == 422 and "max_label_chars (256)" in answer.json()["error"]


def test_label_batches_score_as_one_batch(engine: Any) -> None:
    ids = engine.encode("the film was good")
    labels = [*LABELS, "good", "bad film", "meow"]
    whole = engine.score_labels(ids, labels, engine.resolve_adapter("sentiment"), batch=16)
    pieces = engine.score_labels(ids, labels, engine.resolve_adapter("sentiment"), batch=2)
    assert pieces == pytest.approx(whole, abs=1e-4)


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "streamed"])
def test_a_body_over_the_limit_gets_413(app_url: str, chunked: bool) -> None:
    body = b'{"inputs": "' + b"a" * 60_000 + b'"}'
    content: Any = iter([body[:30_000], body[30_000:]]) if chunked else body
    answer = httpx.post(
        f"{app_url}/generate",
        content=content,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 413
    assert "max_body_bytes (50000 bytes)" in answer.json()["error"]
    assert httpx.get(f"{app_url}/health", timeout=10).status_code == 200


@contextmanager
def slow_steps(engine: Any, seconds: float) -> Iterator[list[Any]]:
    """Every forward pass of `engine` takes at least `seconds`; yields finished generations."""
    using, generate = engine._using, engine.generate
    finished: list[Any] = []

    @contextmanager
    def slowly(adapter: str | None) -> Iterator[None]:
        time.sleep(seconds)
        with using(adapter):
            yield

    def recorded(*args: Any, **kwargs: Any) -> Any:
        result = generate(*args, **kwargs)
        finished.append(result)
        return result

    engine._using, engine.generate = slowly, recorded
    try:
        yield finished
    finally:
        engine._using, engine.generate = using, generate


def long_generation(url: str, timeout: float) -> None:
    body = {"inputs": "the cat says", "parameters": {"max_new_tokens": 200}}
    with suppress(httpx.TimeoutException):
        httpx.post(f"{url}/generate", json=body, timeout=timeout)


def test_requests_beyond_the_concurrency_limit_get_429(app_url: str, engine: Any) -> None:
    with slow_steps(engine, 0.05):
        callers = [threading.Thread(target=long_generation, args=(app_url, 3)) for _ in range(2)]
        for caller in callers:
            caller.start()
        time.sleep(1.0)
        answer = httpx.post(f"{app_url}/generate", json={"inputs": "hi"}, timeout=60)
        assert answer.status_code == 429, answer.text
        assert "max_concurrent_requests (2)" in answer.json()["error"]
        assert httpx.get(f"{app_url}/health", timeout=10).status_code == 200
        for caller in callers:
            caller.join()


def test_an_abandoned_generation_stops(app_url: str, engine: Any) -> None:
    """The client leaves after a second; 200 tokens at 0.05 s each would take 10 s more."""
    with slow_steps(engine, 0.05) as finished:
        long_generation(app_url, timeout=1.0)
        deadline = time.monotonic() + 60
        while not finished and time.monotonic() < deadline:
            time.sleep(0.1)
    assert finished, "the generation did not end"
    assert len(finished[0].tokens) < 200


def test_health_answers_while_a_prompt_is_tokenised(app_url: str, engine: Any) -> None:
    """Tokenising a long input runs in a worker thread, not on the event loop."""
    release = threading.Event()
    encode = engine.encode

    def blocked(text: str, add_special_tokens: bool = True) -> list[int]:
        release.wait(60)
        return encode(text, add_special_tokens)

    engine.encode = blocked
    caller = threading.Thread(target=long_generation, args=(app_url, 60))
    try:
        caller.start()
        time.sleep(0.5)
        assert httpx.get(f"{app_url}/health", timeout=10).status_code == 200
        assert caller.is_alive()  # still waiting for its tokens
    finally:
        release.set()
        engine.encode = encode
        caller.join()


# -- admin ---------------------------------------------------------------------------------


def test_changing_adapters_needs_the_token(app_url: str, engine: Any) -> None:
    before = engine.adapters
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = httpx.post(
            f"{app_url}/adapters", json={"adapters": {}}, headers=headers, timeout=60
        )
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"] == "Bearer"
    assert engine.adapters == before


def test_without_a_token_nobody_changes_adapters(engine: Any) -> None:
    from mtd_trainer.serving import build_app

    with serve_app(build_app(engine)) as url:
        answer = httpx.post(f"{url}/adapters", json={"adapters": {}}, headers=ADMIN, timeout=60)
        assert answer.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"adapters": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
        b'{"adapters": {"x": "/tmp"}, "catalogue": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"adapters": {"x": 3}}',
        b'{"adapter": {}}',
        b"not json",
    ],
    ids=["deep", "deep-value", "deep-catalogue", "not-a-path", "misspelt", "not-json"],
)
def test_bad_admin_bodies_are_4xx_json(served: Served, body: bytes) -> None:
    from mtd_trainer.serving import Engine, build_app

    engine = Engine(served.base, {"sentiment": served.adapters["sentiment"]}, model_id="tiny")
    with serve_app(build_app(engine, admin_token=TOKEN)) as url:
        answer = httpx.post(
            f"{url}/adapters",
            content=body,
            headers={**ADMIN, "Content-Type": "application/json"},
            timeout=60,
        )
        assert 400 <= answer.status_code < 500, answer.text
        assert "error" in answer.json()
        assert engine.adapters == ("sentiment",)


def test_a_truncated_adapter_is_refused_and_the_old_set_kept(served: Served, tmp_path: Path):
    from mtd_trainer.serving import Engine, build_app

    broken = build_adapter(served.base, tmp_path / "broken", seed=5)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    engine = Engine(served.base, {"sentiment": served.adapters["sentiment"]}, model_id="tiny")
    with serve_app(build_app(engine, admin_token=TOKEN)) as url:
        answer = httpx.post(
            f"{url}/adapters",
            json={"adapters": {"sentiment": str(broken)}},
            headers=ADMIN,
            timeout=60,
        )
        assert answer.status_code == 422, answer.text
        assert "nothing changed" in answer.json()["error"]
        ok = httpx.post(
            f"{url}/generate",
            json={"inputs": "the film", "parameters": {"adapter_id": "sentiment"}},
            timeout=60,
        )
        assert ok.status_code == 200


def test_metrics_name_adapters_as_users_do_after_reloads(served: Served) -> None:
    from mtd_trainer.serving import Engine, build_app

    engine = Engine(served.base, {"task": served.adapters["sentiment"]}, model_id="tiny")
    body = {"inputs": "the cat", "parameters": {"adapter_id": "task", "max_new_tokens": 1}}
    with serve_app(build_app(engine, admin_token=TOKEN)) as url, httpx.Client(base_url=url) as c:
        for _ in range(3):
            new = {"adapters": {"task": str(served.adapters["sounds"])}}
            swap = c.post("/adapters", json=new, headers=ADMIN, timeout=60)
            assert swap.status_code == 200, swap.text
            assert c.post("/generate", json=body, timeout=60).status_code == 200
        metrics = c.get("/metrics").text
    assert 'route="/generate",adapter="task",status="200"} 3' in metrics
    assert "__r" not in metrics


def test_the_token_file_is_created_private_and_reused(tmp_path: Path) -> None:
    from mtd_trainer.serving.limits import load_or_create_token

    path = tmp_path / "ws" / "admin-token"
    token = load_or_create_token(path)
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token
    path.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        load_or_create_token(path)
