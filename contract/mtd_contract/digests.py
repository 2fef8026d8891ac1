"""Content digests of what a step produced: nothing is reused or served unverified.

A step's result records the sha256 of every file it wrote (`files`, paths relative to the
step's output folder) and a digest of the result itself (`digest`, over its canonical
JSON without that key). Reuse (`mtd run`, the trainer), scoring and serving recompute
them: a truncated, deleted, bit-flipped or hand-edited file, or a result edited after it
was written, no longer matches, and the step is rebuilt or the adapter refused. An adapter
folder's digest (`folder_digest`) is what the catalogue and the engine compare.

Torch-free: the operator, the gateway and the Job pods check with the same code.
`nonfinite_problem` alone needs numpy (the trainer image and the dev environment have it).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ALGORITHM = "sha256"
#: The result key holding the digest of the result's own JSON.
DIGEST_KEY = "digest"
#: Folders inside a step's output that are not artifacts (caches, rebuilt on demand).
SKIPPED = frozenset({".cache"})
CHUNK = 1 << 20
#: safetensors refuses headers above 100 MB (huggingface/safetensors, "Format"); so do we.
MAX_HEADER_BYTES = 100_000_000


def file_digest(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


#: How a file's digest is had: `file_digest`, or a caller's cache in front of it.
Digester = Callable[[Path], str]


def folder_files(
    folder: str | Path, prefix: str = "", digest: Digester = file_digest
) -> dict[str, str]:
    """Relative path (POSIX, under `prefix`) → sha256, for every regular file under
    `folder`, caches skipped. A symlink is refused: it could point anywhere later."""
    folder = Path(folder)
    files: dict[str, str] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        for name in sorted(names):
            path = Path(root) / name
            mode = os.lstat(path).st_mode
            relative = path.relative_to(folder).as_posix()
            if stat.S_ISLNK(mode):
                raise ValueError(f"{path}: a symbolic link in an artifact cannot be verified")
            if stat.S_ISREG(mode):
                files[f"{prefix}{relative}"] = digest(path)
    return files


def folder_digest(files: Mapping[str, str]) -> str:
    """One digest for a folder's files (relative path → sha256): any file added, removed,
    renamed or changed changes it."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name]}\n".encode())
    return digest.hexdigest()


def files_under(files: Mapping[str, str], folder: str) -> dict[str, str]:
    """The entries of `files` inside `folder` (both relative to one root), relative to it."""
    prefix = folder.rstrip("/") + "/"
    return {name[len(prefix) :]: value for name, value in files.items() if name.startswith(prefix)}


def files_problem(
    root: str | Path, files: Mapping[str, str], digest: Digester = file_digest
) -> str | None:
    """Why the files recorded under `root` are not what was recorded (None: they are)."""
    root = Path(root)
    for name in sorted(files):
        path = root / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            return f"{name!r}: a recorded file outside its step's folder"
        try:
            actual = digest(path)
        except FileNotFoundError:
            return f"{path}: missing"
        except OSError as exc:
            return f"{path}: cannot be read ({exc.strerror})"
        if actual != files[name]:
            return f"{path}: content differs from the {ALGORITHM} its step recorded"
    return None


def folder_problem(folder: str | Path, expected: str, digest: Digester = file_digest) -> str | None:
    """Why an adapter folder is not the one whose digest is `expected` (None: it is)."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder}: missing"
    try:
        actual = folder_digest(folder_files(folder, digest=digest))
    except (OSError, ValueError) as exc:
        return f"{folder}: {exc}"
    if actual != expected:
        return f"{folder}: its files differ from those its step recorded ({ALGORITHM} mismatch)"
    return None


# The result's own digest ----------------------------------------------------------------


def _canonical(payload: Mapping[str, Any]) -> bytes:
    body = {key: value for key, value in payload.items() if key != DIGEST_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sealed(payload: Mapping[str, Any]) -> dict[str, Any]:
    """`payload` with its digest added (what the trainer writes as a step's result)."""
    return {**payload, DIGEST_KEY: hashlib.sha256(_canonical(payload)).hexdigest()}


def seal_problem(payload: Mapping[str, Any]) -> str | None:
    """Why a result's content is not what was written (None: its digest matches)."""
    recorded = payload.get(DIGEST_KEY)
    if not isinstance(recorded, str):
        return f"it records no {DIGEST_KEY!r} (written by an older trainer, or edited)"
    if hashlib.sha256(_canonical(payload)).hexdigest() != recorded:
        return "its content differs from its digest (edited or damaged after it was written)"
    return None


# Finite weights -------------------------------------------------------------------------

#: safetensors dtype → (bytes per value, mask of the exponent bits): a value whose exponent
#: bits are all set is an infinity or a NaN (IEEE 754; bfloat16 shares float32's exponent).
_FLOATS = {
    "F16": (2, 0x7C00),
    "BF16": (2, 0x7F80),
    "F32": (4, 0x7F800000),
    "F64": (8, 0x7FF0000000000000),
}


def nonfinite_problem(path: str | Path) -> str | None:
    """The first tensor of a safetensors file holding an infinity or a NaN (None: every
    floating-point value is finite). Reads the file's own header; needs numpy."""
    import numpy as np

    path = Path(path)
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return f"{path}: shorter than a safetensors header"
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            return f"{path}: header of {length} bytes"
        try:
            header = json.loads(handle.read(length))
        except ValueError:
            return f"{path}: header is not valid JSON"
        if not isinstance(header, dict):
            return f"{path}: header is not a JSON object"
        data = np.fromfile(handle, dtype=np.uint8)
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict):
            continue
        dtype = _FLOATS.get(entry.get("dtype", ""))
        offsets = entry.get("data_offsets")
        if dtype is None or not isinstance(offsets, list) or len(offsets) != 2:
            continue
        width, mask = dtype
        start, end = offsets
        raw = data[start:end]
        if len(raw) != end - start or len(raw) % width:
            return f"{path}: tensor {name[:60]!r} is cut short"
        values = raw.view(np.dtype(f"<u{width}"))
        bad = int(np.count_nonzero((values & mask) == mask))
        if bad:
            return f"{path}: tensor {name[:60]!r} has {bad} non-finite values (NaN or inf)"
    return None


def nonfinite_weights(folder: str | Path) -> str | None:
    """The first safetensors file under `folder` with non-finite weights, and where."""
    for path in sorted(Path(folder).rglob("*.safetensors")):
        if SKIPPED.intersection(path.relative_to(folder).parts):
            continue
        problem = nonfinite_problem(path)
        if problem is not None:
            return problem
    return None


def adapter_problem(folder: str | Path, expected: str | None) -> str | None:
    """Why an adapter (or model) folder must not be served (None: it may): its files
    differ from the digest the catalogue gives (`expected`; None where its step recorded
    none), or a weight is not finite. What every engine start and adapter load checks."""
    if expected is not None:
        problem = folder_problem(folder, expected)
        if problem is not None:
            return problem
    elif not Path(folder).is_dir():
        return f"{folder}: missing"
    return nonfinite_weights(folder)
