"""How a task's example becomes a chat message: one definition for training and serving.

Training formats `user_message(...)` with the tokenizer's chat template and learns the
answer; the client sends the same message to `/v1/chat/completions`, where the server
(vLLM or TGI) applies the same template. No torch here: the client imports this.
"""

from __future__ import annotations


def user_message(instruction: str, text: str, labels: list[str] | None = None) -> str:
    """The user turn for one example; classification prompts list the allowed labels."""
    parts = [instruction.strip()]
    if labels:
        parts.append("Answer with one of: " + ", ".join(labels) + ".")
    parts.append(text.strip())
    return "\n\n".join(parts)


def messages(instruction: str, text: str, labels: list[str] | None = None) -> list[dict]:
    """Chat messages for one example (no system turn: templates differ in how they add one)."""
    return [{"role": "user", "content": user_message(instruction, text, labels)}]


def plain_prompt(instruction: str, text: str, labels: list[str] | None = None) -> str:
    """The prompt for tokenizers without a chat template; the answer follows it directly."""
    return f"### Instruction:\n{user_message(instruction, text, labels)}\n\n### Response:\n"
