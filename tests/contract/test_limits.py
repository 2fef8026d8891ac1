"""Limits more than one layer enforces are declared once (mtd_contract.limits): no other
module of the product gives one of those names a value of its own."""

from __future__ import annotations

import ast
from pathlib import Path

from mtd_contract import limits

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [ROOT / "operator" / "mtd_operator", ROOT / "trainer" / "mtd_trainer", ROOT / "contract"]
NAMES = {name for name in vars(limits) if name.isupper()}


def assigned_literals(path: Path) -> list[str]:
    """`NAME = <a number>` for the limits' names in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            is_number = isinstance(value, ast.Constant | ast.BinOp)
            for target in targets:
                if isinstance(target, ast.Name) and target.id in NAMES and is_number:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {target.id}")
    return found


def test_no_module_redefines_a_shared_limit():
    own = ROOT / "contract" / "mtd_contract" / "limits.py"
    files = [p for root in PRODUCT for p in root.rglob("*.py") if p != own]
    assert [hit for path in files for hit in assigned_literals(path)] == []


def test_every_layer_reads_the_contract_values():
    from mtd_contract import records
    from mtd_operator.api import spec
    from mtd_operator.gateway import app, source

    assert spec.MAX_LABELS == limits.MAX_LABELS and spec.MAX_LABEL_CHARS == limits.MAX_LABEL_CHARS
    assert records.MAX_LINE_BYTES == limits.MAX_LINE_BYTES
    assert app.MAX_BODY_BYTES == limits.MAX_BODY_BYTES
    assert app.MAX_TEXT_CHARS == limits.MAX_REQUEST_TEXT_CHARS >= limits.MAX_LINE_BYTES
    assert source.MAX_CATALOGUE_BYTES == limits.MAX_CATALOGUE_BYTES
    gateway = app.Gateway.__new__(app.Gateway)
    gateway.app = None
    config = app.server_config(gateway, "127.0.0.1", 0)
    assert config.limit_concurrency == limits.MAX_CONCURRENT_REQUESTS
