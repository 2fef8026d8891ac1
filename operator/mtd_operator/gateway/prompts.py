"""The one place the gateway imports prompt formatting from (torch-free).

Training and serving must format a task's prompt identically; this shim keeps the import
of that shared definition in one line.
"""

from mtd_trainer.prompts import messages

__all__ = ["messages"]
