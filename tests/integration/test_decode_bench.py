"""The decode benchmark's tools work on the server under test (their timings are not checked).

bench/decode measures every plugin by decoding a slot in a backend with
walship_bench_decode (bench/decode/noop_plugin.c), which drops the output: a broken
function would turn the benchmark's numbers into nonsense without anyone noticing. This
runs the benchmark on a small workload and checks that it completes, that walship's two
formats and the no-op floor were measured, and that decoding that way gave exactly the
rows and bytes the SQL peek of the same slot gave (the benchmark fails a plugin when they
differ).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import walship_testlib as wt

REPO = Path(__file__).resolve().parents[2]


def test_the_decode_benchmark_decodes_with_walship_and_the_floor(tmp_path):
    bindir = wt.pg_config("bindir")
    p = subprocess.run(
        [sys.executable, str(REPO / "bench" / "decode" / "decode_bench.py"), "3000",
         "--bindir", str(bindir), "--only", "walship,bench_noop", "--rounds", "1",
         "--no-results"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:]
    assert "FAILED" not in p.stdout, p.stdout[-4000:]
    rows = {}
    for label in ("floor (no-op)", "walship (protobuf)", "walship (json)"):
        m = re.search(rf"^{re.escape(label)}\s+(\d+)\s+(\d+)\s+([\d.]+)", p.stdout, re.M)
        assert m, f"no result line for {label}:\n{p.stdout[-4000:]}"
        rows[label] = (int(m.group(1)), int(m.group(2)))
    # 3 transactions of 1000 changes; one output row per change (walship's BEGIN and
    # COMMIT events are off by default, the floor writes one byte per change)
    assert rows == {label: (3000, 3000) for label in rows}
