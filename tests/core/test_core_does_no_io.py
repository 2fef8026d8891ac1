"""The core decides and the drivers do the I/O (docs/architecture.md): no module under
operator/mtd_operator/core/ opens, lists or stats a file, touches a stream, a process or
the network, or imports what does (issue #31). Read with `ast`, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "operator" / "mtd_operator" / "core"
#: Where a first-party package's modules lie, to read what the core imports from them.
SOURCES = {
    "mtd_operator": ROOT / "operator" / "mtd_operator",
    "mtd_contract": ROOT / "contract" / "mtd_contract",
}

#: Modules whose import means I/O: files, streams, processes, the network, the cluster.
IO_MODULES = {
    "os", "pathlib", "shutil", "subprocess", "io", "tempfile", "glob", "fcntl", "mmap", "sys",
    "socket", "http", "urllib", "httpx", "requests", "kubernetes", "kopf", "builtins",
}  # fmt: skip
#: Builtins that read or write.
IO_CALLS = {"open", "print", "input"}
#: Methods of files and paths (pathlib.Path, an open file); no str, dict or list method
#: of the core has these names.
IO_METHODS = {
    "open", "read_text", "read_bytes", "write_text", "write_bytes", "exists", "is_file",
    "is_dir", "is_symlink", "stat", "lstat", "iterdir", "glob", "rglob", "walk", "resolve",
    "mkdir", "unlink", "rmdir", "rename", "touch", "readlink", "symlink_to", "chmod",
    "read", "readline", "readlines", "write", "writelines", "flush", "fileno",
}  # fmt: skip


def io_in(tree: ast.AST, where: str) -> list[str]:
    """Every I/O import and call in `tree`, as `where:line what`."""
    found = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        found += [
            f"{where}:{node.lineno} import {m}" for m in modules if m.split(".")[0] in IO_MODULES
        ]
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in IO_CALLS:
                found.append(f"{where}:{node.lineno} {func.id}()")
            if isinstance(func, ast.Attribute) and func.attr in IO_METHODS:
                found.append(f"{where}:{node.lineno} .{func.attr}()")
    return found


def _module_file(module: str) -> Path | None:
    top, *rest = module.split(".")
    if top not in SOURCES:
        return None
    base = SOURCES[top].joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _absolute(node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = ["mtd_operator", "core"][: 2 - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def imported_io(tree: ast.Module, where: str) -> list[str]:
    """I/O in what the module imports from outside the core (one level: the functions
    and classes it names, as defined in the module it imports them from)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = _absolute(node)
        path = _module_file(module)
        if path is None or path.is_relative_to(CORE):
            continue
        names = {alias.name for alias in node.names}
        source = ast.parse(path.read_text(encoding="utf-8"))
        for definition in source.body:
            if isinstance(definition, ast.FunctionDef | ast.ClassDef) and definition.name in names:
                inner = f"{where}:{node.lineno} {module}.{definition.name}"
                found += io_in(definition, inner)
    return found


def core_modules() -> list[Path]:
    modules = sorted(CORE.rglob("*.py"))
    assert CORE / "profile.py" in modules and CORE / "reconcile.py" in modules
    return modules


def test_no_core_module_does_io():
    found = []
    for path in core_modules():
        where = str(path.relative_to(ROOT))
        found += io_in(ast.parse(path.read_text(encoding="utf-8")), where)
    assert found == [], "the core does no I/O; the drivers read and hand it contents"


def test_the_core_imports_nothing_that_does_io():
    found = []
    for path in core_modules():
        where = str(path.relative_to(ROOT))
        found += imported_io(ast.parse(path.read_text(encoding="utf-8")), where)
    assert found == [], "a core module calls this I/O through an import"


def test_the_check_finds_file_reading():
    for code in [
        "import os",
        "from pathlib import Path",
        "import subprocess",
        "from kubernetes import client",
        "data = open(name).read()",
        "text = path.read_text()",
        "raw = folder.joinpath(name).read_bytes()",
        "ok = path.exists()",
        "names = list(folder.iterdir())",
        "with path.open('rb') as handle: pass",
        "for line in handle.readline(): pass",
    ]:
        assert io_in(ast.parse(code), "x"), code
    assert io_in(ast.parse("'a'.join(sorted(d.items()))"), "x") == []
    # through an import: the contract's file reader, not its line checker
    assert imported_io(ast.parse("from mtd_contract.records import iter_records"), "x")
    assert imported_io(ast.parse("from mtd_contract.records import check_line"), "x") == []
    assert imported_io(ast.parse("from ..data_files import profile_file"), "x")
