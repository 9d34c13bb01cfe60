"""The core stays pure: no module of workflows/core imports a framework, a client or the rest of
the engine (read from the source, so an import inside a function counts too)."""

import ast
from pathlib import Path

import workflows.core

CORE = Path(workflows.core.__file__).parent
FORBIDDEN = ("django", "rest_framework", "redis", "confluent_kafka", "celery", "kombu", "psycopg", "workers")


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports, relative imports made absolute."""
    package = ["workflows", "core", *path.relative_to(CORE).parts[:-1]]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                found.append(f"{base}.{node.module}" if node.module else base)
            else:
                found.append(node.module or "")
    return found


def outside_core(module: str) -> bool:
    top = module.split(".")[0]
    if top in FORBIDDEN:
        return True
    return top == "workflows" and not (module == "workflows.core" or module.startswith("workflows.core."))


def test_core_imports_nothing_but_the_standard_library_and_itself() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 6, f"the core's modules were not found under {CORE}"
    offending = [
        f"{path.relative_to(CORE)} imports {module}"
        for path in files
        for module in imported_modules(path)
        if outside_core(module)
    ]
    assert offending == []


def test_the_check_catches_an_import_of_the_engine_or_a_client() -> None:
    assert outside_core("django.db")
    assert outside_core("workflows.models")
    assert outside_core("workflows")
    assert outside_core("workers.tasks")
    assert outside_core("confluent_kafka")
    assert not outside_core("workflows.core.retry")
    assert not outside_core("json")
