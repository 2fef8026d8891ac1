"""docs/architecture.md matches the code (issue #31): its module tables list every module
of the operator, the contract, the trainer and the benchmarks, name no module that is
gone, and the docs point at tests that exist. Files are read; no product module is imported.

The matching rule: a module table is a Markdown table whose header names a folder in its
module column, e.g. ``| module (`operator/mtd_operator/core/`) | what |``. Each `*.py`
spelled in backticks in that column of a row is a path relative to that folder
(`planner.py`, `local/engine.py`, `cli.py`), so `config.py` under
`contract/mtd_contract/` and `config.py` under `operator/mtd_operator/` are told apart.
A module is every `*.py` of the packages below except `__init__.py` and `__main__.py`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = "docs/architecture.md"
DOCS = "docs"
#: The packages whose every module has a row in architecture.md.
PACKAGES = ("operator/mtd_operator", "contract/mtd_contract", "trainer/mtd_trainer", "bench")
NOT_MODULES = {"__init__.py", "__main__.py"}

#: A folder in backticks in a header cell: `operator/mtd_operator/core/`.
FOLDER = re.compile(r"`([\w./-]+/)`")
#: A Python file in backticks in a module cell: `planner.py`, `local/engine.py`.
MODULE = re.compile(r"`([\w./-]+\.py)`")
#: A test path, optionally with a test: tests/core/test_planner.py::test_x, tests/pod.
TEST_PATH = re.compile(r"(?<![\w/.-])(tests/[\w./-]*?)(?:::(\w+))?(?=[^\w./-]|\.(?!\w)|$)")
#: A test file by its name alone: `test_compositions.py`.
TEST_NAME = re.compile(r"`(test_\w+\.py)`")
SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")


@dataclass(frozen=True)
class Row:
    line: int  # 1-based, in the document
    folder: str  # the table's folder, relative to the repository
    module: str  # as the row spells it, relative to the folder

    @property
    def path(self) -> str:
        return self.folder + self.module


def cells(line: str) -> list[str]:
    """A table line's cells; a `|` inside a backtick span is text, not a border."""
    found, current, in_code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            found.append(current)
            current = ""
        else:
            current += char
    return [*found, current]


def module_rows(text: str) -> tuple[list[Row], list[str]]:
    """Every module row of every module table, and the folders the tables name."""
    lines = text.splitlines()
    rows: list[Row] = []
    folders: list[str] = []
    i = 0
    while i < len(lines):
        is_table = lines[i].startswith("|") and i + 1 < len(lines) and SEPARATOR.match(lines[i + 1])
        if not is_table:
            i += 1
            continue
        named = [(n, FOLDER.findall(cell)) for n, cell in enumerate(cells(lines[i]))]
        column, folder = next(((n, found[0]) for n, found in named if found), (None, ""))
        if column is not None:
            folders.append(folder)
        i += 2
        while i < len(lines) and lines[i].startswith("|"):
            if column is not None:
                row = cells(lines[i])
                cell = row[column] if column < len(row) else ""
                rows.extend(Row(i + 1, folder, name) for name in MODULE.findall(cell))
            i += 1
    return rows, folders


def package_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> set[str]:
    """Every module of the packages, as a path relative to the repository."""
    return {
        path.relative_to(root).as_posix()
        for package in packages
        for path in (root / package).rglob("*.py")
        if path.name not in NOT_MODULES and "__pycache__" not in path.parts
    }


def missing_rows(root: Path, doc: str, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    rows, _ = module_rows((root / doc).read_text(encoding="utf-8"))
    listed = {row.path for row in rows}
    return sorted(package_modules(root, packages) - listed)


def rows_without_module(root: Path, doc: str) -> list[str]:
    rows, _ = module_rows((root / doc).read_text(encoding="utf-8"))
    return [f"{doc}:{row.line}: {row.path}" for row in rows if not (root / row.path).is_file()]


def defines(path: Path, name: str) -> bool:
    """Whether a test file defines `name` (a function or class, or a method of a class)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in tree.body:
        if isinstance(node, kinds) and node.name == name:
            return True
        if isinstance(node, ast.ClassDef) and any(
            isinstance(item, kinds) and item.name == name for item in node.body
        ):
            return True
    return False


def broken_test_references(root: Path, docs: list[Path]) -> list[str]:
    """Each `tests/...` path (and `::test`) or bare `test_*.py` name the docs give that
    names nothing in the repository."""
    test_files = {path.name for path in (root / "tests").rglob("test_*.py")}
    broken = []
    for doc in docs:
        where = doc.relative_to(root).as_posix()
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for path, test in TEST_PATH.findall(line):
                target = root / path
                if not target.exists():
                    broken.append(f"{where}:{number}: {path} does not exist")
                elif test and not (target.is_file() and defines(target, test)):
                    broken.append(f"{where}:{number}: {path} defines no {test}")
            for name in TEST_NAME.findall(line):
                if name not in test_files:
                    broken.append(f"{where}:{number}: no test file is named {name}")
    return broken


def doc_files() -> list[Path]:
    return sorted((ROOT / DOCS).glob("*.md"))


# The documents as they are.


def test_architecture_has_a_module_table_under_each_package():
    _, folders = module_rows((ROOT / ARCHITECTURE).read_text(encoding="utf-8"))
    assert all((ROOT / folder).is_dir() for folder in folders), folders
    for package in PACKAGES:
        assert any(folder.startswith(package + "/") for folder in folders), package


def test_every_module_has_a_row_in_architecture_md():
    missing = missing_rows(ROOT, ARCHITECTURE)
    assert missing == [], (
        f"modules with no row in {ARCHITECTURE} (add one to the table whose header names "
        f"their folder): {missing}"
    )


def test_every_row_of_architecture_md_names_a_module_that_exists():
    assert rows_without_module(ROOT, ARCHITECTURE) == []


def test_the_docs_point_at_tests_that_exist():
    assert doc_files(), "no docs/*.md found"
    assert broken_test_references(ROOT, doc_files()) == []


# The rule itself, on a repository made for it: a new module without a row fails.


def make_repo(root: Path, doc: str) -> None:
    for module in ("pkg/a.py", "pkg/__init__.py", "pkg/__main__.py", "pkg/sub/b.py"):
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / module).write_text("")
    (root / "tests" / "core").mkdir(parents=True)
    (root / "tests" / "core" / "test_x.py").write_text("def test_y():\n    pass\n")
    (root / "docs").mkdir()
    (root / "docs" / "arch.md").write_text(doc)


DOC = """# Arch

| part | module (`pkg/`) | what |
|---|---|---|
| a | `a.py` | the a, `x|y` kept in one cell |
| b | `sub/b.py` | the b; `tests/core/test_x.py::test_y` |

| module | what |
|---|---|
| `gone.py` | a table naming no folder is not a module table |
"""


def test_a_module_added_without_a_row_is_reported(tmp_path):
    make_repo(tmp_path, DOC)
    assert missing_rows(tmp_path, "docs/arch.md", ("pkg",)) == []
    assert rows_without_module(tmp_path, "docs/arch.md") == []
    (tmp_path / "pkg" / "sub" / "c.py").write_text("")
    assert missing_rows(tmp_path, "docs/arch.md", ("pkg",)) == ["pkg/sub/c.py"]


def test_a_row_for_a_removed_module_is_reported(tmp_path):
    make_repo(tmp_path, DOC)
    (tmp_path / "pkg" / "a.py").unlink()
    assert rows_without_module(tmp_path, "docs/arch.md") == ["docs/arch.md:5: pkg/a.py"]


def test_a_missing_test_file_or_test_is_reported(tmp_path):
    make_repo(tmp_path, DOC)
    doc = tmp_path / "docs" / "arch.md"
    assert broken_test_references(tmp_path, [doc]) == []
    doc.write_text(
        "See tests/core/test_x.py::test_z, tests/core/test_gone.py and `test_other.py`.\n"
        "The folder tests/core. The folder tests/nothing/.\n"
    )
    assert broken_test_references(tmp_path, [doc]) == [
        "docs/arch.md:1: tests/core/test_x.py defines no test_z",
        "docs/arch.md:1: tests/core/test_gone.py does not exist",
        "docs/arch.md:1: no test file is named test_other.py",
        "docs/arch.md:2: tests/nothing/ does not exist",
    ]
