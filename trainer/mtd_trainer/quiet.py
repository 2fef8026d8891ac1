"""Library warnings we cannot fix at the source, filtered by exact message.

Each entry names the library that warns and why it is harmless here; anything else
still warns. Applied by the trainer and server entrypoints.
"""

from __future__ import annotations

import warnings

KNOWN = (
    # peft 0.21 (PeftModel.__init__) reads transformers 5's deprecated alias
    # `is_gradient_checkpointing`; nothing of ours calls it.
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
)


def silence_known_warnings() -> None:
    for category, message in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category)
