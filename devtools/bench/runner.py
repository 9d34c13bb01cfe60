"""Run the benchmark's shapes against a private stack and collect what each one measures.

Times come from the engine's own timestamps where it has them (queued_at, started_at,
finished_at, written on this one machine), so how often the bench polls does not change them.
"""

import json
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from devtools.api_client import error_summary
from devtools.bench import procfs, shapes
from devtools.bench.baseline import RESULT_BACKEND_URL, Canvas
from devtools.bench.executions import ShapeTimeout, epoch, finished_executions, wait_none_running
from devtools.bench.profile import PySpy
from devtools.bench.shapes import Sizes
from devtools.devstack import Stack, start_stack
from workflows.core.dag import parse_workflow
from workflows.handlers.registry import handler_names

SHAPES = ("canvas", "hop_latency", "fan_out", "throughput", "definitions", "cost")
PROFILED_PROCESSES = ("scheduler", "worker", "api")
CLIENT_THREADS = 8
PARSE_REPEATS = 3
IDLE_SAMPLE_S = 2.0
WARM_UP_DEADLINE_S = 60.0
MIB = 1024 * 1024


@dataclass
class ShapeResult:
    """What one shape measured: numbers in `metrics`, what it ran in `params`, remarks in `notes`."""

    status: str = "ok"
    metrics: dict[str, float | None] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class Bench:
    """One benchmark run: the stack, the sizes, and what it created there (to clean up)."""

    stack: Stack
    sizes: Sizes
    canvas: Canvas
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    execution_ids: list[str] = field(default_factory=list)

    def name(self, label: str) -> str:
        """A name no other execution contains, so a list query finds exactly this group."""
        return f"bench-{self.tag}-{label}-{uuid.uuid4().hex[:6]}"

    def deadline(self, seconds: float | None = None) -> float:
        return time.monotonic() + (seconds or self.sizes.deadline_s)

    def pid(self, process: str) -> int:
        return self.stack.processes[process].pid

    def submit(self, workflow: dict[str, Any]) -> str:
        execution_id = self.stack.api.submit(workflow)
        self.execution_ids.append(execution_id)
        return execution_id

    def run_one(self, workflow: dict[str, Any], deadline: float) -> tuple[str, float, dict[str, Any]]:
        """Submit, then trigger and wait: the id, the trigger time (epoch s) and the finished row."""
        execution_id = self.submit(workflow)
        triggered_at = time.time()
        self.stack.api.trigger(execution_id)
        wait_none_running(self.stack, workflow["name"], deadline)
        (row,) = finished_executions(self.stack, workflow["name"])
        return execution_id, triggered_at, row

    def warm_up(self) -> None:
        """Open every connection and join the consumer group before anything is timed; in a full
        run also push a few thousand messages through, since a broker just started is slower
        until its JVM has compiled the hot paths (hop p50 10.5 ms instead of 6 in a first run)."""
        self.run_one(shapes.chain(3, self.name("warm-up")), self.deadline(WARM_UP_DEADLINE_S))
        self.canvas.run_chain(3, WARM_UP_DEADLINE_S)
        count = self.sizes.warm_up_executions
        if count:
            name = self.name("warm-up-load")
            workflow = shapes.layered(self.sizes.throughput_layers, self.sizes.throughput_width, name)
            with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                ids = list(pool.map(lambda _: self.submit(workflow), range(count)))
                list(pool.map(lambda execution_id: self.stack.api.trigger(execution_id), ids))
            wait_none_running(self.stack, name, self.deadline(WARM_UP_DEADLINE_S))

    def close(self) -> None:
        """Drop what the run left in Redis: the mirror hashes and the canvas results."""
        keys = [f"wf:exec:{execution_id}" for execution_id in self.execution_ids]
        if keys:
            redis.Redis.from_url(self.stack.env["REDIS_URL"]).delete(*keys)
        self.canvas.close()


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def canvas(bench: Bench) -> ShapeResult:
    """Celery's own chain and chord of no-op tasks, the same sizes as our chain and fan-out, and as
    many tasks as the throughput shape runs nodes, sent at once without results."""
    sizes = bench.sizes
    stream = sizes.throughput_executions * sizes.throughput_nodes
    result = ShapeResult(
        params={"chain_length": sizes.chain_length, "chord_width": sizes.fan_out_width, "stream": stream}
    )
    chain_s = bench.canvas.run_chain(sizes.chain_length, sizes.deadline_s)
    chord_s = bench.canvas.run_chord(sizes.fan_out_width, sizes.deadline_s)
    stream_s = bench.canvas.run_stream(stream, sizes.deadline_s)
    result.metrics = {
        "chain_wall_ms": ms(chain_s),
        "chain_per_hop_ms": ms(chain_s / sizes.chain_length),
        "chord_wall_ms": ms(chord_s),
        "stream_tasks_per_s": round(stream / stream_s, 1),
    }
    return result


def hop_latency(bench: Bench) -> ShapeResult:
    """A linear chain: what each hop costs between a parent finishing and its child starting."""
    length = bench.sizes.chain_length
    result = ShapeResult(params={"chain_length": length, "hops": length - 1})
    execution_id, triggered_at, row = bench.run_one(
        shapes.chain(length, bench.name("chain")), bench.deadline()
    )
    nodes = bench.stack.status(execution_id)["nodes"]
    gaps: dict[str, list[float]] = {"hop": [], "ready_to_queued": [], "queued_to_started": []}
    for i in range(1, length):
        parent, child = nodes[f"n{i - 1}"], nodes[f"n{i}"]
        parent_finished = epoch(parent["finished_at"])
        queued, started = epoch(child["queued_at"]), epoch(child["started_at"])
        gaps["hop"].append(started - parent_finished)
        gaps["ready_to_queued"].append(queued - parent_finished)
        gaps["queued_to_started"].append(started - queued)
    for kind, values in gaps.items():
        result.metrics[f"{kind}_p50_ms"] = ms(percentile(values, 50))
        result.metrics[f"{kind}_p99_ms"] = ms(percentile(values, 99))
    result.metrics["wall_ms"] = ms(epoch(row["finished_at"]) - triggered_at)
    return result


def fan_out(bench: Bench) -> ShapeResult:
    """1 → width → 1: wall time from trigger to the fan-in node's finish."""
    width = bench.sizes.fan_out_width
    result = ShapeResult(params={"width": width, "nodes": width + 2})
    _, triggered_at, row = bench.run_one(shapes.fan_out(width, bench.name("fan-out")), bench.deadline())
    result.metrics["wall_ms"] = ms(epoch(row["finished_at"]) - triggered_at)
    return result


def throughput(bench: Bench) -> ShapeResult:
    """Many executions of a layered DAG at once: nodes/s from the first trigger to the last finish."""
    sizes, stack = bench.sizes, bench.stack
    name = bench.name("throughput")
    workflow = shapes.layered(sizes.throughput_layers, sizes.throughput_width, name)
    executions, nodes = sizes.throughput_executions, sizes.throughput_nodes
    result = ShapeResult(
        params={
            "executions": executions,
            "nodes_per_execution": nodes,
            "layers": sizes.throughput_layers,
            "width": sizes.throughput_width,
        }
    )
    deadline = bench.deadline()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        ids = list(pool.map(lambda _: bench.submit(workflow), range(executions)))
        window = procfs.CpuWindow({process: bench.pid(process) for process in ("scheduler", "worker", "api")})
        window.start()
        first_trigger = time.time()
        list(pool.map(lambda execution_id: stack.api.trigger(execution_id), ids))
        triggers_sent = time.time()
    wait_none_running(stack, name, deadline)
    noticed = time.time()
    cpu = window.used()
    rows = finished_executions(stack, name)
    wall_s = max(epoch(row["finished_at"]) for row in rows) - first_trigger
    window_s = noticed - first_trigger
    result.metrics = {
        "wall_s": round(wall_s, 3),
        "nodes_per_s": round(executions * nodes / wall_s, 1),
        "executions_per_s": round(executions / wall_s, 2),
        "triggering_s": round(triggers_sent - first_trigger, 3),
        **{
            f"{process}_cpu_pct": round(100 * cpu[process] / window_s, 1)
            for process in ("scheduler", "worker", "api")
        },
        "machine_busy_pct": round(cpu["machine_busy_pct"], 1),
    }
    result.notes.append("CPU % is of one core, over the trigger-to-noticed-finish window")
    return result


def definitions(bench: Bench) -> ShapeResult:
    """Large layered definitions: parse_workflow in this process, and a full POST /workflows."""
    sizes = bench.sizes
    result = ShapeResult(params={"sizes": list(sizes.definition_sizes), "width": sizes.definition_width})
    deadline = bench.deadline()
    handlers = handler_names()
    for size in sizes.definition_sizes:
        workflow = shapes.layered_of_size(size, sizes.definition_width, bench.name(f"definition-{size}"))
        timings = []
        for _ in range(PARSE_REPEATS):
            started = time.perf_counter()
            parse_workflow(workflow, handlers=handlers)
            timings.append(time.perf_counter() - started)
        result.metrics[f"parse_{size}_ms"] = ms(min(timings))
        body = json.dumps(workflow).encode()
        result.params[f"body_{size}_mib"] = round(len(body) / MIB, 2)
        result.metrics[f"post_{size}_ms"] = timed_post(bench, body, deadline, size, result)
    result.notes.append(f"parse: best of {PARSE_REPEATS}; POST: one request, submit without trigger")
    return result


def timed_post(bench: Bench, body: bytes, deadline: float, size: int, result: ShapeResult) -> float | None:
    """Milliseconds of one POST /workflows, or None (with a note) when it was refused or timed out."""
    started = time.perf_counter()
    try:
        response = bench.stack.api.post_workflow(body, timeout_s=max(1.0, deadline - time.monotonic()))
    except requests.Timeout:
        result.notes.append(f"POST of {size:,} nodes timed out")
        return None
    elapsed = time.perf_counter() - started
    if response.status_code != 201:
        result.notes.append(
            f"POST of {size:,} nodes refused after {ms(elapsed):.0f} ms: "
            f"HTTP {response.status_code} {error_summary(response)}"
        )
        return None
    bench.execution_ids.append(response.json()["execution_id"])
    return ms(elapsed)


def cost(bench: Bench) -> ShapeResult:
    """Scheduler CPU per node at two sizes of a layered DAG, and peak memory of the processes."""
    sizes, stack = bench.sizes, bench.stack
    scheduler = bench.pid("scheduler")
    result = ShapeResult(params={"shape": f"layered, {sizes.cost_width} wide, 2-3 deps per node"})
    before = procfs.cpu_seconds(scheduler)
    time.sleep(IDLE_SAMPLE_S)
    idle_cpu_per_s = (procfs.cpu_seconds(scheduler) - before) / IDLE_SAMPLE_S
    result.metrics["scheduler_idle_cpu_pct"] = round(100 * idle_cpu_per_s, 2)
    deadline = bench.deadline()
    per_node = []
    for size in sizes.cost_sizes:
        workflow = shapes.layered_of_size(size, sizes.cost_width, bench.name(f"cost-{size}"))
        execution_id = bench.submit(workflow)
        cpu_before, triggered_at = procfs.cpu_seconds(scheduler), time.time()
        stack.api.trigger(execution_id)
        wait_none_running(stack, workflow["name"], deadline)
        cpu_s, noticed = procfs.cpu_seconds(scheduler) - cpu_before, time.time()
        (row,) = finished_executions(stack, workflow["name"])
        per_node.append(cpu_s / size)
        net_cpu_s = cpu_s - idle_cpu_per_s * (noticed - triggered_at)
        result.metrics[f"cpu_s_{size}"] = round(cpu_s, 3)
        result.metrics[f"cpu_per_node_ms_{size}"] = ms(cpu_s / size)
        result.metrics[f"net_cpu_per_node_ms_{size}"] = ms(net_cpu_s / size)
        result.metrics[f"wall_s_{size}"] = round(epoch(row["finished_at"]) - triggered_at, 3)
    result.metrics["growth_ratio"] = round(per_node[1] / per_node[0], 3)
    for process in ("scheduler", "worker", "api"):
        result.metrics[f"{process}_peak_rss_mib"] = round(procfs.peak_rss_mb(bench.pid(process)), 1)
    result.notes.append("net CPU subtracts the scheduler's idle polling rate over the run's wall time")
    return result


SHAPE_RUNNERS: dict[str, Callable[[Bench], ShapeResult]] = {
    "canvas": canvas,
    "hop_latency": hop_latency,
    "fan_out": fan_out,
    "throughput": throughput,
    "definitions": definitions,
    "cost": cost,
}


def run_shape(name: str, bench: Bench) -> ShapeResult:
    """Run one shape; a timeout or a failure is recorded, and the next shape still runs."""
    try:
        return SHAPE_RUNNERS[name](bench)
    except ShapeTimeout as exc:
        return ShapeResult(status="timeout", error=str(exc))
    except Exception as exc:  # a broken shape must not hide the others' numbers
        return ShapeResult(status="error", error=f"{type(exc).__name__}: {exc}")


@contextmanager
def profiled(bench: Bench, name: str, profile_dir: Path | None, profiles: dict[str, Any]) -> Iterator[None]:
    """Record the scheduler and the worker with py-spy while a shape runs, into profile_dir/shape."""
    if profile_dir is None:
        yield
        return
    spy = PySpy(profile_dir / name, {process: bench.pid(process) for process in PROFILED_PROCESSES})
    with spy:
        yield
    profiles[name] = spy.summaries()


def run_bench(
    *,
    quick: bool,
    only: Sequence[str] = (),
    worker_pool: str,
    worker_concurrency: int,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    """Start a private stack, run the chosen shapes on it, and return everything as JSON data."""
    sizes = shapes.QUICK if quick else shapes.FULL
    chosen = [name for name in SHAPES if not only or name in only]
    started, load_before = time.monotonic(), procfs.load_average()
    stack = start_stack(
        {"WORKFLOW_INVOCATION_LEDGER": ""},  # measured as deployed: the ledger is for tests and soaks
        worker_env={"CELERY_RESULT_BACKEND": RESULT_BACKEND_URL},
        worker_pool=worker_pool,
        worker_concurrency=worker_concurrency,
    )
    results: dict[str, ShapeResult] = {}
    profiles: dict[str, Any] = {}
    try:
        bench = Bench(stack=stack, sizes=sizes, canvas=Canvas(stack))
        try:
            bench.warm_up()
            for name in chosen:
                with profiled(bench, name, profile_dir, profiles):
                    results[name] = run_shape(name, bench)
        finally:
            bench.close()
    finally:
        stack.close()
    return {
        "mode": "quick" if quick else "full",
        "environment": {
            **procfs.machine(),
            "database": stack.env["DATABASE_URL"].split(":", 1)[0],
            "worker_pool": worker_pool,
            "worker_concurrency": worker_concurrency,
            "load_average_before": load_before,
            "load_average_after": procfs.load_average(),
        },
        "duration_s": round(time.monotonic() - started, 1),
        "shapes": {name: asdict(result) for name, result in results.items()},
        "profiles": profiles,
    }
