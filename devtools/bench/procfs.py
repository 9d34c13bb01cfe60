"""What /proc says about the stack's processes and the machine: CPU time, peak memory, hardware."""

import os
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (a prefork Celery worker's children, for instance)."""
    found = [pid]
    for task in (PROC / str(pid) / "task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found.extend(process_tree(int(child)))
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process and its live descendants."""
    total_ticks = 0
    for member in process_tree(pid):
        try:
            stat = (PROC / str(member) / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total_ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total_ticks / CLOCK_TICKS_PER_S


def peak_rss_mb(pid: int) -> float:
    """The largest peak resident set (VmHWM) among a process and its descendants, in MiB."""
    peak_kb = 0
    for member in process_tree(pid):
        try:
            status = (PROC / str(member) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak_kb = max(peak_kb, int(line.split()[1]))
    return peak_kb / 1024


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over all CPUs."""
    values = [int(value) for value in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # user … steal; guest time is already counted in user
    return (total - idle) / CLOCK_TICKS_PER_S, total / CLOCK_TICKS_PER_S


def load_average() -> float:
    """The machine's one-minute load average: other work running beside the benchmark shows here."""
    return float((PROC / "loadavg").read_text().split()[0])


def machine() -> dict[str, object]:
    """CPU count and model, and memory, as the report's header shows them."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in (PROC / "cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    mem_kb = int((PROC / "meminfo").read_text().split()[1])
    return {"cpus": os.cpu_count() or 0, "cpu_model": model, "memory_gib": round(mem_kb / 1024**2, 1)}


class CpuWindow:
    """CPU used by some processes, and by the whole machine, between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.machine_before = (0.0, 0.0)

    def start(self) -> "CpuWindow":
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.machine_before = machine_busy_seconds()
        return self

    def used(self) -> dict[str, float]:
        """CPU seconds per process since start(), and `machine_busy_pct` of all CPUs."""
        used = {name: cpu_seconds(pid) - self.before[name] for name, pid in self.pids.items()}
        busy, total = machine_busy_seconds()
        busy_delta, total_delta = busy - self.machine_before[0], total - self.machine_before[1]
        used["machine_busy_pct"] = 100.0 * busy_delta / total_delta if total_delta else 0.0
        return used
