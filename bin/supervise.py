#!/usr/bin/env python3
"""Run the Procfile's processes in the foreground, restart any that exits, stop them all on Ctrl-C.

bin/run's supervisor (in place of honcho's `start`, which stops every process when one exits):
the Procfile is the one list of the process commands; each line `name: command` runs through
/bin/sh (so `${VAR:-default}` works) as `name.1`, `name.2`… (`--concurrency worker=2`), with
PROCESS_NAME set to that name. Their output is interleaved line by line, each prefixed with the
time and the process name. A process that exits is started again after a delay that doubles
while it keeps dying young (1 s up to 30 s) and is said on the output. SIGINT or SIGTERM stops
every process (SIGTERM to its process group, SIGKILL after 10 s) and the supervisor exits 0.
Only the standard library: it runs before anything is installed.
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
STEADY_S = 10.0  # a process that ran this long counts as healthy: its next restart is quick again
STOP_DEADLINE_S = 10.0
POLL_S = 0.1


def read_procfile(path: Path) -> dict[str, str]:
    """The `name: command` lines of a Procfile, in order (blank lines and # comments skipped)."""
    commands = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, colon, command = line.partition(":")
        if not colon or not name.strip() or not command.strip():
            raise SystemExit(f"{path}:{number}: expected 'name: command', got {line!r}")
        commands[name.strip()] = command.strip()
    return commands


def parse_concurrency(text: str, names: list[str]) -> dict[str, int]:
    """`worker=2,api=1` as {name: count}; each Procfile process runs once unless given here."""
    counts = dict.fromkeys(names, 1)
    for item in filter(None, text.split(",")):
        name, _, count = item.partition("=")
        if name not in counts or not count.isdigit():
            raise SystemExit(f"--concurrency: expected NAME=COUNT with a Procfile name, got {item!r}")
        counts[name] = int(count)
    return counts


@dataclass
class Process:
    """One supervised process: its command and, while it runs, its Popen."""

    name: str
    command: str
    popen: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_delay_s: float = RESTART_DELAY_S
    restart_at: float | None = None


class Supervisor:
    """Starts the processes, restarts those that exit, stops them all when asked."""

    def __init__(self, processes: list[Process], out: IO[str]) -> None:
        self.processes = processes
        self.out = out
        self.width = max(len(process.name) for process in [*processes, Process("supervise", "")])
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def say(self, name: str, text: str) -> None:
        with self.lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {name:<{self.width}} | {text}\n")
            self.out.flush()

    def start(self, process: Process) -> None:
        env = {**os.environ, "PROCESS_NAME": process.name, "PYTHONUNBUFFERED": "1"}
        process.popen = subprocess.Popen(
            ["/bin/sh", "-c", process.command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops each group itself
        )
        process.started_at = time.monotonic()
        process.restart_at = None
        self.say("supervise", f"{process.name} started (pid {process.popen.pid}): {process.command}")
        threading.Thread(target=self.pump, args=(process.name, process.popen.stdout), daemon=True).start()

    def pump(self, name: str, stream: IO[bytes]) -> None:
        """Copy a process's output, line by line, prefixed with its name."""
        for line in iter(stream.readline, b""):
            self.say(name, line.decode(errors="replace").rstrip("\n"))
        stream.close()

    def run(self) -> int:
        for process in self.processes:
            self.start(process)
        while not self.stopping.wait(POLL_S):
            for process in self.processes:
                self.watch(process)
        self.stop_all()
        return 0

    def watch(self, process: Process) -> None:
        """Notice an exit and schedule the restart; restart when it is due."""
        now = time.monotonic()
        if process.popen is not None and process.popen.poll() is not None:
            ran_s = now - process.started_at
            if ran_s >= STEADY_S:
                process.restart_delay_s = RESTART_DELAY_S
            code = process.popen.returncode
            process.popen = None
            process.restart_at = now + process.restart_delay_s
            self.say(
                "supervise",
                f"{process.name} exited with code {code} after {ran_s:.1f}s; "
                f"restarting it in {process.restart_delay_s:g}s",
            )
            process.restart_delay_s = min(process.restart_delay_s * 2, MAX_RESTART_DELAY_S)
        elif process.popen is None and process.restart_at is not None and now >= process.restart_at:
            self.start(process)

    def stop_all(self) -> None:
        """SIGTERM every running process's group, SIGKILL those still there after the deadline."""
        running = [process for process in self.processes if process.popen and process.popen.poll() is None]
        self.say("supervise", f"stopping {', '.join(process.name for process in running) or 'nothing'}")
        for process in running:
            signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_DEADLINE_S
        for process in running:
            assert process.popen is not None
            try:
                process.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say("supervise", f"{process.name} still runs after {STOP_DEADLINE_S:g}s: SIGKILL")
                signal_group(process, signal.SIGKILL)
                process.popen.wait()
            self.say("supervise", f"{process.name} stopped (code {process.popen.returncode})")


def signal_group(process: Process, sig: int) -> None:
    assert process.popen is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.popen.pid, sig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procfile", type=Path, default=Path("Procfile"))
    parser.add_argument("--concurrency", default="", help="NAME=COUNT[,NAME=COUNT…], e.g. worker=2")
    args = parser.parse_args(argv)
    commands = read_procfile(args.procfile)
    counts = parse_concurrency(args.concurrency, list(commands))
    processes = [
        Process(f"{name}.{index}", command)
        for name, command in commands.items()
        for index in range(1, counts[name] + 1)
    ]
    if not processes:
        raise SystemExit(f"{args.procfile}: no processes to run")
    supervisor = Supervisor(processes, sys.stdout)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: supervisor.stopping.set())
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
