"""The import boundaries the contract exists for, read from the source (lazy imports too).

* mtd_contract imports nothing of ours and no torch, kopf or kubernetes;
* `api` does not import `core`; the operator never imports the trainer, nor the trainer
  the operator (it runs as a subprocess of `mtd step`);
* the kopf driver (`kube`), the local driver (`local`), the pod side (`pod`) and the
  gateway import none of each other, and `core` none of them;
* no module imports, directly or through others, itself;
* no function of the operator, the trainer or the benchmarks reaches 100 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"mtd_contract": "contract", "mtd_operator": "operator", "mtd_trainer": "trainer"}


def module_name(path: Path) -> str:
    package_root = ROOT / PACKAGES[path.relative_to(ROOT).parts[1]]
    parts = list(path.relative_to(package_root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports at run time (module level or inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for stmt in node.body
        for inner in ast.walk(stmt)
    }  # annotations only: never imported at run time
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    sources = {
        module_name(path): path
        for folder in PACKAGES.values()
        for path in (ROOT / folder).rglob("*.py")
    }
    return {
        name: {m for m in imports_of(path) if m in sources and m != name}
        for name, path in sources.items()
    }


GRAPH = graph()


def test_the_graph_is_read() -> None:
    assert "mtd_contract.config" in GRAPH["mtd_trainer.training"]
    assert "mtd_operator.pod.publish" in GRAPH["mtd_operator.pod.jobs"]


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("mtd_contract", ("mtd_operator", "mtd_trainer", "torch", "kopf", "kubernetes")),
        ("mtd_operator.api", ("mtd_operator.core", "mtd_operator.kube", "mtd_operator.local")),
        ("mtd_operator", ("mtd_trainer",)),
        ("mtd_trainer", ("mtd_operator",)),
        # The kopf driver, the local driver, the pod side and the gateway are separate
        # packages: each reaches the others' knowledge only through core/, engines/ and
        # the contract (issue #31).
        ("mtd_operator.local", ("mtd_operator.kube", "mtd_operator.pod")),
        ("mtd_operator.kube", ("mtd_operator.local", "mtd_operator.pod")),
        ("mtd_operator.pod", ("mtd_operator.kube", "mtd_operator.local", "mtd_operator.gateway")),
        ("mtd_operator.gateway", ("mtd_operator.kube", "mtd_operator.local", "mtd_operator.pod")),
        (
            "mtd_operator.core",
            ("mtd_operator.kube", "mtd_operator.local", "mtd_operator.pod", "mtd_operator.gateway"),
        ),
    ],
)
def test_no_forbidden_imports(importer: str, forbidden: tuple[str, ...]) -> None:
    bad = []
    for folder in PACKAGES.values():
        for path in (ROOT / folder).rglob("*.py"):
            name = module_name(path)
            if name != importer and not name.startswith(importer + "."):
                continue
            for module in imports_of(path):
                if any(module == f or module.startswith(f + ".") for f in forbidden):
                    bad.append(f"{name} imports {module}")
    assert bad == []


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodule is not a cycle
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert cycles == []


@pytest.mark.parametrize("folder", ["operator/mtd_operator", "trainer/mtd_trainer", "bench"])
def test_no_function_reaches_100_lines(folder: str) -> None:
    """Long functions hide decisions: the operator, the trainer and the benchmarks keep
    each under 100 lines (about 80, unless a comment beside it says why)."""
    long = []
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines >= 100:
                    long.append(f"{path.relative_to(ROOT)}:{node.name}: {lines} lines")
    assert long == []
