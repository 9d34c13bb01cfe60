"""Sample the stack's processes with py-spy while a shape runs, and rank where their time went."""

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

SAMPLE_RATE_HZ = 200
TOP_FRAMES = 15
STOP_DEADLINE_S = 30.0
_LINE_NUMBER = re.compile(r":\d+\)$")
OUR_PACKAGES = ("workflows/", "workers/")


def py_spy() -> str:
    """The py-spy executable (a dev dependency), next to this interpreter or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy: pip install -r requirements-dev.txt")
    return found


class PySpy:
    """`py-spy record` of several processes (and their children: gunicorn's worker) during a `with`.

    Samples are collapsed stacks (`--format raw`), one file per process. Threads py-spy sees as
    idle (blocked in a C call such as the Kafka consumer's poll) are not sampled; waits inside
    Python-level I/O (psycopg, redis-py sockets) are, so shares are of the time a process was
    busy working or waiting on a round trip, not of its CPU time.
    """

    def __init__(self, directory: Path, pids: dict[str, int]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.outputs = {name: directory / f"{name}.collapsed.txt" for name in pids}
        self.pids = pids
        self.recorders: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> "PySpy":
        for name, pid in self.pids.items():
            command = [py_spy(), "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE_HZ)]
            command += [
                "--format",
                "raw",
                "--output",
                str(self.outputs[name]),
                "--nonblocking",
                "--subprocesses",
            ]
            self.recorders[name] = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for recorder in self.recorders.values():
            recorder.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        for recorder in self.recorders.values():
            recorder.wait(STOP_DEADLINE_S)

    def summaries(self) -> dict[str, Any]:
        return {
            name: {"file": str(path), **summarize(path)}
            for name, path in self.outputs.items()
            if path.exists()
        }


def frame_file(frame: str) -> str:
    """The file of a collapsed-stack frame `function (path)`."""
    return frame[frame.rfind("(") + 1 : -1]


def package(frame: str) -> str:
    """What a frame belongs to: the top-level package of its file (stdlib modules by name)."""
    path = frame_file(frame)
    return path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")


def is_ours(frame: str) -> bool:
    return frame_file(frame).startswith(OUR_PACKAGES)


def summarize(path: Path, top: int = TOP_FRAMES) -> dict[str, Any]:
    """Shares of the sampled time: by function (self), by package (self), and by our own functions
    (inclusive: the time spent in them and in everything they called)."""
    own: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            _LINE_NUMBER.sub(")", frame) for frame in stack.split(";") if not frame.startswith("process ")
        ]
        if not frames:  # --subprocesses labels each stack with its process; a bare label has no Python
            continue
        samples += count
        own[frames[-1]] += count
        by_package[package(frames[-1])] += count
        for frame in {frame for frame in frames if is_ours(frame)}:
            ours[frame] += count
    share = 100.0 / samples if samples else 0.0

    def ranked(counter: Counter[str]) -> list[list[Any]]:
        return [[frame, round(count * share, 1)] for frame, count in counter.most_common(top)]

    return {
        "samples": samples,
        "self": ranked(own),
        "self_by_package": ranked(by_package),
        "inclusive_ours": ranked(ours),
    }
