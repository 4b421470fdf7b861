"""PostgreSQL → walship → Kafka → Spark Structured Streaming → Delta Lake and Iceberg.

Starts a throwaway PostgreSQL (walship preloaded), the test Kafka broker and a local
Spark (local[2], 1 GB driver), creates two tables with rows, a stream over them (its
snapshot sends those rows), one streaming query that keeps a Delta table and an Iceberg
table per PostgreSQL table, runs the workload rounds, and after each round lets the query
consume everything Kafka holds (an ``availableNow`` run from its checkpoint: incremental)
and compares every row and column of both copies with PostgreSQL's.

    python3 pipelines/spark/run.py [--format json|protobuf|both] [--rounds 2]
                                   [--events N]   # also measure events/s end to end

Exit status 0 when Delta and Iceberg equal PostgreSQL after every round, in every format.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "common"))

import walship_testlib as wt  # noqa: E402
import walship_spark as wsp  # noqa: E402
import workload  # noqa: E402

SINKS = ("delta", "iceberg")


class Pipeline:
    """One format's pipeline: a schema in PostgreSQL, a stream, a Spark job."""

    def __init__(self, pg, kafka, spark, workdir: str | Path, fmt: str, partitions: int = 3,
                 max_offsets: int = 200000):
        self.pg, self.kafka, self.spark, self.fmt = pg, kafka, spark, fmt
        self.workdir = Path(workdir)
        self.schema = f"src_{fmt}"
        self.stream = f"spark_{fmt}"
        self.prefix = f"spark_{fmt}"
        self.partitions = partitions
        self.max_offsets = max_offsets     # maxOffsetsPerTrigger
        self.job: wsp.StreamJob | None = None

    def topic(self, table: str) -> str:
        return f"{self.prefix}.{self.schema}.{table}"

    def options(self) -> dict:
        o = {"topic_prefix": self.prefix, "format": self.fmt, "partitions": self.partitions,
             "kafka": {"linger.ms": 5}}
        if self.fmt == "json":
            # the payload alone, NULL as NULL, TRUNCATE events, numeric as exact text
            o |= {"json_schema": False, "replace_null_with_default": False, "truncate": True,
                  "decimal_handling": "string"}
        return o

    def setup(self) -> None:
        self.pg.execute("CREATE EXTENSION IF NOT EXISTS walship")
        workload.initial(self.pg, self.schema)
        for t in workload.TABLES:
            self.kafka.create_topic(self.topic(t), partitions=self.partitions)
        tables = [f"{self.schema}.{t}" for t in workload.TABLES]
        self.pg.execute("SELECT walship.create_stream(%s, %s, %s, %s)",
                        [self.stream, self.kafka.bootstrap, tables, json.dumps(self.options())])
        self.job = wsp.StreamJob(self.spark, self.pg, self.fmt, self.schema, workload.TABLES, self.topic,
                                 self.kafka.bootstrap, self.workdir, self.stream, SINKS,
                                 max_offsets=self.max_offsets)

    def caught_up(self, timeout: float = 180) -> None:
        """Until Kafka holds every committed change (the stream confirmed it, its snapshot done)."""
        wt.wait_for(lambda: (wt.stream_status(self.pg, self.stream) or {}).get("snapshot_state") == "done",
                    timeout, 0.2, f"stream {self.stream}'s snapshot")
        wt.wait_caught_up(self.pg, self.stream, timeout)

    def sync(self, timeout: float = 300) -> float:
        """Waits until Kafka holds everything, then lets Spark consume it; returns the seconds."""
        t0 = time.monotonic()
        self.caught_up(timeout)
        self.job.drain(timeout)
        return time.monotonic() - t0

    def compare(self) -> dict[str, tuple[int, int, list[str]]]:
        out = {}
        for s in SINKS:
            rows = values = 0
            diffs: list[str] = []
            for t in workload.TABLES:
                r, v, d = wsp.compare(self.pg, self.schema, self.job.sink(t, s), t)
                rows, values, diffs = rows + r, values + v, diffs + d
            out[s] = (rows, values, diffs)
        return out

    def close(self) -> None:
        if self.job is not None:
            self.job.stop()
        self.pg.execute("SELECT walship.drop_stream(%s)", [self.stream])


def bench(pl: Pipeline, n: int, timeout: float = 600) -> float:
    """Events/s end to end: n single-row inserts committed in batches of 100, from the
    first commit until the last one is a row of the Delta table (the long-running query,
    micro-batches as fast as they come)."""
    s = pl.schema
    sink = pl.job.sink("kv", "delta")
    pl.job.start()
    try:
        t0 = time.monotonic()
        with pl.pg.connect() as conn:
            for b in range(0, n, 100):
                with conn.transaction():
                    conn.execute(f"INSERT INTO {s}.kv SELECT 'bench', 'b' || g, g FROM "
                                 "generate_series(%s::int, %s::int) g", [b, min(n, b + 100) - 1])
        last = n - 1

        def visible() -> bool:
            pl.job.check()
            return pl.spark.sql(f"SELECT count(*) FROM {sink.name} WHERE ns = 'bench' AND _is_deleted IS NOT TRUE "
                                f"AND k = 'b{last}'").collect()[0][0] == 1
        wt.wait_for(visible, timeout, 0.2, "the last bench row in Delta")
        return n / (time.monotonic() - t0)
    finally:
        pl.job.stop()


def report(fmt: str, what: str, cmp: dict, extra: str = "") -> bool:
    ok = True
    for s, (rows, values, diffs) in cmp.items():
        verdict = "EQUAL" if not diffs else f"DIFFERENT ({len(diffs)})"
        print(f"[{fmt}] {what}, {s}: {rows} rows, {values} values compared: {verdict}{extra}", flush=True)
        for d in diffs[:20]:
            print("   ", d)
        ok = ok and not diffs
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--format", choices=["json", "protobuf", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--events", type=int, default=0, help="then measure events/s with N inserts")
    ap.add_argument("--quiet", action="store_true", help="no side-by-side tables")
    args = ap.parse_args()
    fmts = ["json", "protobuf"] if args.format == "both" else [args.format]
    ok = True
    print("spark pipeline: starting Kafka, PostgreSQL and Spark ...", flush=True)
    with wt.KafkaBroker() as kafka, wt.PgCluster("sparkpipe") as pg, \
            tempfile.TemporaryDirectory(prefix="walship-spark-") as workdir:
        t0 = time.monotonic()
        spark = wsp.spark_session(workdir)
        print(f"  Kafka {kafka.bootstrap}, PostgreSQL port {pg.port}, Spark {spark.version} "
              f"({spark.sparkContext.master}) in {workdir}, session in {time.monotonic() - t0:.1f} s",
              flush=True)
        try:
            for fmt in fmts:
                pl = Pipeline(pg, kafka, spark, workdir, fmt)
                t0 = time.monotonic()
                pl.setup()
                try:
                    waited = pl.sync()
                    ok = report(fmt, "snapshot", pl.compare(), f" ({waited:.1f} s to consume)") and ok
                    for r in range(1, args.rounds + 1):
                        n = workload.round_(pg, pl.schema, r)
                        waited = pl.sync()
                        ok = report(fmt, f"round {r} ({n} statements)", pl.compare(),
                                    f" ({waited:.1f} s to consume)") and ok
                    if not args.quiet:
                        for t in workload.TABLES:
                            for s in SINKS:
                                print(wsp.side_by_side(pg, pl.schema, pl.job.sink(t, s), t))
                    if args.events:
                        print(f"[{fmt}] end to end: {bench(pl, args.events):,.0f} events/s "
                              f"({args.events} inserts, commit → row in Delta)", flush=True)
                    print(f"[{fmt}] done in {time.monotonic() - t0:.1f} s; {pl.job.changes} changes in "
                          f"{pl.job.batches} micro-batches ({pl.job.timing()})", flush=True)
                finally:
                    pl.close()
        finally:
            spark.stop()
    print("spark pipeline:", "EQUAL in every round" if ok else "DIFFERENCES (above)")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
