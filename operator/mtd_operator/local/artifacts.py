"""Checks that a finished step's files are whole before they are reused or served.

A step counts as done when its result file exists, but a disk that filled up, a copy
cut short or a hand edit can leave an adapter truncated beside a good result file; peft
then fails (or worse, loads garbage) long after. The safetensors format makes the check
cheap without torch: an 8-byte little-endian header length, a JSON header giving every
tensor's byte range, then exactly those bytes (huggingface/safetensors, "Format").
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

#: safetensors refuses headers above 100 MB; so do we (and never read more).
MAX_HEADER_BYTES = 100_000_000
#: Folders inside a step's output that are not artifacts (caches are rebuilt on demand).
SKIPPED = frozenset({".cache"})


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file, or None if its header and size agree."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return f"{size} bytes, shorter than a safetensors header"
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES or 8 + length > size:
                return f"header of {length} bytes does not fit in {size} bytes"
            header = json.loads(handle.read(length))
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    except (ValueError, RecursionError):
        return "header is not valid JSON"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            return f"tensor {name[:60]!r} has no valid data_offsets"
        end = max(end, offsets[1])
    expected = 8 + length + end
    if size != expected:
        return f"{size} bytes, but its header describes {expected} (truncated or padded)"
    return None


def damaged_artifact(folder: Path) -> str | None:
    """The first damaged safetensors file under `folder` and why, or None."""
    if not folder.is_dir():
        return None
    for path in sorted(folder.rglob("*.safetensors")):
        if SKIPPED.intersection(path.relative_to(folder).parts):
            continue
        problem = safetensors_problem(path)
        if problem is not None:
            return f"{path}: {problem}"
    return None
