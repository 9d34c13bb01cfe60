"""A private copy of the running system for integration tests and the benchmark.

API, scheduler and Celery worker processes on the real Kafka and Redis, with a database of their
own (SQLite file, or PostgreSQL when TEST_DATABASE_URL is set). Each stack gets its own topics,
consumer group and Celery queue, so it never sees another stack's messages.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
PYTHON = sys.executable
TEST_REDIS_DB = 15
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], deadline_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Poll until predicate returns something truthy; fail naming what was awaited."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            result = predicate()
        except requests.RequestException:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(interval_s)


def fresh_database_url(tag: str, workdir: Path) -> tuple[str, Callable[[], None]]:
    """A new empty database for this session, and how to drop it."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        return f"sqlite:///{workdir / 'db.sqlite3'}", lambda: None
    import psycopg

    name = f"wf_test_{tag}"
    admin_url = base

    def run(sql: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql)

    run(f'CREATE DATABASE "{name}"')
    return urlparse(base)._replace(path=f"/{name}").geturl(), lambda: run(
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    )


@dataclass
class Stack:
    """The running system; `url(path)` addresses its API."""

    workdir: Path
    env: dict[str, str]
    port: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def manage(self, *args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run a manage.py command against this stack, as a user would."""
        return subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=check,
            capture_output=True,
            text=True,
            **kwargs,
        )

    def commands(self) -> dict[str, list[str]]:
        return {
            "api": [
                PYTHON,
                "-m",
                "gunicorn",
                "workflowsite.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                "8",
            ],
            "scheduler": [PYTHON, "manage.py", "run_scheduler"],
            "worker": [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "workflowsite",
                "worker",
                "--loglevel",
                "INFO",
                "--pool",
                "threads",
                "--concurrency",
                "8",
                "-Q",
                self.env["CELERY_QUEUE"],
                "--hostname",
                f"worker-{self.port}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
        }

    def start(self, name: str, command_of: str | None = None) -> None:
        """Start a process; `command_of` lets a second scheduler or worker reuse a command."""
        command = self.commands()[command_of or name]
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
        self.processes[name] = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        for cleanup in reversed(self.cleanups):
            cleanup()

    def health(self) -> requests.Response:
        return requests.get(self.url("/health"), timeout=10)

    def submit(self, workflow: dict[str, Any], *, trigger: bool = False) -> str:
        response = requests.post(self.url("/workflows"), json=workflow, timeout=30)
        assert response.status_code == 201, response.text
        execution_id = response.json()["execution_id"]
        if trigger:
            triggered = requests.post(self.url(f"/workflows/{execution_id}/trigger"), timeout=30)
            assert triggered.status_code == 200, triggered.text
        return execution_id

    def status(self, execution_id: str) -> dict[str, Any]:
        response = requests.get(self.url(f"/workflows/{execution_id}"), timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_finished(self, execution_id: str, deadline_s: float = 60.0) -> dict[str, Any]:
        """Poll the status until the execution reaches a final status."""

        def finished() -> dict[str, Any] | None:
            state = self.status(execution_id)
            return state if state["status"] in {"COMPLETED", "FAILED", "CANCELLED"} else None

        return wait_until(finished, deadline_s, f"execution {execution_id} to finish")


def start_stack(extra_env: dict[str, str] | None = None) -> Stack:
    """Migrate a fresh database, create this stack's topics, start API, scheduler and worker."""
    tag = uuid.uuid4().hex[:10]
    workdir = ARTIFACTS / "stack" / tag
    workdir.mkdir(parents=True, exist_ok=True)
    database_url, drop_database = fresh_database_url(tag, workdir)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:6379/{TEST_REDIS_DB}",
        "KAFKA_TOPIC_PREFIX": f"test-{tag}.",
        "SCHEDULER_GROUP_ID": f"test-scheduler-{tag}",
        "CELERY_QUEUE": f"test-{tag}",
        "WORKFLOW_MOCK_LATENCY": "0",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    stack = Stack(workdir=workdir, env=env, port=free_port())
    stack.cleanups.append(drop_database)
    try:
        stack.manage("migrate", "--noinput")
        stack.manage("create_topics", "--partitions", "3")
        stack.cleanups.append(lambda: stack.manage("delete_topics", check=False))
        for name in ("api", "scheduler", "worker"):
            stack.start(name)
        wait_until(lambda: stack.health().status_code == 200, START_DEADLINE_S, "the API's /health to be 200")
    except BaseException:
        stack.close()
        raise
    return stack
