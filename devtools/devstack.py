"""A private copy of the running system for integration tests and the benchmark.

API, scheduler and Celery worker processes on the real Kafka and Redis, with a database of their
own (SQLite file, or PostgreSQL when TEST_DATABASE_URL is set). Each stack gets its own topics,
consumer group and Celery queue, so it never sees another stack's messages.

Fault tests and the soak ask for private services instead (`private_redis`, `private_kafka`): a
redis-server and a single-node KRaft broker of the stack's own, on free ports, that they may stop,
kill and restart without disturbing anyone else's stack on the shared ones.
"""

import base64
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import redis
import requests
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from devtools import ledger
from devtools.api_client import ApiClient
from workflows.models import TERMINAL_EXECUTION_STATUSES, NodeStatus

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
PYTHON = sys.executable
TEST_REDIS_DB = 15
WORKER_POOL = "threads"
WORKER_CONCURRENCY = 8
CORE_PROCESSES = ("api", "scheduler", "worker")
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 10.0
KAFKA_LIBS = ROOT / ".services" / "kafka" / "libs"
KAFKA_PROPERTIES = ROOT / "services" / "kafka" / "server.properties"  # shared with bin/services
START = str(ROOT / "bin" / "start")  # each process's one command line
KAFKA_HEAP = "-Xmx384m"
KAFKA_START_DEADLINE_S = 90.0
KAFKA_STOP_DEADLINE_S = 30.0
KAFKA_METADATA_TIMEOUT_S = 2.0
SERVICE_POLL_INTERVAL_S = 0.25
LOG_TAIL_CHARS = 3000
LEDGER_FILE = "ledger.jsonl"


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


def launch(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a process in a session of its own (so a signal reaches all of it), logging to a file."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_process(
    process: subprocess.Popen, sig: int = signal.SIGTERM, deadline_s: float = STOP_DEADLINE_S
) -> None:
    """Signal the process's whole session; one that outlives the deadline gets SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(deadline_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-LOG_TAIL_CHARS:] if path.exists() else "(no log)"


@dataclass
class PrivateService:
    """A server process of one stack's own, on a free port, in its own directory; stop and start
    it at will. Subclasses say how to run it and how to tell that it answers."""

    name = "service"
    start_deadline_s = START_DEADLINE_S
    stop_deadline_s = STOP_DEADLINE_S
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Whatever must exist before the process starts."""
        self.directory.mkdir(parents=True, exist_ok=True)

    def answers(self) -> bool:
        raise NotImplementedError

    def launch(self) -> None:
        """Start the process without waiting for it to answer."""
        self.prepare()
        self.process = launch(self.command(), self.log_path)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if not self.running:
                raise RuntimeError(
                    f"{self.name} exited while starting; {self.log_path}:\n{log_tail(self.log_path)}"
                )
            return self.answers()

        wait_until(ready, self.start_deadline_s, f"{self.name} on port {self.port}", SERVICE_POLL_INTERVAL_S)

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_process(self.process, sig, self.stop_deadline_s)
            self.process = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()


@dataclass
class PrivateRedis(PrivateService):
    """A redis-server without persistence: every start, a restart included, begins EMPTY."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    def prepare(self) -> None:
        super().prepare()
        (self.directory / "dump.rdb").unlink(missing_ok=True)

    def answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False


@dataclass
class PrivateKafka(PrivateService):
    """A single-node KRaft broker (broker and controller in one JVM), from the jars bin/services
    fetched; its data directory outlives a restart, so topics and committed offsets do too."""

    name = "kafka"
    start_deadline_s = KAFKA_START_DEADLINE_S
    stop_deadline_s = KAFKA_STOP_DEADLINE_S
    controller_port: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def properties(self) -> str:
        """The configuration bin/services writes (services/kafka/server.properties), on this
        broker's ports and directory."""
        return string.Template(KAFKA_PROPERTIES.read_text()).substitute(
            KAFKA_PORT=self.port,
            KAFKA_CONTROLLER_PORT=self.controller_port,
            KAFKA_LOG_DIRS=self.data_dir,
            KAFKA_PARTITIONS=3,
        )

    def prepare(self) -> None:
        """Write the configuration; format the storage the first time only."""
        super().prepare()
        if not KAFKA_LIBS.is_dir():
            raise RuntimeError(f"no Kafka jars in {KAFKA_LIBS}: run bin/services up once")
        self.config_path.write_text(self.properties())
        if (self.data_dir / "meta.properties").exists():
            return
        with open(self.log_path, "ab") as log:
            subprocess.run(
                [
                    *self.java(),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id(),
                    "-c",
                    str(self.config_path),
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )

    def java(self) -> list[str]:
        return [
            "java",
            KAFKA_HEAP,
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS",
            "-cp",
            f"{KAFKA_LIBS}/*",
        ]

    def command(self) -> list[str]:
        return [*self.java(), "kafka.Kafka", str(self.config_path)]

    def answers(self) -> bool:
        """A real metadata request lists a broker."""
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap, "log_level": 0, "error_cb": ignore_kafka_error}
        )
        try:
            return bool(admin.list_topics(timeout=KAFKA_METADATA_TIMEOUT_S).brokers)
        except KafkaException:
            return False

    def remove_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


def cluster_id() -> str:
    """A random KRaft cluster id, as `StorageTool random-uuid` prints it (without a JVM start)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def ignore_kafka_error(error: KafkaError) -> None:
    """Connection errors are expected while a broker starts or is stopped on purpose."""


@dataclass
class Stack:
    """The running system; `url(path)` addresses its API."""

    workdir: Path
    env: dict[str, str]
    port: int
    worker_pool: str = WORKER_POOL
    worker_concurrency: int = WORKER_CONCURRENCY
    worker_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    process_names: dict[int, str] = field(default_factory=dict)  # every pid started, to its name
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    redis: PrivateRedis | None = None
    kafka: PrivateKafka | None = None

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
        """The command lines: bin/start's, as every deployment runs them (`process_env` adapts them)."""
        return {
            "api": [START, "api"],
            "scheduler": [START, "scheduler"],
            "worker": [START, "worker", "--without-gossip", "--without-mingle"],
        }

    def process_env(self, name: str, process: str) -> dict[str, str]:
        """What bin/start reads for `process` run as `name`: this interpreter, the stack's port,
        one gunicorn process, the worker's pool, concurrency and Celery node name."""
        env = {**self.env, "PYTHON": PYTHON}
        if process == "api":
            env.update(API_BIND=f"127.0.0.1:{self.port}", API_WORKERS="1", API_THREADS="8")
        if process == "worker":
            env.update(
                WORKER_POOL=self.worker_pool,
                WORKER_CONCURRENCY=str(self.worker_concurrency),
                WORKER_HOSTNAME=self.worker_hostname(name),
                **self.worker_env,
            )
        return env

    def worker_hostname(self, name: str) -> str:
        """The Celery node name of worker process `name`: what its nodes show as their `worker`."""
        return f"{name}-{self.port}@{socket.gethostname()}"

    def start(
        self, name: str, command_of: str | None = None, extra_env: dict[str, str] | None = None
    ) -> None:
        """Start a process; `command_of` lets a second scheduler or worker reuse a command,
        `extra_env` sets variables for this process only."""
        process = command_of or name
        env = {**self.process_env(name, process), **(extra_env or {})}
        self.processes[name] = launch(self.commands()[process], self.workdir / f"{name}.log", env)
        self.process_names[self.processes[name].pid] = name

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop a process: SIGTERM lets it finish cleanly, SIGKILL is a crash."""
        stop_process(self.processes.pop(name), sig)

    @property
    def ledger_path(self) -> Path:
        return self.workdir / LEDGER_FILE

    def invocations(self) -> list[ledger.Invocation]:
        """Every handler invocation of the stack's workers so far (devtools/ledger.py); the pid
        names its process through `process_names`."""
        return ledger.read(self.ledger_path)

    def alive(self, name: str) -> bool:
        return name in self.processes and self.processes[name].poll() is None

    def running_nodes(self, name: str, execution_ids: Iterable[str]) -> list[tuple[str, str]]:
        """(execution id, node id) of each node that worker process `name` is running, as the
        status endpoint shows it (a worker marks its node RUNNING in the mirror when it starts)."""
        hostname = self.worker_hostname(name)
        return [
            (execution_id, node_id)
            for execution_id in execution_ids
            for node_id, detail in self.status(execution_id)["nodes"].items()
            if detail["status"] == NodeStatus.RUNNING and detail["worker"] == hostname
        ]

    def restore(self, names: Iterable[str] = CORE_PROCESSES) -> None:
        """Make the stack whole again after faults: its own services up, the processes `names`
        running (restarted if they died or were killed), every other process stopped."""
        for service in (self.redis, self.kafka):
            if service is not None and not service.running:
                service.start()
        wanted = set(names)
        for name in [name for name in self.processes if name not in wanted or not self.alive(name)]:
            self.stop(name)
        for name in wanted - set(self.processes):
            self.start(name)
        wait_until(lambda: self.health().status_code == 200, START_DEADLINE_S, "the API's /health to be 200")

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        for cleanup in reversed(self.cleanups):
            cleanup()

    @cached_property
    def api(self) -> ApiClient:
        """The stack's API, with its token for writes when it wants one."""
        return ApiClient(self.url(""), self.env.get("WORKFLOWS_API_TOKEN", ""))

    def health(self) -> requests.Response:
        return self.api.health()

    def submit(self, workflow: dict[str, Any], *, trigger: bool = False) -> str:
        return self.api.submit(workflow, trigger=trigger)

    def status(self, execution_id: str) -> dict[str, Any]:
        return self.api.status(execution_id)

    def wait_finished(self, execution_id: str, deadline_s: float = 60.0) -> dict[str, Any]:
        """Poll the status until the execution reaches a final status."""

        def finished() -> dict[str, Any] | None:
            state = self.status(execution_id)
            return state if state["status"] in TERMINAL_EXECUTION_STATUSES else None

        return wait_until(finished, deadline_s, f"execution {execution_id} to finish")

    def events(self, execution_id: str) -> list[dict[str, Any]]:
        """The execution's history, oldest first."""
        return self.api.events(execution_id)


def start_stack(
    extra_env: dict[str, str] | None = None,
    *,
    worker_pool: str = WORKER_POOL,
    worker_concurrency: int = WORKER_CONCURRENCY,
    worker_env: dict[str, str] | None = None,
    private_redis: bool = False,
    private_kafka: bool = False,
) -> Stack:
    """Migrate a fresh database, create this stack's topics, start API, scheduler and worker.

    `worker_pool` and `worker_concurrency` are the Celery worker's --pool and --concurrency;
    `worker_env` is environment for the worker processes only (the benchmark gives them a
    result backend that the scheduler must not see).
    `private_redis` / `private_kafka` give the stack a Redis / Kafka of its own (`stack.redis`,
    `stack.kafka`) instead of the shared ones; `extra_env` still has the last word.
    """
    tag = uuid.uuid4().hex[:10]
    workdir = ARTIFACTS / "stack" / tag
    workdir.mkdir(parents=True, exist_ok=True)
    database_url, drop_database = fresh_database_url(tag, workdir)
    own_redis = PrivateRedis(workdir / "redis") if private_redis else None
    own_kafka = PrivateKafka(workdir / "kafka") if private_kafka else None
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:6379/{TEST_REDIS_DB}",
        "KAFKA_TOPIC_PREFIX": f"test-{tag}.",
        "SCHEDULER_GROUP_ID": f"test-scheduler-{tag}",
        "CELERY_QUEUE": f"test-{tag}",
        "WORKFLOW_MOCK_LATENCY": "0",
        "PYTHONUNBUFFERED": "1",
        "WORKFLOW_INVOCATION_LEDGER": str(workdir / LEDGER_FILE),
        **({"REDIS_URL": own_redis.url, "CELERY_BROKER_URL": own_redis.url} if own_redis else {}),
        **({"KAFKA_BOOTSTRAP_SERVERS": own_kafka.bootstrap} if own_kafka else {}),
        **(extra_env or {}),
    }
    stack = Stack(
        workdir=workdir,
        env=env,
        port=free_port(),
        worker_pool=worker_pool,
        worker_concurrency=worker_concurrency,
        worker_env=worker_env or {},
        redis=own_redis,
        kafka=own_kafka,
    )
    stack.cleanups.append(drop_database)
    try:
        start_private_services(stack)
        stack.manage("migrate", "--noinput")
        if stack.kafka is not None:
            stack.kafka.wait_ready()
        stack.manage("create_topics", "--partitions", "3")
        if stack.kafka is None:
            stack.cleanups.append(lambda: stack.manage("delete_topics", check=False))
        for name in CORE_PROCESSES:
            stack.start(name)
        wait_until(lambda: stack.health().status_code == 200, START_DEADLINE_S, "the API's /health to be 200")
    except BaseException:
        stack.close()
        raise
    return stack


def start_private_services(stack: Stack) -> None:
    """Start the stack's own Redis; launch its own Kafka (the caller waits for it, as the JVM
    boots while the database is migrated). Closing the stack stops both and drops Kafka's data."""
    if stack.kafka is not None:
        kafka = stack.kafka
        stack.cleanups.append(kafka.remove_data)
        stack.cleanups.append(kafka.stop)
        kafka.launch()
    if stack.redis is not None:
        stack.cleanups.append(stack.redis.stop)
        stack.redis.start()
