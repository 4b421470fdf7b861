"""The Spark pipeline (pipelines/spark): PostgreSQL → walship → Kafka → Spark Structured
Streaming (foreachBatch: decode, fold per key in version order, one MERGE per table) →
a Delta Lake table and an Iceberg table per PostgreSQL table, in both formats.

After the stream's snapshot and after each of two workload rounds, the query consumes
what Kafka holds from its checkpoint (an ``availableNow`` run: incremental), and every
row and every column of both copies must equal PostgreSQL's: numerics exact, floats as
doubles (NaN, infinities, -0), timestamps to the microsecond, bytea, jsonb, uuid, arrays,
NULLs, unchanged TOAST values (under REPLICA IDENTITY DEFAULT, also through chains of key
changes), deletes and truncates. pyspark must be installed (tests/requirements.txt) and
Maven must reach Maven Central once for the jars: otherwise the test fails, it never skips.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import pytest

PIPELINE_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "spark"
sys.path.insert(0, str(PIPELINE_DIR))
sys.path.insert(0, str(PIPELINE_DIR.parent / "common"))

import walship_spark as wsp  # noqa: E402
import workload  # noqa: E402

PG_OPTIONS = {"name": "pipe_spark"}
SESSION: dict = {}

_spec = importlib.util.spec_from_file_location("walship_spark_run", PIPELINE_DIR / "run.py")
pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline)


@pytest.fixture(scope="module")
def spark_dir():
    with tempfile.TemporaryDirectory(prefix="walship-spark-") as d:
        yield d


@pytest.fixture(scope="module")
def spark(spark_dir):
    t0 = time.monotonic()
    s = wsp.spark_session(spark_dir)   # raises (the test errors) without pyspark or the jars
    SESSION["seconds"] = time.monotonic() - t0
    yield s
    s.stop()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_spark_copies_are_exact(pg, kafka, spark, spark_dir, fmt, figures):
    t0, cpu0 = time.monotonic(), wsp.jvm_cpu_seconds()
    pl = pipeline.Pipeline(pg, kafka, spark, spark_dir, fmt)
    pl.setup()
    try:
        report = []
        for r in range(0, 3):          # 0: the snapshot; 1, 2: workload rounds
            if r:
                workload.round_(pg, pl.schema, r)
            waited = pl.sync()
            cmp = pl.compare()
            what = "snapshot" if r == 0 else f"round {r}"
            for sink, (rows, values, diffs) in cmp.items():
                report.append(f"{what} {sink}: {rows} rows, {values} values, {len(diffs)} differences")
                assert not diffs, f"{fmt}, {report[-1]}:\n" + "\n".join(diffs[:40])
                assert rows > 0
            report[-1] += f" (consumed in {waited:.1f} s)"
        # the rounds exercised what they are meant to (else the comparison proves little)
        st = pl.job.stats
        assert st[("items", "r")] >= 300 and st[("items", "c")] >= 200 and st[("items", "d")] >= 40, st
        assert st[("items", "u", "note")] > 50 and st[("items", "c", "note")] > 0, \
            f"too few unchanged TOAST values: {st}"
        assert st[("items", "u", "blob")] > 50 and st[("items", "c", "blob")] > 0, st
        assert st[("kv", "t")] >= 2, st
        # consumed incrementally: each run read only what was new
        assert pl.job.batches >= 3, pl.job.batches
        timing = pl.job.timing()
        figures(f"spark pipeline [{fmt}]: " + "; ".join(report) +
                f"; {pl.job.changes} changes in {pl.job.batches} micro-batches ({timing}); "
                f"{time.monotonic() - t0:.1f} s, Spark's JVM {wsp.jvm_cpu_seconds() - cpu0:.0f} CPU s "
                f"(the SparkSession took {SESSION.get('seconds', 0):.1f} s)")
    finally:
        pl.close()
