"""operator/mtd_operator/cli.py only parses arguments (issue #31): each command's work
lives in the module where it runs (local/, pod/, gateway/, status_view.py), and cli.py
builds the parser and hands each command's arguments to one function. Read with `ast`.

What each function of cli.py may be:
* a parser builder (`build_parser`, `_add_*`): argparse calls only, no control flow;
* a command (`_cmd_*`, named by exactly one `set_defaults(func=...)`): imports, then
  `return product_function(args...)`, the arguments plain (`args.x`, `Path(args.x)`);
* `main`: parse, then `exit_codes.run_command` (exceptions become exit codes there);
* `_version`: the `--version` text, from the installed distribution's metadata.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "operator" / "mtd_operator" / "cli.py"

#: What cli.py may import at module level: argparse and typing; the rest is imported by
#: each command from the product, when it runs.
MODULE_IMPORTS = {"__future__", "argparse", "sys", "collections.abc", "pathlib", "typing"}
PARSER_CALLS = {"ArgumentParser", "add_subparsers", "add_parser", "add_argument",
                "add_argument_group", "add_mutually_exclusive_group", "set_defaults"}  # fmt: skip
#: Statements that would be logic, not parsing.
CONTROL_FLOW = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.Try, ast.TryStar, ast.With,
                ast.AsyncWith, ast.Raise, ast.Match, ast.Global, ast.Nonlocal)  # fmt: skip
#: Conversions a command may apply to an argument on its way to the product.
CONVERSIONS = {"Path"}


def tree() -> ast.Module:
    return ast.parse(CLI.read_text(encoding="utf-8"))


def functions() -> dict[str, ast.FunctionDef]:
    found = {}
    for node in tree().body:
        if isinstance(node, ast.AsyncFunctionDef | ast.ClassDef):
            raise AssertionError(f"cli.py:{node.lineno}: {node.name}: only functions")
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
    return found


def called(node: ast.AST) -> list[str]:
    """The name of every call in `node` (`f` for `f(...)`, `m` for `x.m(...)`)."""
    names = []
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            names.append(func.id if isinstance(func, ast.Name) else getattr(func, "attr", "?"))
    return names


def control_flow(node: ast.AST) -> list[str]:
    return [
        f"line {n.lineno}: {type(n).__name__}"
        for n in ast.walk(node)
        if isinstance(n, CONTROL_FLOW)
    ]


def command_problems(function: ast.FunctionDef) -> list[str]:
    """Why a `_cmd_*` function is more than a hand-over (empty: it is one)."""
    body = list(function.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    imported = set()
    while body and isinstance(body[0], ast.ImportFrom):
        if body[0].level == 0:
            return [f"imports {body[0].module}: a command imports the product, relatively"]
        imported |= {alias.asname or alias.name for alias in body[0].names}
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Return):
        return ["is more than imports and one `return product_function(...)`"]
    call = body[0].value
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        return ["does not return a call of one product function"]
    problems = []
    if call.func.id not in imported:
        problems.append(f"calls {call.func.id}, not a function it imports from the product")
    for argument in [*call.args, *(keyword.value for keyword in call.keywords)]:
        extra = [name for name in called(argument) if name not in CONVERSIONS]
        if extra:
            problems.append(f"computes an argument with {', '.join(extra)}")
    return problems


def test_cli_imports_only_what_parsing_needs():
    for node in tree().body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        assert set(names) <= MODULE_IMPORTS, f"cli.py:{node.lineno}: imports {names}"


def test_cli_has_no_module_level_logic():
    for node in tree().body:
        allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign, ast.AnnAssign)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.If):  # if __name__ == "__main__": sys.exit(main())
            assert ast.unparse(node.test) == "__name__ == '__main__'", node.lineno
            assert [ast.unparse(s) for s in node.body] == ["sys.exit(main())"], node.lineno
            continue
        assert isinstance(node, allowed), f"cli.py:{node.lineno}: {type(node).__name__}"
        if isinstance(node, ast.Assign | ast.AnnAssign):
            assert called(node) == [], f"cli.py:{node.lineno}: computes at import"


def test_every_function_only_parses_or_hands_over():
    problems = []
    for name, function in functions().items():
        if name == "build_parser" or name.startswith("_add_"):
            calls = set(called(function)) - PARSER_CALLS
            builders = {n for n in calls if n.startswith("_add_") or n == "_version"}
            if calls - builders:
                problems.append(f"{name}: calls {sorted(calls - builders)} (a parser builder)")
            problems += [f"{name}: {c}" for c in control_flow(function)]
        elif name.startswith("_cmd_"):
            problems += [f"{name}: {p}" for p in command_problems(function)]
        elif name == "main":
            if set(called(function)) != {"build_parser", "parse_args", "run_command"}:
                problems.append(f"main: calls {called(function)}; it parses and dispatches")
            problems += [f"main: {c}" for c in control_flow(function)]
        elif name == "_version":
            if set(called(function)) != {"version"}:
                problems.append(f"_version: calls {called(function)}")
        else:
            problems.append(f"{name}: not parsing; move it where its command runs")
    assert problems == []


def test_each_command_dispatches_to_its_own_function():
    dispatched = []
    for call in ast.walk(tree()):
        if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "set_defaults":
            for keyword in call.keywords:
                if keyword.arg == "func":
                    assert isinstance(keyword.value, ast.Name), ast.unparse(call)
                    dispatched.append(keyword.value.id)
    commands = sorted(name for name in functions() if name.startswith("_cmd_"))
    assert sorted(dispatched) == commands, "one set_defaults(func=_cmd_x) per command"
    assert len(commands) >= 12  # validate, plan, run, serve, ..., verify


def test_the_check_refuses_logic_in_a_command():
    def problems_of(code: str) -> list[str]:
        (function,) = ast.parse(code).body
        assert isinstance(function, ast.FunctionDef)
        return command_problems(function)

    thin = "def _cmd_x(args):\n    from .m import f\n\n    return f(Path(args.a), args.b)\n"
    assert problems_of(thin) == []
    for code in [
        "def _cmd_x(args):\n    from .m import f\n    print(1)\n    return f(args.a)\n",
        "def _cmd_x(args):\n    from .m import f\n    return f(open(args.a).read())\n",
        "def _cmd_x(args):\n    import json\n    return json.dumps(args.a)\n",
        "def _cmd_x(args):\n    from .m import f\n    try:\n        return f()\n"
        "    except ValueError:\n        return 2\n",
        "def _cmd_x(args):\n    return helper(args)\n",
    ]:
        assert problems_of(code), code
