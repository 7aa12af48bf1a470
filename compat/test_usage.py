"""Which of DBOS's tests reach into DBOS internals, read from their source.

A test uses internals when its body (nested functions included), a helper it calls or a
fixture it requests names something from a private dbos module that the shim does not map to
Perdure (``from dbos._sys_db import SystemSchema``), a private module itself
(``import dbos._workflow_commands as wc``), a private attribute (``dbos._sys_db``,
``DBOS._registry``), or runs SQL on DBOS's system tables (``dbos.workflow_status``). The
conftest's database fixtures are the harness, not a test's use.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path

# Private attributes of the standard library and of pytest, not of DBOS.
_PRIVATE_OK = {
    "_asdict",
    "_replace",
    "_fields",
    "_make",
    "_exit",
    "_getframe",
    "_current_frames",
    "_value_",
    "_name_",
    "_nodeid",
    "_is_coroutine",
}
_STDLIB_ROOTS = {
    "os",
    "sys",
    "threading",
    "asyncio",
    "gc",
    "multiprocessing",
    "signal",
    "time",
    "logging",
    "subprocess",
    "inspect",
    "typing",
    "functools",
    "weakref",
    "socket",
    "json",
    "uuid",
    "contextvars",
    "importlib",
    "collections",
    "mock",
    "unittest",
    "pytest",
    "sa",
    "sqlalchemy",
}
# conftest.py functions that prepare databases for every test: the harness the shim serves.
_HARNESS = {
    "reset_global_params",
    "_reset_test_databases",
    "_reset_sharded_system_database",
    "_reset_sharded_run_user_database",
    "_truncate_user_database",
    "pytest_unconfigure",
    "pytest_configure",
    "pytest_collection_modifyitems",
}
_Function = ast.FunctionDef | ast.AsyncFunctionDef
# SQL run straight on DBOS's system tables (its ``dbos`` schema), which Perdure does not have.
_DBOS_SQL = re.compile(
    r"\bdbos\.(workflow_status|operation_outputs|notifications|workflow_events|streams"
    r"|workflow_schedules|application_versions|dbos_migrations|event_dispatch_kv)\b"
)


def private_names(tree: ast.Module, mirrored: Callable[[str, str], bool]) -> set[str]:
    """Names the module binds to unmirrored things of private dbos modules."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            for alias in node.names:
                bound = alias.asname or alias.name
                if (module == "dbos" and alias.name.startswith("_")) or (
                    module.startswith(("dbos._", "dbos.cli")) and not mirrored(module, alias.name)
                ):
                    names.add(bound)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dbos._") and alias.asname:
                    names.add(alias.asname)
    # Module-level constants computed from them: _B = _STREAM_READ_BATCH_SIZE.
    for statement in tree.body:
        if not isinstance(statement, (ast.Assign, ast.AnnAssign)) or statement.value is None:
            continue
        if direct_use(statement.value, names):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def direct_use(body: ast.AST, private: set[str]) -> str | None:
    """The first internal a piece of code names directly, or None."""
    for node in ast.walk(body):
        if isinstance(node, ast.Name) and node.id in private:
            return node.id
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = _DBOS_SQL.search(node.value)
            if found:
                return f"SQL on {found.group(0)}"
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.attr not in _PRIVATE_OK
            and _root_name(node.value) not in _STDLIB_ROOTS
        ):
            return f".{node.attr}"
    return None


def _is_fixture(function: _Function) -> bool:
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
    return False


def _functions(tree: ast.Module) -> Iterator[tuple[str, _Function]]:
    """Module-level functions, and methods as ``Class.method``."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{node.name}.{item.name}", item


def _requested(function: _Function) -> set[str]:
    """The names a function calls or refers to, and the fixtures it requests."""
    names = {node.id for node in ast.walk(function) if isinstance(node, ast.Name)}
    names.update(arg.arg for arg in function.args.args + function.args.kwonlyargs)
    return names


def internal_functions(
    tree: ast.Module, private: set[str], inherited: dict[str, str], *, harness: bool
) -> dict[str, str]:
    """Each function of the module that uses internals, directly or through another: why."""
    functions = dict(_functions(tree))
    found: dict[str, str] = {}
    for name, function in functions.items():
        if harness and (name in _HARNESS or _is_fixture(function)):
            continue
        used = direct_use(function, private)
        if used:
            found[name] = used
    known = {**inherited, **found}
    changed = True
    while changed:
        changed = False
        for name, function in functions.items():
            if name in known or (harness and (name in _HARNESS or _is_fixture(function))):
                continue
            via = sorted(_requested(function) & set(known))
            if via:
                known[name] = found[name] = f"{via[0]} ({known[via[0]]})"
                changed = True
    return found


def internal_tests(tests_dir: Path, mirrored: Callable[[str, str], bool]) -> dict[str, str]:
    """``file::[Class::]test`` of each test that uses internals, with the internal it uses."""
    conftest = ast.parse((tests_dir / "conftest.py").read_text())
    conftest_internal = internal_functions(
        conftest, private_names(conftest, mirrored), {}, harness=True
    )
    result: dict[str, str] = {}
    for path in sorted(tests_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        private = private_names(tree, mirrored)
        internal = internal_functions(tree, private, conftest_internal, harness=False)
        for name, function in _functions(tree):
            test = name.rsplit(".", 1)[-1]
            if not test.startswith("test"):
                continue
            why = internal.get(name)
            if why is None:
                via = sorted(_requested(function) & (set(internal) | set(conftest_internal)))
                if via:
                    why = via[0]
            if why:
                result[f"tests/{path.name}::{name.replace('.', '::')}"] = why
    return result
