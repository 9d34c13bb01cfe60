"""The production image holds no tooling: the build context leaves out devtools/ and tests/, and
production settings install no devtools app and register no benchmark task."""

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.production_env import PRODUCTION

ROOT = Path(__file__).resolve().parent.parent
TOOLING = ("devtools", "tests")
PRODUCTION_ENV = {**PRODUCTION, "DJANGO_SETTINGS_MODULE": "workflowsite.settings"}


def dockerignore_patterns() -> list[tuple[bool, str]]:
    """(is an exception, pattern) per rule of .dockerignore, in order."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, line.lstrip("!").strip("/")))
    return rules


def ignored(path: str, rules: list[tuple[bool, str]]) -> bool:
    """Whether Docker leaves `path` (relative, with /) out of the build context: a rule matches the
    path or a directory above it, the last matching rule decides, `**/` also matches nothing."""
    parts = path.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    decision = False
    for negated, pattern in rules:
        patterns = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(candidate, glob) for candidate in candidates for glob in patterns):
            decision = not negated
    return decision


def test_the_build_context_leaves_out_devtools_and_tests() -> None:
    rules = dockerignore_patterns()
    files = [
        path.relative_to(ROOT).as_posix()
        for top in TOOLING
        for path in (ROOT / top).rglob("*.py")
        if "__pycache__" not in path.parts
    ]
    assert files, "no devtools/ or tests/ files found to check"
    copied = [path for path in files if not ignored(path, rules)]
    assert not copied, f"the image's COPY . . would include {copied[:5]} ({len(copied)} files)"
    assert not ignored("workflows/models.py", rules), ".dockerignore leaves out the engine itself"


def test_the_dockerfile_copies_no_tooling_by_name() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    copies = [line.split()[1:-1] for line in lines if re.match(r"^(COPY|ADD)\s", line)]
    assert copies, "the Dockerfile copies nothing"
    named = [source for sources in copies for source in sources if source.split("/")[0] in TOOLING]
    assert not named, f"the Dockerfile copies {named} into the image"


def test_production_settings_install_no_devtools_and_register_no_benchmark_task() -> None:
    code = (
        "import json, sys, django; django.setup()\n"
        "from django.conf import settings\n"
        "from workflowsite.celery import app\n"
        "app.loader.import_default_modules()\n"
        "print(json.dumps({'apps': settings.INSTALLED_APPS, 'tasks': sorted(app.tasks),"
        " 'devtools_imported': 'devtools' in sys.modules}))\n"
    )

    def run(env: dict[str, str]) -> dict[str, object]:
        environ = {**{k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV}, **env}
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    production = run(PRODUCTION_ENV)
    assert "devtools" not in production["apps"]
    assert "workers.run_nodes" in production["tasks"], "the worker's own task is not registered"
    assert not [task for task in production["tasks"] if "bench" in task], production["tasks"]
    assert not production["devtools_imported"]
    development = run({"DJANGO_SETTINGS_MODULE": "workflowsite.settings", "DJANGO_ENV": "development"})
    assert "devtools" in development["apps"]
    assert "devtools.bench_noop" in development["tasks"], "the benchmark's tasks are not discovered"
