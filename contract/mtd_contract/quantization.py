"""Whether a machine can load a base model in 4-bit NF4 (QLoRA), one message for both
askers: `mtd validate` (before a run, on the machine that will run it) and the trainer
(in the pod, where the operator cannot look). Pure: the callers ask torch about CUDA.

NF4 needs bitsandbytes' CUDA kernels: a CUDA device and the `bitsandbytes` package (the
trainer image's `cuda` extra; never part of the CPU dev environment).
"""

from __future__ import annotations

import importlib.util

NF4 = "nf4"


def nf4_unavailable(cuda: bool) -> str | None:
    """Why NF4 cannot run on a machine with(out) `cuda` and this Python (None: it can)."""
    if not cuda:
        return "no CUDA device (bitsandbytes' 4-bit kernels need one)"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "the bitsandbytes package is not installed (the trainer image's cuda extra)"
    return None


def nf4_error(field: str, cuda: bool) -> str | None:
    """The message naming `field` when NF4 cannot run here."""
    reason = nf4_unavailable(cuda)
    if reason is None:
        return None
    return (
        f"{field}: nf4 loads the base in 4-bit on CUDA with bitsandbytes, which this machine "
        f"cannot do ({reason}); allowed here: none"
    )
