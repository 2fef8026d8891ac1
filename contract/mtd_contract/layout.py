"""Where a step's outputs lie inside its output folder: written by the trainer, read by the
operator (the core's paths, serving, digests). One definition, so the two sides cannot
drift: a renamed folder is an import both see.

    <output>/result.json           the step's result (written last: its presence = done)
    <output>/adapter/              method lora, a baseline, a composition: a peft adapter
    <output>/model/                method full: the fine-tuned model and its tokenizer
    <output>/adapters/<task>/      method cgcLora: one plain LoRA adapter per task
    <output>/cgc/                  method cgcLora: the experts and gates stage 2 resumes
"""

from __future__ import annotations

RESULT_FILE = "result.json"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
TASK_ADAPTERS_DIR = "adapters"
CGC_STATE_DIR = "cgc"
GATES_FILE = "gates.json"

#: The artifact folder a training step of each method writes.
ARTIFACT_DIRS: dict[str, str] = {
    "lora": ADAPTER_DIR,
    "full": MODEL_DIR,
    "cgcLora": TASK_ADAPTERS_DIR,
}


def artifact_dir(method: str) -> str:
    """The folder (inside the step's output) holding what a training step of `method`
    produced; ValueError naming the allowed methods for another."""
    try:
        return ARTIFACT_DIRS[method]
    except KeyError:
        raise ValueError(f"method {method!r}: allowed {', '.join(ARTIFACT_DIRS)}") from None


def task_adapter_dir(task: str) -> str:
    """CGC-LoRA: the folder of `task`'s exported adapter, inside the step's output."""
    return f"{TASK_ADAPTERS_DIR}/{task}"


def served_folders(method: str, tasks: list[str]) -> list[str]:
    """The folders a training step of `method` writes for serving: one adapter per task for
    CGC-LoRA, else its one artifact folder."""
    if method == "cgcLora":
        return [task_adapter_dir(task) for task in tasks]
    return [artifact_dir(method)]
