"""The training loop runs any method without asking which (issue #31), read from the source.

What differs between LoRA, full fine-tuning and CGC-LoRA lives in the method objects of
`mtd_trainer/methods.py`; a branch on the method creeping back into `training.py` (a name
compared, a CGC class tested for) would make a new method an edit across the loop again.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "trainer" / "mtd_trainer" / "training.py"
METHODS = ROOT / "trainer" / "mtd_trainer" / "methods.py"

#: Names that only a method object may use: the CGC model and its per-token routing.
METHOD_NAMES = {"CgcModel", "CgcLora", "task_id_tensor"}


def mentions_method(node: ast.AST) -> bool:
    """Whether an expression reads a `method` name or attribute (`config.method`, ...)."""
    return any(
        (isinstance(inner, ast.Name) and inner.id == "method")
        or (isinstance(inner, ast.Attribute) and inner.attr == "method")
        for inner in ast.walk(node)
    )


def method_branches(source: str) -> list[str]:
    """Every place in `source` that asks which training method it runs."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "cgcLora" in node.value:
                found.append(f"line {line}: the string {node.value!r}")
        elif isinstance(node, ast.Name) and node.id in METHOD_NAMES:
            found.append(f"line {line}: the name {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in {"method", *METHOD_NAMES}:
            if node.attr != "method" or ast.unparse(node.value) != "self":
                found.append(f"line {line}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith("cgc"):
            found.append(f"line {line}: imports {node.module}")
        elif isinstance(node, ast.Compare) and mentions_method(node):
            found.append(f"line {line}: compares {ast.unparse(node)}")
    return found


def test_training_py_has_no_method_branches() -> None:
    source = TRAINING.read_text(encoding="utf-8")
    assert "cgcLora" not in source and "CgcModel" not in source
    assert method_branches(source) == []


def test_the_check_catches_the_branches_it_exists_for() -> None:
    """The branches training.py had before the method objects, each one found."""
    branches = [
        'if config.method == "full":\n    pass',
        'if self.config.method == "cgcLora":\n    pass',
        "routed = model.task(name) if isinstance(model, CgcModel) else None",
        "from .cgc import CgcModel, task_id_tensor",
        'if method in ("lora", "cgcLora"):\n    pass',
    ]
    for branch in branches:
        assert method_branches(branch), branch
    # The loop may hold and call its method object.
    assert method_branches("batch.update(self.method.batch_extras(rows))") == []


def test_only_methods_py_reads_the_configured_method() -> None:
    """`training_method` turns `config.method` into the object; no other trainer module
    reads the name (result.json records the object's)."""
    readers = {
        path.name
        for path in TRAINING.parent.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
        and node.attr == "method"
        and ast.unparse(node.value).split(".")[-1] == "config"
    }
    assert readers == {METHODS.name}
