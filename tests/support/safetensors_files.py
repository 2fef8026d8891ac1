"""safetensors files written by the format's rules, without torch: an 8-byte little-endian
header length, a JSON header giving each tensor's dtype and byte range, then the bytes
(huggingface/safetensors, "Format")."""

from __future__ import annotations

import json
import struct
from pathlib import Path

#: dtype → struct format of one value.
_PACK = {"F32": "<f", "F64": "<d", "F16": "<e"}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[float]]]) -> Path:
    """`tensors`: name → (dtype, values); BF16 values are float32's upper two bytes."""
    header: dict = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, (dtype, values) in tensors.items():
        if dtype == "BF16":
            raw = b"".join(struct.pack("<f", v)[2:] for v in values)
        else:
            raw = b"".join(struct.pack(_PACK[dtype], v) for v in values)
        header[name] = {
            "dtype": dtype,
            "shape": [len(values)],
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    encoded = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data)
    return path
