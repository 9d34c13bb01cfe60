"""The benchmark's one table: every measurement, with the issue's targets and PASS/MISS beside them."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Results = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """A goal from the Performance issue: how it reads and whether a measured value meets it."""

    text: str
    met: Callable[[float], bool]


HOP_P50 = Target("<= 10 ms", lambda value: value <= 10)
HOP_P99 = Target("<= 50 ms", lambda value: value <= 50)
THROUGHPUT = Target(">= 1,000 nodes/s", lambda value: value >= 1000)
FAN_OUT_RATIO = Target("<= 1x Celery chord", lambda value: value <= 1.0)
CHAIN_RATIO = Target("<= 2x Celery chain", lambda value: value <= 2.0)
VALIDATION = Target("<= 1,000 ms", lambda value: value <= 1000)
GROWTH = Target("<= 1.5x", lambda value: value <= 1.5)

HEADER = ("shape", "measure", "value", "target", "verdict")


@dataclass(frozen=True)
class Row:
    shape: str
    measure: str
    value: str
    target: str = ""
    verdict: str = ""


def row(shape: str, measure: str, value: float | None, unit: str, target: Target | None = None) -> Row:
    """A table row; a missing value reads `n/a` and misses its target."""
    if value is None:
        return Row(shape, measure, "n/a", target.text if target else "", "MISS" if target else "")
    shown = f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    verdict = ("PASS" if target.met(value) else "MISS") if target else ""
    return Row(shape, measure, f"{shown} {unit}".strip(), target.text if target else "", verdict)


def hop_rows(metrics: dict[str, Any], params: dict[str, Any]) -> Iterator[Row]:
    shape = f"chain of {params['chain_length']}"
    yield row(shape, "per-hop p50 (child started - parent finished)", metrics["hop_p50_ms"], "ms", HOP_P50)
    yield row(shape, "per-hop p99", metrics["hop_p99_ms"], "ms", HOP_P99)
    for part, label in (
        ("ready_to_queued", "parent finished -> child queued"),
        ("queued_to_started", "child queued -> started"),
    ):
        yield row(shape, f"  {label}, p50", metrics[f"{part}_p50_ms"], "ms")
        yield row(shape, f"  {label}, p99", metrics[f"{part}_p99_ms"], "ms")
    yield row(shape, "wall time, trigger -> last node finished", metrics["wall_ms"], "ms")


def throughput_rows(metrics: dict[str, Any], params: dict[str, Any]) -> Iterator[Row]:
    shape = f"{params['executions']} x {params['nodes_per_execution']}-node DAG"
    yield row(shape, "nodes/s, first trigger -> last finish", metrics["nodes_per_s"], "", THROUGHPUT)
    yield row(shape, "executions/s", metrics["executions_per_s"], "")
    yield row(shape, "wall time", metrics["wall_s"], "s")
    yield row(shape, "  time to send all triggers", metrics["triggering_s"], "s")
    for process in ("scheduler", "worker", "api"):
        yield row(shape, f"  {process} CPU (% of one core)", metrics[f"{process}_cpu_pct"], "%")
    yield row(shape, "  machine CPU busy (% of all cores)", metrics["machine_busy_pct"], "%")


def fan_out_rows(metrics: dict[str, Any], params: dict[str, Any]) -> Iterator[Row]:
    yield row(
        f"1 -> {params['width']:,} -> 1", "wall time, trigger -> fan-in finished", metrics["wall_ms"], "ms"
    )


def definition_rows(metrics: dict[str, Any], params: dict[str, Any]) -> Iterator[Row]:
    largest = max(params["sizes"])
    for size in params["sizes"]:
        shape = f"definition of {size:,}"
        target = VALIDATION if size == largest else None
        yield row(shape, "parse_workflow (in process)", metrics[f"parse_{size}_ms"], "ms", target)
        body = params[f"body_{size}_mib"]
        yield row(shape, f"POST /workflows ({body} MiB body)", metrics[f"post_{size}_ms"], "ms")


def cost_rows(metrics: dict[str, Any], params: dict[str, Any]) -> Iterator[Row]:
    sizes = sorted(int(key.rsplit("_", 1)[1]) for key in metrics if key.startswith("cpu_s_"))
    yield row("cost", "scheduler idle CPU (% of one core)", metrics["scheduler_idle_cpu_pct"], "%")
    for size in sizes:
        shape = f"cost, {size:,} nodes"
        yield row(shape, "scheduler CPU per node", metrics[f"cpu_per_node_ms_{size}"], "ms")
        yield row(shape, "  net of idle polling", metrics[f"net_cpu_per_node_ms_{size}"], "ms")
        yield row(shape, "  wall time", metrics[f"wall_s_{size}"], "s")
    growth = f"CPU/node {sizes[-1]:,} vs {sizes[0]:,}"
    yield row("cost", growth, metrics["growth_ratio"], "x", GROWTH)
    for process in ("scheduler", "worker", "api"):
        yield row("cost", f"peak RSS (VmHWM), {process}", metrics[f"{process}_peak_rss_mib"], "MiB")


def canvas_rows(metrics: dict[str, Any], params: dict[str, Any]) -> Iterator[Row]:
    yield row("Celery canvas", f"chain of {params['chain_length']} no-ops", metrics["chain_wall_ms"], "ms")
    yield row("Celery canvas", "  per hop", metrics["chain_per_hop_ms"], "ms")
    chord = f"chord: group of {params['chord_width']:,} + callback"
    yield row("Celery canvas", chord, metrics["chord_wall_ms"], "ms")
    stream = f"{params['stream']:,} no-ops sent at once, no results"
    yield row("Celery canvas", stream, metrics["stream_tasks_per_s"], "tasks/s")


SHAPE_ROWS: dict[str, Callable[[dict[str, Any], dict[str, Any]], Iterator[Row]]] = {
    "hop_latency": hop_rows,
    "throughput": throughput_rows,
    "fan_out": fan_out_rows,
    "definitions": definition_rows,
    "cost": cost_rows,
    "canvas": canvas_rows,
}


def ratio(results: Results, ours: tuple[str, str], theirs: tuple[str, str]) -> float | None:
    """ours / theirs when both shapes ran and measured the value."""
    shapes = results["shapes"]
    try:
        numerator = shapes[ours[0]]["metrics"][ours[1]]
        denominator = shapes[theirs[0]]["metrics"][theirs[1]]
    except KeyError:
        return None
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def comparisons(results: Results) -> dict[str, float | None]:
    return {
        "chain_ours_over_canvas": ratio(results, ("hop_latency", "wall_ms"), ("canvas", "chain_wall_ms")),
        "fan_out_ours_over_canvas": ratio(results, ("fan_out", "wall_ms"), ("canvas", "chord_wall_ms")),
        "throughput_ours_over_canvas": ratio(
            results, ("throughput", "nodes_per_s"), ("canvas", "stream_tasks_per_s")
        ),
    }


def rows(results: Results) -> list[Row]:
    table: list[Row] = []
    for name, shape in results["shapes"].items():
        if shape["status"] != "ok":
            table.append(Row(name, shape["status"].upper(), "n/a", "", "MISS"))
            table.append(Row(name, f"  {shape['error'][:100]}", ""))
            continue
        table.extend(SHAPE_ROWS[name](shape["metrics"], shape["params"]))
    ratios = results.get("comparisons", {})
    if "hop_latency" in results["shapes"] and "canvas" in results["shapes"]:
        table.append(
            row("ours / canvas", "chain wall time", ratios.get("chain_ours_over_canvas"), "x", CHAIN_RATIO)
        )
    if "fan_out" in results["shapes"] and "canvas" in results["shapes"]:
        table.append(
            row(
                "ours / canvas",
                "fan-out wall time",
                ratios.get("fan_out_ours_over_canvas"),
                "x",
                FAN_OUT_RATIO,
            )
        )
    if "throughput" in results["shapes"] and "canvas" in results["shapes"]:
        table.append(
            row("ours / canvas", "nodes/s / Celery tasks/s", ratios.get("throughput_ours_over_canvas"), "x")
        )
    return table


def render(results: Results) -> str:
    """The header line, the table, and every shape's notes."""
    env = results["environment"]
    title = (
        f"bench ({results['mode']} run, {results['duration_s']} s): {env['cpus']} x {env['cpu_model']}, "
        f"{env['memory_gib']} GiB, database {env['database']}, "
        f"worker pool {env['worker_pool']} x {env['worker_concurrency']}, "
        f"load average {env['load_average_before']} before, {env['load_average_after']} after"
    )
    table = [HEADER, *((r.shape, r.measure, r.value, r.target, r.verdict) for r in rows(results))]
    widths = [max(len(line[column]) for line in table) for column in range(len(HEADER))]
    lines = [title, ""]
    for number, line in enumerate(table):
        cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1]), line[2].rjust(widths[2])]
        cells += [line[3].ljust(widths[3]), line[4]]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    notes = [f"- {name}: {note}" for name, shape in results["shapes"].items() for note in shape["notes"]]
    return "\n".join([*lines, *(["", *notes] if notes else [])])


def verdicts(results: Results) -> list[dict[str, str]]:
    """The target rows alone, for the JSON file."""
    return [
        {"shape": r.shape, "measure": r.measure, "value": r.value, "target": r.target, "verdict": r.verdict}
        for r in rows(results)
        if r.verdict
    ]


def render_profiles(results: Results) -> str:
    """Where each profiled process spent its working time: top functions by self and inclusive share."""
    lines: list[str] = []
    for shape, processes in results.get("profiles", {}).items():
        for process, profile in processes.items():
            lines += [
                "",
                f"py-spy: {process} during {shape} ({profile['samples']} samples, {profile['file']})",
            ]
            for kind in ("self_by_package", "self", "inclusive_ours"):
                lines.append(f"  top {kind.replace('_', ' ')}:")
                lines += [f"    {share:5.1f}%  {frame}" for frame, share in profile[kind]]
    return "\n".join(lines)
