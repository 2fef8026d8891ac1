"""Results larger than one ConfigMap (1 MiB) travel gzipped in parts and come back whole."""

from __future__ import annotations

import base64
import random

import pytest

from mtd_operator import result_parts
from mtd_operator.result_parts import ResultTooLarge, encode, read_result

ONE_MIB = 1024 * 1024


def chrf_result(examples: int) -> dict:
    """An evaluation result shaped as the trainer writes it: chrF statistics per example."""
    rng = random.Random(examples)
    stats = [[rng.randint(0, 300) for _ in range(18)] for _ in range(examples)]
    per_example = {"metric": "chrF", "kind": "chrf", "stats": stats}
    return {"tasks": {"summaries": {"score": 41.2, "metric": "chrF", "per_example": per_example}}}


def as_config_maps(parts) -> dict[str, dict]:
    return {p.name: {"data": p.data, "binaryData": p.binary_data} for p in parts}


def stored_bytes(part) -> int:
    """What ValidateConfigMap counts: data bytes plus decoded binaryData bytes."""
    data = sum(len(k) + len(v.encode()) for k, v in part.data.items())
    binary = sum(len(k) + len(base64.b64decode(v)) for k, v in part.binary_data.items())
    return data + binary


def test_a_small_result_is_plain_json_in_one_config_map():
    payload = {"tasks": {"a": {"score": 0.5}}}
    (part,) = encode("r", payload)
    assert part.name == "r" and set(part.data) == {"result.json", "sha256"}
    assert not part.binary_data
    assert read_result("r", as_config_maps([part])) == payload
    # Edited after the pod wrote it: its digest no longer matches.
    edited = {"r": {"data": {**part.data, "result.json": '{"tasks": {}}'}}}
    assert read_result("r", edited) is None


def test_a_large_result_is_split_into_parts_each_under_1_mib_and_read_back_whole():
    payload = chrf_result(60_000)  # about 3.5 MB of JSON
    parts = encode("job-result", payload)
    assert len(parts) > 1
    assert parts[-1].name == "job-result"  # the head is written last
    assert {p.name for p in parts[:-1]} == {f"job-result-part-{i}" for i in range(1, len(parts))}
    assert all(stored_bytes(p) < ONE_MIB for p in parts)
    maps = as_config_maps(parts)
    assert read_result("job-result", maps) == payload
    # Until every part is there, or when one is damaged, there is no result.
    missing = dict(maps)
    del missing["job-result-part-1"]
    assert read_result("job-result", missing) is None
    damaged = {**maps, "job-result-part-1": {"binaryData": {"result.json.gz": "not base64!"}}}
    assert read_result("job-result", damaged) is None
    # Parts of another write (a retried pod's, half replaced): the digest tells.
    other = as_config_maps(encode("job-result", chrf_result(60_001)))
    mixed = {**maps, "job-result-part-1": other["job-result-part-1"]}
    assert read_result("job-result", mixed) is None


@pytest.mark.parametrize(
    "head",
    [
        {"data": {"result.json": "[1, 2]"}},
        {"data": {"result.json": "{not json"}},
        {"data": {"parts": "many"}},
        {"data": {"parts": "0"}},
        {"data": {}},
    ],
)
def test_unreadable_heads_give_no_result(head):
    assert read_result("r", {"r": head}) is None


def test_a_result_beyond_every_part_is_refused_before_anything_is_written(monkeypatch):
    monkeypatch.setattr(result_parts, "MAX_PARTS", 1)
    with pytest.raises(ResultTooLarge, match="more than 1 ConfigMaps"):
        encode("r", chrf_result(60_000))
