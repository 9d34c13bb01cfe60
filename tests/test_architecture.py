"""The packages' arrows point one way (docs/design.md, "Packages"), read from the source so that an
import inside a function counts too:

    workflowsite (settings, urls, the Celery app) ──▶ workflows
    devtools ──▶ workers ──▶ workflows ──▶ workflows.core (standard library only)

The engine reaches the project's Celery app as Celery's current app, never by importing the project.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENTS_AND_FRAMEWORKS = (
    "django",
    "rest_framework",
    "redis",
    "confluent_kafka",
    "celery",
    "kombu",
    "psycopg",
)
# package → what its modules must never import (workflows.core may import itself only)
FORBIDDEN = {
    "workflows/core": (*CLIENTS_AND_FRAMEWORKS, "workflows", "workers", "devtools", "workflowsite"),
    "workflows": ("workers", "devtools", "workflowsite"),
    "workflowsite": ("workers", "devtools"),
    "workers": ("devtools", "workflowsite"),
}
ALLOWED_INSIDE = {"workflows/core": ("workflows.core",)}


def imported_modules(source: str, package: list[str]) -> list[str]:
    """Every module the source of a module of `package` imports, relative imports made absolute."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                found.append(f"{base}.{node.module}" if node.module else base)
            else:
                found.append(node.module or "")
    return found


def breaks_the_rule(package: str, module: str) -> bool:
    def within(names: tuple[str, ...]) -> bool:
        return any(module == name or module.startswith(f"{name}.") for name in names)

    return not within(ALLOWED_INSIDE.get(package, ())) and within(FORBIDDEN[package])


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_against_the_arrows(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert len(files) >= 5, f"the modules of {package} were not found"
    offending = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        for module in imported_modules(path.read_text(), list(path.relative_to(ROOT).parts[:-1]))
        if breaks_the_rule(package, module)
    ]
    assert offending == []


def test_the_check_catches_imports_against_the_arrows() -> None:
    late = "def f():\n    from ..models import Execution\n    import redis\n    from . import templates\n"
    modules = imported_modules(late, ["workflows", "core"])
    assert modules == ["workflows.models", "redis", "workflows.core"]
    assert [breaks_the_rule("workflows/core", module) for module in modules] == [True, True, False]
    assert breaks_the_rule("workflows", "workers.handler_threads")
    assert breaks_the_rule("workers", "devtools.ledger")
    assert not breaks_the_rule("workers", "workflows.models")
