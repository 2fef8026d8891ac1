"""The serving engines, one object each (`mtd_operator.engines`): TGI's served ranks and
its rank floor per GPU shard, vLLM's adapter names and containers, and the rule that
nothing outside the engines branches on an engine's name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mtd_operator.engines import ENGINES, TGI, VLLM, engine_of
from mtd_operator.engines.base import ServeRequest
from mtd_operator.engines.tgi import MIN_SGMV_RANK, TGI_LORA_RANKS, tgi_served_rank
from mtd_operator.engines.vllm import (
    ADAPTERS_KEY,
    ADAPTERS_MOUNT,
    START_WITH_ADAPTERS,
    VLLM_MAX_LORA_RANKS,
    max_lora_rank,
    max_loras,
)
from mtd_operator.kube import builders
from tests.core import conftest as core_conftest
from tests.core.specs import resource, task
from tests.core.test_validate_cli import run
from tests.kube.test_builders import BODY, CONFIG, TWO_GPUS, finished_decision, make_spec

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "mtd_operator"

# `mtd validate` needs the data files and a base model folder: the core tests' fixture.
write_spec = core_conftest.write_spec


# -- choosing an engine ------------------------------------------------------------------


def test_vllm_is_the_default_engine_and_each_engine_is_found_by_its_name():
    assert make_spec().serving.engine == "vllm"
    assert engine_of(make_spec()) is VLLM
    assert engine_of(make_spec(serving={"engine": "tgi"})) is TGI
    assert {name: engine.name for name, engine in ENGINES.items()} == {
        "vllm": "vllm",
        "tgi": "tgi",
    }


# -- TGI's ranks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rank", "shards", "served"),
    [
        (4, 1, 16), (8, 1, 16), (16, 1, 16), (17, 1, 32), (36, 1, 64), (128, 1, 128),
        (4, 2, 16), (16, 2, 16), (32, 2, 32),
        (4, 4, 32), (16, 4, 32), (32, 4, 32), (33, 4, 64),
        (16, 8, 64), (64, 8, 64), (65, 8, 128),
        (129, 1, None), (256, 2, None), (512, 8, None),
    ],
)  # fmt: skip
def test_tgi_serves_a_rank_at_its_kernel_rank_above_the_shard_floor(rank, shards, served):
    assert tgi_served_rank(rank, shards) == served
    assert TGI.served_rank(rank, shards) == served
    if served is not None:
        assert served in TGI_LORA_RANKS
        assert served >= rank and served >= MIN_SGMV_RANK * shards


def test_tgi_served_rank_defaults_to_one_shard():
    assert [tgi_served_rank(r) for r in (1, 16, 17, 64, 100, 128, 129)] == [
        16, 16, 32, 64, 128, 128, None,
    ]  # fmt: skip


def tgi_spec(rank: int, **overrides):
    return make_spec(training={"lora": {"rank": rank}}, serving={"engine": "tgi"}, **overrides)


def test_tgi_rank_problems_name_the_field_and_the_rank_the_shards_need():
    problems = TGI.rank_problems(tgi_spec(16), shards=4)
    assert len(problems) == 1, problems  # one message per field, not per adapter
    (problem,) = problems
    assert problem.startswith("training.lora.rank:")
    assert "32" in problem and "4 GPUs" in problem and "serving.gpus" in problem
    # 16 serves as it is on 1 or 2 shards; 32 clears the floor of 4 shards
    assert TGI.rank_problems(tgi_spec(16), shards=1) == []
    assert TGI.rank_problems(tgi_spec(16), shards=2) == []
    assert TGI.rank_problems(tgi_spec(32), shards=4) == []
    # 8 shards: the floor is 64
    (problem,) = TGI.rank_problems(tgi_spec(32), shards=8)
    assert problem.startswith("training.lora.rank:") and "64" in problem


def test_tgi_rank_problems_name_a_composition_below_the_floor():
    spec = tgi_spec(
        32,
        compositions=[{"name": "c0", "tasks": ["a", "g"], "merge": "linear",
                       "instruction": "Do both."}],
    )  # fmt: skip
    assert TGI.rank_problems(spec, shards=4) == []
    problems = TGI.rank_problems(spec, shards=8)
    assert [p.split(":", 1)[0] for p in problems] == ["training.lora.rank", "compositions[0]"]


def test_no_rank_problem_without_served_adapters_or_on_vllm():
    full = make_spec(
        training={"method": "full", "lora": {"rank": 16}},
        serving={"engine": "tgi"},
        filtering={"strategy": "none"},
    )
    assert TGI.rank_problems(full, shards=8) == []
    vllm = make_spec(training={"lora": {"rank": 8}})
    assert VLLM.rank_problems(vllm, shards=8) == []  # no floor per GPU in vLLM


def test_the_spec_refuses_ranks_no_kernel_fits_and_a_context_below_training():
    with pytest.raises(ValueError, match=r"training\.lora\.rank: gives an adapter of rank 256"):
        tgi_spec(256)
    with pytest.raises(ValueError, match="rank at most 512, but an adapter here has rank 1024"):
        make_spec(training={"lora": {"rank": 1024}})
    tgi_spec(128)
    make_spec(training={"lora": {"rank": 512}})
    with pytest.raises(ValueError, match=r"serving\.maxModelLength: 256 is below"):
        make_spec(training={"maxSeqLength": 512}, serving={"maxModelLength": 256})
    spec = make_spec(training={"maxSeqLength": 512}, serving={"maxModelLength": 512})
    assert spec.serving.max_model_length == 512


# -- `mtd validate --set` and `mtd manifests` --------------------------------------------


def write_tgi_spec(write_spec, rank: int = 16) -> Path:
    doc = resource(
        [task("spam"), task("summary", "generation")],
        training={"lora": {"rank": rank}},
        serving={"engine": "tgi"},
    )
    return write_spec(doc)


def test_validate_refuses_a_tgi_rank_below_the_floor_of_the_serving_gpus(write_spec, capsys):
    path = write_tgi_spec(write_spec)
    code, _, err = run(capsys, "validate", str(path), "--set", "serving.gpus=4")
    assert code == 2, err
    assert "Traceback" not in err
    assert "error: spec.training.lora.rank:" in err and "32" in err
    code, out, err = run(capsys, "validate", str(path), "--set", "serving.gpus=2")
    assert code == 0, err
    assert "valid MultiTaskDeployment 'support'" in out
    code, _, err = run(capsys, "validate", str(path))  # the chart's default: 1 GPU
    assert code == 0, err


def test_validate_accepts_a_rank_that_clears_the_floor(write_spec, capsys):
    path = write_tgi_spec(write_spec, rank=32)
    code, _, err = run(capsys, "validate", str(path), "--set", "serving.gpus=4")
    assert code == 0, err


def test_validate_reports_a_bad_set_as_exit_2(write_spec, capsys):
    path = write_tgi_spec(write_spec)
    code, _, err = run(capsys, "validate", str(path), "--set", "serving.gpus=many")
    assert code == 2 and "Traceback" not in err and "serving.gpus" in err


def test_manifests_refuse_the_same_spec_on_as_many_gpus(write_spec, capsys):
    path = write_tgi_spec(write_spec)
    code, out, err = run(capsys, "manifests", str(path), "--set", "serving.gpus=4")
    assert code == 2 and out == ""
    assert "error: spec.training.lora.rank:" in err and "Traceback" not in err
    code, out, err = run(capsys, "manifests", str(path), "--set", "serving.gpus=2")
    assert code == 0, err
    assert "--num-shard" in out


# -- nothing else branches on the engine's name -----------------------------------------

ENGINE_BRANCH = re.compile(
    r"""engine\s*[!=]=\s*["'](tgi|vllm)["']"""
    r"""|["'](tgi|vllm)["']\s*[!=]=\s*[\w.]*engine\b"""
)


def _serving_model_lines(path: Path) -> set[int]:
    """The lines of api/spec.py's `Serving` model, which declares the engine names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Serving":
            return set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    raise AssertionError("api/spec.py has no Serving model")


def test_the_engine_pattern_finds_a_branch():
    # what the check below looks for, in the forms it was written before the engines
    assert ENGINE_BRANCH.search('if spec.serving.engine == "vllm":')
    assert ENGINE_BRANCH.search("if spec.serving.engine != 'tgi':")
    assert ENGINE_BRANCH.search('override = x if engine == "tgi" else None')
    assert ENGINE_BRANCH.search('if "vllm" == spec.serving.engine:')
    assert not ENGINE_BRANCH.search('engine: Literal["vllm", "tgi"]')


def test_only_the_engines_branch_on_the_engine_name():
    spec_py = PACKAGE / "api" / "spec.py"
    allowed = {(spec_py, line) for line in _serving_model_lines(spec_py)}
    excluded = (PACKAGE / "engines", PACKAGE / "gateway")  # the gateway: by wire protocol
    files = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "kube" / "builders.py" in files and PACKAGE / "cli.py" in files
    offenders = []
    for path in files:
        if any(path.is_relative_to(folder) for folder in excluded):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ENGINE_BRANCH.search(line) and (path, number) not in allowed:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


# -- vLLM ---------------------------------------------------------------------------------


def test_vllm_adapter_names_are_stable_and_follow_the_folder():
    folders = {"binary": "/workspace/a/binary", "generation": "/workspace/a/generation"}
    names = VLLM.adapter_names(folders)
    assert names == VLLM.adapter_names(dict(folders)) == VLLM.adapter_names(folders)
    assert set(names) == set(folders)
    for name, served in names.items():
        assert re.fullmatch(rf"{name}-[0-9a-f]{{8}}", served), served
    retrained = VLLM.adapter_names({**folders, "binary": "/workspace/b/binary"})
    assert retrained["binary"] != names["binary"]
    assert retrained["binary"].startswith("binary-")
    assert retrained["generation"] == names["generation"]  # only the moved adapter changes
    # TGI serves each adapter under its own name
    assert TGI.adapter_names(folders) == {"binary": "binary", "generation": "generation"}


@pytest.mark.parametrize(
    ("rank", "flag"),
    [(1, 8), (8, 8), (9, 16), (100, 128), (129, 256), (257, 320), (321, 512), (512, 512)],
)
def test_vllm_max_lora_rank_is_the_smallest_accepted_value_that_fits(rank, flag):
    assert max_lora_rank(rank) == flag and flag in VLLM_MAX_LORA_RANKS


def test_vllm_max_loras_is_a_power_of_two_of_at_least_four():
    assert [max_loras(n) for n in (0, 1, 4, 5, 8, 9, 17)] == [4, 4, 4, 8, 8, 16, 32]


def serve_request(spec, config, *, full: bool = False) -> ServeRequest:
    model = builders.served_model_id(spec, config)
    return ServeRequest(
        model_path="/workspace/artifacts/full/model" if full else model,
        served_model_id=model,
        adapters={} if full else {"binary": "/workspace/a/binary", "gen": "/workspace/a/gen"},
        full_model=full,
    )


def test_vllm_container_takes_the_model_first_and_loads_the_adapter_list():
    spec = make_spec(training={"lora": {"rank": 12}}, serving={"maxModelLength": 2048})
    container = VLLM.container(spec, TWO_GPUS, serve_request(spec, TWO_GPUS))
    assert container.command == ["/bin/sh", "-c", START_WITH_ADAPTERS, "vllm"]
    assert f"$(cat {ADAPTERS_MOUNT}/{ADAPTERS_KEY})" in START_WITH_ADAPTERS
    assert 'exec vllm serve "$@"' in START_WITH_ADAPTERS
    assert container.args == [
        "/models/models/smollm2",
        "--port", "8080",
        "--max-model-len", "2048",
        "--tensor-parallel-size", "2",
        "--enable-lora",
        "--max-lora-rank", "16",
        "--max-loras", "4",
    ]  # fmt: skip
    assert container.image == TWO_GPUS.vllm_image
    env = {e["name"]: e["value"] for e in container.env}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    one = VLLM.container(spec, CONFIG, serve_request(spec, CONFIG))
    assert "--tensor-parallel-size" not in one.args  # one GPU: vLLM's default


def test_vllm_under_method_full_serves_the_model_as_the_base_without_adapters():
    spec = make_spec(training={"method": "full"}, filtering={"strategy": "none"})
    container = VLLM.container(spec, TWO_GPUS, serve_request(spec, TWO_GPUS, full=True))
    assert container.command == ["vllm", "serve"]
    assert container.args == [
        "/workspace/artifacts/full/model",
        "--port", "8080",
        "--max-model-len", "4096",
        "--tensor-parallel-size", "2",
        "--served-model-name", "/models/models/smollm2",
    ]  # fmt: skip
    env = {e["name"]: e["value"] for e in container.env}
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in env
    # the Deployment: the trained model, and no adapters volume
    decision = finished_decision(spec)
    assert decision.serving.model is not None and decision.serving.adapters == {}
    where = builders.cluster_locations(spec, TWO_GPUS, "ml", "support")
    pod = builders.serving_deployment(
        builders.ServingInputs(BODY, spec, TWO_GPUS, decision.serving, where)
    )["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["command"] == ["vllm", "serve"]
    assert server["args"][0] == where.artifact(decision.serving.model)
    assert "adapters" not in {v["name"] for v in pod["volumes"]}
    assert ADAPTERS_MOUNT not in {m["mountPath"] for m in server["volumeMounts"]}


def test_tgi_container_bounds_the_context_and_shards_per_gpu():
    spec = make_spec(serving={"engine": "tgi", "maxModelLength": 1024})
    container = TGI.container(spec, TWO_GPUS, serve_request(spec, TWO_GPUS))
    assert container.command is None  # the image's launcher
    assert container.args == [
        "--model-id", "/models/models/smollm2",
        "--port", "8080",
        "--hostname", "0.0.0.0",
        "--max-total-tokens", "1024",
        "--max-input-tokens", "1023",
        "--num-shard", "2",
    ]  # fmt: skip
    env = {e["name"]: e["value"] for e in container.env}
    assert env["LORA_ADAPTERS"] == "binary=/workspace/a/binary,gen=/workspace/a/gen"
    full = TGI.container(spec, TWO_GPUS, serve_request(spec, TWO_GPUS, full=True))
    assert full.args[:2] == ["--model-id", "/workspace/artifacts/full/model"]
    assert "LORA_ADAPTERS" not in {e["name"] for e in full.env}


def test_each_engine_says_how_a_new_adapter_set_reaches_its_pods():
    assert VLLM.adapter_update(make_spec()) == "RuntimeLoad"
    assert VLLM.adapter_update(make_spec(serving={"rollout": "oneAtATime"})) == "RuntimeLoad"
    assert TGI.adapter_update(make_spec(serving={"engine": "tgi"})) == "Surge"
    one = make_spec(serving={"engine": "tgi", "rollout": "oneAtATime"})
    assert TGI.adapter_update(one) == "OneAtATime"


def test_pod_security_defaults_and_chart_overrides():
    assert VLLM.pod_security(CONFIG)["runAsNonRoot"] is True
    assert "runAsUser" not in TGI.pod_security(CONFIG)  # TGI issue #3082: the image's root
    override = {"runAsUser": 1000, "runAsNonRoot": True}
    tgi_only = CONFIG.model_copy(update={"tgi_pod_security_context": override})
    assert TGI.pod_security(tgi_only) == override
    assert VLLM.pod_security(tgi_only) == VLLM.pod_security(CONFIG)
    vllm_only = CONFIG.model_copy(update={"vllm_pod_security_context": override})
    assert VLLM.pod_security(vllm_only) == override
    # the chart's {} means "the engine's default"
    empty = CONFIG.model_copy(
        update={"tgi_pod_security_context": {}, "vllm_pod_security_context": {}}
    )
    assert TGI.pod_security(empty) == TGI.pod_security(CONFIG)
    assert VLLM.pod_security(empty) == VLLM.pod_security(CONFIG)
