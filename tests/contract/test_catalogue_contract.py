"""The catalogue's document is defined once, in mtd_contract.catalogue: the operator, `mtd
run`, the gateway and the client import it; none of them declares a catalogue model or
spells a catalogue key of its own (issue #31)."""

from __future__ import annotations

import ast
from pathlib import Path

from pydantic import BaseModel

from mtd_contract.catalogue import Catalogue, CatalogueTask
from mtd_operator.api import status

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [ROOT / "operator" / "mtd_operator", ROOT / "trainer" / "mtd_trainer"]
#: The fields that make a class a catalogue entry (what the gateway routes by).
ENTRY_SIGNATURE = {"adapter", "instruction", "labels"}


def aliases(model: type[BaseModel]) -> set[str]:
    return {f.alias for f in model.model_fields.values() if f.alias}


def status_aliases() -> set[str]:
    models = [v for v in vars(status).values() if isinstance(v, type) and issubclass(v, BaseModel)]
    return {alias for model in models for alias in aliases(model)}


def modules() -> list[tuple[Path, ast.Module]]:
    files = [p for root in PRODUCT for p in sorted(root.rglob("*.py"))]
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in files]


def test_no_product_module_declares_a_catalogue_model():
    found = []
    for path, tree in modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            fields = {
                item.target.id
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
            if ("Catalogue" in node.name and fields) or fields >= ENTRY_SIGNATURE:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}")
    assert found == []


def test_catalogue_keys_are_spelled_only_in_the_contract():
    own = (aliases(Catalogue) | aliases(CatalogueTask)) - status_aliases()
    assert own >= {"promptFormat", "adapterDigest"}  # what the check looks for
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}"
        for path, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in own
    ]
    assert found == []
