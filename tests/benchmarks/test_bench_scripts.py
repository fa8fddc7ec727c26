"""The benchmark scripts run end to end at small sizes (their figures are not checked here)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_reading_benchmark_quick_run_writes_its_report(tmp_path):
    report = tmp_path / "reading.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_reading.py"), "--quick",
         "--record", str(report)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "completed under the cap" in done.stdout
    text = report.read_text()
    assert "files/s" in text and "RLIMIT_DATA" in text
