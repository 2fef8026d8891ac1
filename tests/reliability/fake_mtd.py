"""A FAKE `mtd` for the Job pods of the reliability tests: stdlib only, starts in ~20 ms.

The kill-point matrix, the API-fault runs and the 100-resource run need dozens of
pipelines; the real trainer (torch) would take minutes per pipeline. The JobRunner finds
this script first on $PATH as `mtd`, so Jobs run it instead of the real `mtd step` /
`mtd profile`. It does what those do as far as the operator can tell:

* `mtd profile ...`: publishes the precomputed profiles in $MTD_FAKE_PROFILES (computed
  by the test with the real `profile_spec`); without that variable it runs the real
  `mtd profile` (so bad-data runs get the real errors).
* `mtd step train|compose|evaluate --config C --result-configmap R`: like the real trainer, a
  train step whose `result.json` exists is recognised as done (and logged as a RERUN);
  otherwise it sleeps $MTD_FAKE_STEP_SECONDS, writes `adapter/adapter_config.json`,
  `adapter/adapter_model.safetensors` and `result.json` (evaluate: the results file with
  a fixed score per task), then writes the result ConfigMap exactly as
  `mtd_operator.pod.publish.write_result` does (create, 409 → replace; no retries).

Each invocation appends one JSON line to $MTD_FAKE_LOG: {verb, output, pod, rerun}.
At least one test (test_real_trainer.py) runs the real trainer end to end.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SCORE = 0.75


def log(entry: dict) -> None:
    path = os.environ.get("MTD_FAKE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def request(method: str, url: str, body: dict) -> None:
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as response:
        response.read()


def write_result(name: str, payload: dict) -> None:
    api = os.environ["MTD_FAKE_API"].rstrip("/")
    namespace = os.environ.get("MTD_NAMESPACE", "default")
    labels = {"app.kubernetes.io/component": "result"}
    if os.environ.get("MTD_DEPLOYMENT"):
        labels["multitask.dev/deployment"] = os.environ["MTD_DEPLOYMENT"]
    owner = os.environ.get("MTD_OWNER_REFERENCE")
    metadata: dict = {"name": name, "labels": labels}
    if owner:
        metadata["ownerReferences"] = [json.loads(owner)]
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {"result.json": json.dumps(payload, separators=(",", ":"), sort_keys=True)},
    }
    base = f"{api}/api/v1/namespaces/{namespace}/configmaps"
    try:
        request("POST", base, body)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
        request("PUT", f"{base}/{name}", body)


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def profile(args: list[str]) -> int:
    source = os.environ.get("MTD_FAKE_PROFILES")
    if not source:
        real = os.environ["MTD_REAL_MTD"]
        os.execv(real, [real, "profile", *args])
    result = json.loads(Path(source).read_text(encoding="utf-8"))  # as `mtd profile` writes
    write_result(option(args, "--result-configmap"), result)
    log({"verb": "profile", "output": option(args, "--result-configmap"),
         "pod": os.environ.get("HOSTNAME"), "rerun": False})  # fmt: skip
    return 0


def step(verb: str, args: list[str]) -> int:
    config = json.loads(Path(option(args, "--config")).read_text(encoding="utf-8"))
    if verb in ("train", "compose"):
        output = Path(config["output_dir"])
        result_path = output / "result.json"
        rerun = result_path.exists()
        if not rerun:
            time.sleep(float(os.environ.get("MTD_FAKE_STEP_SECONDS", "0.2")))
            adapter = output / "adapter"
            adapter.mkdir(parents=True, exist_ok=True)
            (adapter / "adapter_config.json").write_text(json.dumps(config.get("lora", {})))
            (adapter / "adapter_model.safetensors").write_bytes(b"fake")
            result = {"run_name": config["run_name"], "artifact": str(adapter)}
            if verb == "train":
                result.update(method=config["method"], steps=config["hyperparameters"]["max_steps"])
            else:
                result.update(merge=config["merge"]["method"], rank=8)
            tmp = result_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(result), encoding="utf-8")
            tmp.replace(result_path)
        payload = json.loads(result_path.read_text(encoding="utf-8"))
    else:
        output = Path(config["output_path"])
        rerun = output.exists()
        time.sleep(float(os.environ.get("MTD_FAKE_STEP_SECONDS", "0.2")) / 2)
        payload = {
            "run_name": config["run_name"],
            "tasks": {
                task["name"]: {"metric": task["metric"], "score": SCORE, "examples": 4}
                for task in config["tasks"]
            },
        }
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload), encoding="utf-8")
    log({"verb": verb, "output": str(output), "pod": os.environ.get("HOSTNAME"),
         "rerun": rerun})  # fmt: skip
    write_result(option(args, "--result-configmap"), payload)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["profile"]:
        return profile(argv[1:])
    if argv[:1] == ["step"] and len(argv) > 1:
        return step(argv[1], argv[2:])
    print(f"fake mtd: unsupported command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
