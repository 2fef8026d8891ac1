"""Throughput and latency of the development server on a real model folder.

    .venv/bin/python -m bench.serving_throughput .cache/models/smollm2-135m [--adapter n=DIR]

Starts `python -m mtd_trainer.serving` as its own process (as `mtd serve` does), then
measures requests/s and latency p50/p95 for two workloads, each with 1 and 8 concurrent
clients: classification over three labels (POST /classify, what MultiTaskClient uses)
and short generation (POST /generate, max_new_tokens 16). Requests alternate between the
adapters, so adapter switching is part of the cost. Without --adapter, two random LoRA
adapters (rank 16, all linear layers, like the trainer's default) are made on the fly.
On a machine shared with other work, `--threads 1` avoids torch's threads spinning
against each other (several times faster here); the load average is printed with the
figures so they can be judged.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.stats import percentile
from mtd_contract.prompts import messages

TEXTS = [
    "The film was a delight from start to finish, with a cast that clearly enjoyed it.",
    "Service was slow and the food arrived cold; I will not be going back.",
    "The match ended in a draw after a late equaliser in the second half.",
    "Shares rose after the company reported better than expected quarterly profits.",
]
LABELS = ["positive", "negative", "neutral"]
INSTRUCTION = "Classify the sentiment of the text."


def make_adapters(base: Path, folder: Path, count: int = 2) -> dict[str, Path]:
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    adapters = {}
    for index in range(count):
        model = AutoModelForCausalLM.from_pretrained(base)
        config = peft.LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")
        peft_model = peft.get_peft_model(model, config)
        generator = torch.Generator().manual_seed(index)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
        peft_model.save_pretrained(folder / f"adapter{index}")
        adapters[f"adapter{index}"] = folder / f"adapter{index}"
    return adapters


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(
    base: Path, adapters: dict[str, Path], port: int, threads: int | None
) -> subprocess.Popen:
    command = [sys.executable, "-m", "mtd_trainer.serving", "--base-model", str(base)]
    for name, path in adapters.items():
        command += ["--adapter", f"{name}={path}"]
    command += ["--port", str(port), "--log-level", "warning"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("the server did not become healthy within 300 s")


def measure(call: Callable[[int], int], requests: int, concurrency: int) -> dict[str, Any]:
    """Run `requests` calls on `concurrency` threads; each call returns tokens generated."""
    latencies: list[float] = []
    tokens: list[int] = []

    def timed(index: int) -> None:
        start = time.perf_counter()
        tokens.append(call(index))
        latencies.append(time.perf_counter() - start)

    call(0)  # warm-up: first-request costs are not throughput
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(timed, range(requests)))
    elapsed = time.perf_counter() - start
    return {
        "requests": requests,
        "concurrency": concurrency,
        "requests_per_s": requests / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "tokens_per_request": sum(tokens) / len(tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="base model folder")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--requests", type=int, default=24, help="requests per measurement")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads of the server (OMP_NUM_THREADS); 1 is much faster on a shared machine",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        adapters = {n: Path(p) for n, p in (a.split("=", 1) for a in args.adapter)}
        if not adapters:
            adapters = make_adapters(args.model, Path(scratch))
        port = free_port()
        started = time.perf_counter()
        server = start(args.model, adapters, port, args.threads)
        load_s = time.perf_counter() - started
        url = f"http://127.0.0.1:{port}"
        names = list(adapters)
        http = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=16))

        def classify(i: int) -> int:
            body = {
                "messages": messages(INSTRUCTION, TEXTS[i % len(TEXTS)], LABELS),
                "labels": LABELS,
                "adapter_id": names[i % len(names)],
            }
            http.post(url + "/classify", json=body).raise_for_status()
            return 0

        def generate(i: int) -> int:
            body = {
                "inputs": TEXTS[i % len(TEXTS)] + " In short,",
                "parameters": {
                    "max_new_tokens": 16,
                    "adapter_id": names[i % len(names)],
                    "details": True,
                },
            }
            response = http.post(url + "/generate", json=body)
            response.raise_for_status()
            return response.json()["details"]["generated_tokens"]

        results = []
        try:
            for workload, call in (("classify", classify), ("generate-16", generate)):
                for concurrency in (1, 8):
                    row = {"workload": workload, **measure(call, args.requests, concurrency)}
                    results.append(row)
                    print(
                        f"{workload:12} c={concurrency}  {row['requests_per_s']:6.2f} req/s  "
                        f"p50 {row['p50_ms']:7.0f} ms  p95 {row['p95_ms']:7.0f} ms  "
                        f"{row['tokens_per_request']:.1f} tokens/request",
                        flush=True,
                    )
        finally:
            http.close()
            server.terminate()
            server.wait(timeout=30)
    summary = {
        "model": str(args.model),
        "adapters": len(adapters),
        "threads": args.threads,
        "load_s": load_s,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({**summary, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
