"""`manage.py bench --quick` end to end: it runs every shape on a private stack and reports numbers.

No timing is asserted here: the numbers depend on the machine; the full run is documented in
docs/performance.md.
"""

import json
import subprocess
import sys
from numbers import Real
from pathlib import Path

import pytest

from devtools.bench.runner import SHAPES
from devtools.devstack import ROOT

BENCH_DEADLINE_S = 420


@pytest.mark.timeout(BENCH_DEADLINE_S + 60)
def test_quick_bench_measures_every_shape(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    finished = subprocess.run(
        [sys.executable, "manage.py", "bench", "--quick", "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BENCH_DEADLINE_S,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "verdict" in finished.stdout
    results = json.loads(output.read_text())
    assert set(results["shapes"]) == set(SHAPES)
    for name, shape in results["shapes"].items():
        assert shape["status"] == "ok", (name, shape["error"])
        assert shape["metrics"], name
        for metric, value in shape["metrics"].items():
            assert isinstance(value, Real) and not isinstance(value, bool), (name, metric, value)
    assert all(isinstance(value, Real) for value in results["comparisons"].values())
    assert {target["verdict"] for target in results["targets"]} <= {"PASS", "MISS"}
