"""The tests' own contract: a test file's folder sets its layer (tests/conftest.py)."""

from __future__ import annotations

import re

from tests.conftest import HERE, LAYER_MARKERS, LAYERS, layer_problem

IMPORTS_EMULATOR = re.compile(r"^\s*(from|import)\s+k8s_emulator\b", re.MULTILINE)


def test_every_layer_folder_exists_and_each_layer_is_a_registered_marker(pytestconfig):
    registered = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert registered >= LAYER_MARKERS
    assert all((HERE / folder).is_dir() for folder in LAYERS)


def test_a_file_in_a_layer_folder_is_in_that_layer_with_or_without_its_own_marker():
    assert layer_problem(HERE / "core" / "test_x.py", set()) is None
    assert layer_problem(HERE / "trainer" / "test_x.py", {"trainer", "slow"}) is None


def test_a_file_in_no_layer_folder_is_refused_with_the_folders_to_choose_from():
    for path in (HERE / "test_x.py", HERE / "support" / "test_x.py"):
        problem = layer_problem(path, set())
        assert problem and "in no layer folder" in problem
        assert "tests/core/ (unit)" in problem and "tests/trainer/ (trainer)" in problem


def test_another_layers_marker_is_refused():
    problem = layer_problem(HERE / "core" / "test_x.py", {"trainer"})
    assert problem == (
        "tests/core/test_x.py: marked trainer, but tests/core/ is the unit layer; "
        "drop the marker (the folder sets it) or move the file"
    )


def test_a_file_outside_tests_is_refused():
    problem = layer_problem(HERE.parent / "bench" / "test_x.py", set())
    assert problem and "not under tests/" in problem


def test_the_unit_layer_imports_no_emulator():
    """Pure tests stay pure: the API emulator belongs to the operator layer."""
    unit = [folder for folder, layer in LAYERS.items() if layer == "unit"]
    offenders = [
        str(path.relative_to(HERE))
        for folder in unit
        for path in sorted((HERE / folder).rglob("*.py"))
        if IMPORTS_EMULATOR.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
