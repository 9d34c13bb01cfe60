"""Workers depend on the engine, never the reverse: no module under workflows/ imports workers."""

import ast
from pathlib import Path

import workflows

ENGINE = Path(workflows.__file__).parent
# Tooling that still imports the workers' ledger and bench tasks until it moves to the
# development app (issue #13): these leave the engine, so the rule does not cover them.
TOOLING = {"devstack.py", "soak.py", "bench/baseline.py"}


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from … import` in the file names, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def imports_workers(path: Path) -> bool:
    return any(name == "workers" or name.startswith("workers.") for name in imported_modules(path))


def test_no_engine_module_imports_the_workers() -> None:
    modules = [path for path in ENGINE.rglob("*.py") if path.relative_to(ENGINE).as_posix() not in TOOLING]
    assert len(modules) > 50
    assert [str(path.relative_to(ENGINE)) for path in modules if imports_workers(path)] == []


def test_an_import_of_the_workers_is_found_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from workers.handler_threads import invoke\n    return invoke\n")
    assert imports_workers(module)
