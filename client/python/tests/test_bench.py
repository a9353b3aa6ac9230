"""bench/python_client_cpu.py runs (with few jobs) and prints its one JSON line."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from support import ReboundServer

SCRIPT = pathlib.Path(__file__).resolve().parents[3] / "bench" / "python_client_cpu.py"


def test_the_cpu_benchmark_submits_every_job_both_ways(server: ReboundServer, tenant: str) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--target", server.target, "--tenant", tenant,
         "--jobs", "50"],
        capture_output=True, text=True, timeout=60,
    )

    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["jobs"] == 50
    for mode in ("unary", "stream"):
        assert report[mode]["rejected"] == 0 and report[mode]["client_cpu_us_per_job"] > 0
    assert report["ratio_stream_to_unary"] > 0
