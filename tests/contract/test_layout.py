"""The artifact layout is defined once (mtd_contract.layout): no product module outside the
contract spells a step's output folders or result file itself (issue #31)."""

from __future__ import annotations

import ast
from pathlib import Path

from mtd_contract import layout

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [ROOT / "operator" / "mtd_operator", ROOT / "trainer" / "mtd_trainer"]
#: Path components of the layout, as they would appear in a path literal.
NAMES = {layout.RESULT_FILE, layout.ADAPTER_DIR, layout.MODEL_DIR, layout.TASK_ADAPTERS_DIR,
         layout.CGC_STATE_DIR}  # fmt: skip


def path_literals(path: Path) -> list[str]:
    """String pieces used as paths: `/ "adapter"` operands and f-string parts `/adapter`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in NAMES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} / {side.value!r}")
        if isinstance(node, ast.JoinedStr):
            for part in node.values:
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    pieces = set(part.value.replace("/", " ").split())
                    if part.value.startswith("/") and pieces & NAMES:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {part.value!r}")
    return found


def test_no_module_spells_the_layout_itself():
    files = [p for root in PRODUCT for p in root.rglob("*.py")]
    assert [hit for path in files for hit in path_literals(path)] == []


def test_every_method_has_its_artifact_folder():
    from mtd_operator.api.spec import Training

    methods = Training.model_fields["method"].annotation.__args__
    assert set(methods) == set(layout.ARTIFACT_DIRS)
