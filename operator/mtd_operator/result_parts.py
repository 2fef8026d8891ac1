"""How a Job's result travels in ConfigMaps, written by the pod and read by the operator.

The API server refuses a ConfigMap whose data and binaryData exceed 1 MiB together
(pkg/apis/core/validation ValidateConfigMap, core.MaxSecretSize). An evaluation's result
carries every example's contribution for the paired bootstrap (about 55 bytes of JSON per
chrF example), so a large evaluation outgrows one ConfigMap. So:

* a small result is plain JSON under `result.json` in the ConfigMap `<name>`;
* a larger one is gzipped (about 2.7 times smaller for chrF statistics) under
  `result.json.gz` in binaryData, split into parts of at most `PART_BYTES`: the first in
  `<name>` with the number of parts, the others in `<name>-part-1`, `<name>-part-2`, ...

The head also carries the sha256 of the JSON (`sha256`): the operator uses a result only
when what it reassembled is what the pod wrote. The pod writes the other parts before
`<name>`, so a head the operator sees has its parts.

Not on the workspace volume: the operator mounts no volume (a claim lives in each
resource's namespace, and a pod can mount claims of its own namespace only).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

RESULT_KEY = "result.json"
GZIP_KEY = "result.json.gz"
PARTS_KEY = "parts"
SHA256_KEY = "sha256"
# Results up to this size stay readable with `kubectl get configmap -o yaml`.
INLINE_BYTES = 256 * 1024
# Compressed bytes per ConfigMap: under 1 MiB with room for the other fields.
PART_BYTES = 900 * 1024
MAX_PARTS = 64


class ResultTooLarge(ValueError):
    """A result that would need more than MAX_PARTS ConfigMaps."""


@dataclass(frozen=True)
class Part:
    """One ConfigMap's content: its name and its data / binaryData maps."""

    name: str
    data: dict[str, str] = field(default_factory=dict)
    binary_data: dict[str, str] = field(default_factory=dict)


def part_name(name: str, index: int) -> str:
    return name if index == 0 else f"{name}-part-{index}"


def encode(name: str, payload: dict[str, Any]) -> list[Part]:
    """The ConfigMaps holding `payload`, the head (`name`) last: the write order."""
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    if len(text.encode()) <= INLINE_BYTES:
        return [Part(name, data={RESULT_KEY: text, SHA256_KEY: digest})]
    packed = gzip.compress(text.encode(), compresslevel=9, mtime=0)
    chunks = [packed[i : i + PART_BYTES] for i in range(0, len(packed), PART_BYTES)]
    if len(chunks) > MAX_PARTS:
        raise ResultTooLarge(
            f"the result is {len(text.encode())} bytes of JSON ({len(packed)} gzipped), more "
            f"than {MAX_PARTS} ConfigMaps of {PART_BYTES} bytes hold; evaluate on fewer "
            "examples (each contributes to the result for the confidence interval)"
        )
    parts = [
        Part(
            part_name(name, index),
            data={PARTS_KEY: str(len(chunks)), SHA256_KEY: digest} if index == 0 else {},
            binary_data={GZIP_KEY: base64.b64encode(chunk).decode()},
        )
        for index, chunk in enumerate(chunks)
    ]
    return [*parts[1:], parts[0]]


def read_result(name: str, config_maps: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The result stored under `name`, from ConfigMaps by name (each a dict with `data`
    and `binaryData`); None when it is missing, incomplete or unreadable."""
    head = config_maps.get(name)
    if not head:
        return None
    data = head.get("data") or {}
    if RESULT_KEY in data:
        return _checked(data[RESULT_KEY].encode(), data.get(SHA256_KEY))
    try:
        count = int(data.get(PARTS_KEY, ""))
    except ValueError:
        return None
    if not 1 <= count <= MAX_PARTS:
        return None
    packed = b""
    for index in range(count):
        part = config_maps.get(part_name(name, index)) or {}
        encoded = (part.get("binaryData") or {}).get(GZIP_KEY)
        if encoded is None:
            return None
        try:
            packed += base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return None
    try:
        raw = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error):
        return None
    return _checked(raw, data.get(SHA256_KEY))


def _checked(raw: bytes, digest: str | None) -> dict[str, Any] | None:
    """The JSON object in `raw` if it has the digest the pod recorded. A head without one
    (written by an older pod) is taken as it is."""
    if digest is not None and hashlib.sha256(raw).hexdigest() != digest:
        return None
    try:
        value = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
