"""bin/supervise.py, as bin/run runs it: real processes from a Procfile; one that exits is restarted
and the others keep running; SIGTERM stops them all and the supervisor exits 0."""

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 30.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Output:
    """The supervisor's output lines, read as they come; `until` waits for a pattern's n-th match."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.fresh: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self.read, args=(process,), daemon=True).start()

    def read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.fresh.put(line.rstrip("\n"))

    def matches(self, pattern: str) -> list[re.Match[str]]:
        return [match for line in self.lines if (match := re.search(pattern, line))]

    def until(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        deadline = time.monotonic() + DEADLINE_S
        while len(self.matches(pattern)) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {count} x {pattern!r} in:\n" + "\n".join(self.lines)
            with contextlib.suppress(queue.Empty):
                self.lines.append(self.fresh.get(timeout=remaining))
        return self.matches(pattern)


def test_a_process_that_exits_is_restarted_the_others_keep_running_and_sigterm_stops_all(
    tmp_path: Path,
) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        'flaky: echo "up as $PROCESS_NAME"; exit 3\nsteady: echo "steady as $PROCESS_NAME"; exec sleep 120\n'
    )
    command = [sys.executable, str(ROOT / "bin" / "supervise.py"), "--procfile", str(procfile)]
    supervisor = subprocess.Popen(
        [*command, "--concurrency", "steady=2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        output = Output(supervisor)
        steady = {match[1]: int(match[2]) for match in output.until(r"(steady\.\d) started \(pid (\d+)\)", 2)}
        output.until(r"steady\.2 +\| steady as steady\.2")
        exits = output.until(r"flaky\.1 exited with code 3 after [\d.]+s; restarting it in (\S+)s", 3)
        assert [match[1] for match in exits[:3]] == ["1", "2", "4"]  # the delay doubles while it dies young
        assert len(output.until(r"flaky\.1 +\| up as flaky\.1", 3)) >= 3
        assert all(alive(pid) for pid in steady.values())  # one process dying stops nothing else
        assert not output.matches(r"steady\.\d exited")
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(DEADLINE_S) == 0
        output.until(r"steady\.1 stopped")
        deadline = time.monotonic() + DEADLINE_S
        while any(alive(pid) for pid in steady.values()):
            assert time.monotonic() < deadline, "the steady processes outlived the supervisor"
            time.sleep(0.05)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
