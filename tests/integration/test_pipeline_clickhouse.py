"""The ClickHouse pipeline (pipelines/clickhouse): PostgreSQL → walship → Kafka → chDB's
Kafka engine → materialized view → changes table → current-state view, in both formats.

After the stream's snapshot and after each of two workload rounds (so ClickHouse consumes
incrementally), every row and every column of ClickHouse's tables must equal
PostgreSQL's: numerics exact, floats as doubles (NaN, infinities, -0), timestamps to the
microsecond, bytea, jsonb, uuid, arrays, NULLs, unchanged TOAST values (under REPLICA
IDENTITY DEFAULT, also through chains of key changes), deletes and truncates. chDB must
be installed (tests/requirements.txt): without it the test fails, it never skips.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import pytest

PIPELINE_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "clickhouse"
sys.path.insert(0, str(PIPELINE_DIR))
sys.path.insert(0, str(PIPELINE_DIR.parent / "common"))

import walship_clickhouse as wch  # noqa: E402
import workload  # noqa: E402

PG_OPTIONS = {"name": "pipe_clickhouse"}

_spec = importlib.util.spec_from_file_location("walship_clickhouse_run", PIPELINE_DIR / "run.py")
pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline)


@pytest.fixture(scope="module")
def ch():
    with tempfile.TemporaryDirectory(prefix="walship-chdb-") as d:
        c = wch.ClickHousePipeline(d)   # raises (the test errors) when chdb is missing
        yield c
        c.close()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("consumer", ["engine", "python"])
@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_clickhouse_copy_is_exact(pg, kafka, ch, fmt, consumer, figures):
    """consumer: ClickHouse's Kafka engine, or the Python consumer (consumer.py)."""
    t0 = time.monotonic()
    pl = pipeline.Pipeline(pg, kafka, ch, fmt, consumer=consumer)
    pl.setup()
    try:
        report = []
        for r in range(0, 3):          # 0: the snapshot; 1, 2: workload rounds
            if r:
                workload.round_(pg, pl.schema, r)
            waited = pl.sync()
            rows, values, diffs = pl.compare()
            report.append(f"{'snapshot' if r == 0 else f'round {r}'}: {rows} rows, {values} values, "
                          f"{len(diffs)} differences, consumed in {waited:.1f} s")
            assert not diffs, f"{fmt}, {report[-1]}:\n" + "\n".join(diffs[:40])
            assert rows > 0
        # the rounds exercised what they are meant to (else the comparison proves little)
        ops = ch.query(f"SELECT _op, count(), sum(note__toast), sum(blob__toast) FROM `{pl.db}`.items__changes "
                       "GROUP BY _op ORDER BY _op")
        counts = {line.split("\t")[0]: [int(x) for x in line.split("\t")[1:]] for line in ops.splitlines()}
        assert counts["r"][0] >= 300 and counts["c"][0] >= 200 and counts["d"][0] >= 40, counts
        assert counts["u"][1] > 50 and counts["c"][1] > 0, f"too few unchanged TOAST values: {counts}"
        truncs = ch.query(f"SELECT count() FROM `{pl.db}`.kv__changes WHERE _op = 't'").strip()
        assert int(truncs) >= 2
        figures(f"clickhouse pipeline [{fmt}, {consumer}]: " + "; ".join(report) +
                f"; {pl.changes()} change rows; {time.monotonic() - t0:.1f} s")
    finally:
        pl.close()
