"""Test layers follow folders: the folder a test file sits in gives it its layer marker.

A test file outside the folders below, or carrying another layer's marker, stops the
collection with a message saying where it belongs: a test never lands in a layer silently.
`slow` (and `timeout`) stay markers a test sets itself; run one layer with
`make test-<layer>` or `pytest -m <layer>`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

# folder under tests/ -> layer (a marker registered in pyproject.toml)
LAYERS: dict[str, str] = {
    "core": "unit",
    "kube": "unit",
    "pod": "unit",
    "contract": "unit",
    "bench": "unit",
    "examples": "unit",
    "trainer": "trainer",
    "gateway": "serving",
    "engine": "engine",
    "local": "local",
    "emulator": "operator",
    "operator": "operator",
    "reliability": "operator",
    "chart": "chart",
}
LAYER_MARKERS = frozenset(LAYERS.values())


def layer_problem(path: Path, markers: set[str]) -> str | None:
    """Why a test at `path` with these marker names is in no layer, or None if it is."""
    try:
        parts = path.resolve().relative_to(HERE).parts
    except ValueError:
        return f"{path}: not under tests/; test files live in tests/<layer folder>/"
    folder = parts[0] if len(parts) > 1 else ""
    layer = LAYERS.get(folder)
    if layer is None:
        where = ", ".join(f"tests/{name}/ ({LAYERS[name]})" for name in sorted(LAYERS))
        return f"tests/{'/'.join(parts)}: in no layer folder; move it into one of {where}"
    other = sorted((markers & LAYER_MARKERS) - {layer})
    if other:
        return (
            f"tests/{'/'.join(parts)}: marked {', '.join(other)}, but tests/{folder}/ is the "
            f"{layer} layer; drop the marker (the folder sets it) or move the file"
        )
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems: dict[str, None] = {}
    for item in items:
        problem = layer_problem(item.path, {mark.name for mark in item.iter_markers()})
        if problem:
            problems[problem] = None
            continue
        folder = item.path.resolve().relative_to(HERE).parts[0]
        item.add_marker(getattr(pytest.mark, LAYERS[folder]))
    if problems:
        raise pytest.UsageError("test layers:\n  " + "\n  ".join(problems))
