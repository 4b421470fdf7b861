"""PostgreSQL → walship → Kafka → ClickHouse, end to end, in one process tree.

Starts a throwaway PostgreSQL (walship preloaded), the test Kafka broker and an embedded
ClickHouse (chDB), creates two tables with rows, a stream over them (its snapshot sends
those rows), the ClickHouse side (Kafka engine → materialized view → changes table →
current-state view), runs the workload rounds, and after each round waits until
ClickHouse has consumed everything and compares every row and column with PostgreSQL's.

    python3 pipelines/clickhouse/run.py [--format json|protobuf|both] [--rounds 2]
                                        [--events N]   # also measure events/s end to end

Exit status 0 when ClickHouse equals PostgreSQL after every round, in every format.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "common"))

import walship_testlib as wt  # noqa: E402
import consumer as chconsumer  # noqa: E402
import walship_clickhouse as wch  # noqa: E402
import workload  # noqa: E402


class Pipeline:
    """One format's pipeline: a schema in PostgreSQL, a stream, a ClickHouse database."""

    def __init__(self, pg, kafka, ch: "wch.ClickHousePipeline", fmt: str, partitions: int = 3,
                 consumer: str = "engine"):
        """``consumer``: "engine" (ClickHouse's Kafka engine and a materialized view) or
        "python" (consumer.py: a Kafka consumer outside ClickHouse inserts the batches)."""
        if consumer not in ("engine", "python"):
            raise ValueError(f"consumer {consumer!r}: engine or python")
        self.pg, self.kafka, self.ch, self.fmt, self.consumer = pg, kafka, ch, fmt, consumer
        name = f"ch_{fmt}" if consumer == "engine" else f"ch_{fmt}_py"
        self.schema = f"src_{fmt}" if consumer == "engine" else f"src_{fmt}_py"
        self.stream = self.prefix = self.db = name
        self.group = f"clickhouse-{fmt}-{consumer}-{uuid.uuid4().hex[:8]}"
        self.partitions = partitions
        self.specs: dict[str, wch.TableSpec] = {}
        self.reader: "chconsumer.Consumer | None" = None

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
        import json

        self.pg.execute("CREATE EXTENSION IF NOT EXISTS walship")
        workload.initial(self.pg, self.schema)
        for t in workload.TABLES:
            self.kafka.create_topic(self.topic(t), partitions=self.partitions)
        tables = [f"{self.schema}.{t}" for t in workload.TABLES]
        self.pg.execute("SELECT walship.create_stream(%s, %s, %s, %s)",
                        [self.stream, self.kafka.bootstrap, tables, json.dumps(self.options())])
        proto = str(wch.proto_file()) if self.fmt == "protobuf" else None
        with self.pg.connect() as conn:
            for t in workload.TABLES:
                self.specs[t] = self.ch.add_table(conn, self.db, self.schema, t, self.topic(t), self.fmt,
                                                  self.kafka.bootstrap, self.group, proto,
                                                  engine=self.consumer == "engine")
        if self.consumer == "python":
            self.reader = chconsumer.Consumer(self.ch, self.db, {self.topic(t): self.specs[t] for t in workload.TABLES},
                                              self.fmt, self.kafka.bootstrap, self.group).start()

    def close(self) -> None:
        """Stops the Python consumer (raising its error, if it had one) and drops the stream."""
        try:
            if self.reader is not None:
                self.reader.stop()
        finally:
            self.pg.execute("SELECT walship.drop_stream(name) FROM walship.streams WHERE name = %s",
                            [self.stream])

    def sync(self, timeout: float = 180) -> float:
        """Waits until Kafka holds every committed change (the stream confirmed it, its
        snapshot done) and ClickHouse consumed all of it; returns the seconds waited."""
        t0 = time.monotonic()
        wt.wait_for(lambda: (wt.stream_status(self.pg, self.stream) or {}).get("snapshot_state") == "done",
                    timeout, 0.2, f"stream {self.stream}'s snapshot")
        wt.wait_caught_up(self.pg, self.stream, timeout)
        wch.wait_consumed(self.kafka.bootstrap, self.group, [self.topic(t) for t in workload.TABLES],
                          timeout, progress=self.reader.check if self.reader else None,
                          diagnose=lambda: self.ch.consumer_errors(self.db))
        return time.monotonic() - t0

    def compare(self) -> tuple[int, int, list[str]]:
        rows = values = 0
        diffs: list[str] = []
        for t in workload.TABLES:
            r, v, d = wch.compare(self.pg, self.ch, self.db, self.schema, self.specs[t])
            rows, values, diffs = rows + r, values + v, diffs + d
        return rows, values, diffs

    def changes(self) -> int:
        return sum(int(self.ch.query(f"SELECT count() FROM `{self.db}`.`{t}__changes`").strip())
                   for t in workload.TABLES)


def bench(pl: Pipeline, n: int) -> float:
    """Events/s end to end: n single-row inserts and updates committed in batches of 100,
    from the first commit until ClickHouse's current-state view shows the last one."""
    s = pl.schema
    t0 = time.monotonic()
    with pl.pg.connect() as conn:
        for b in range(0, n, 100):
            with conn.transaction():
                conn.execute(f"INSERT INTO {s}.kv SELECT 'bench', 'b' || g, g FROM generate_series(%s::int, %s::int) g",
                             [b, min(n, b + 100) - 1])
    last = n - 1
    wt.wait_for(lambda: pl.ch.query(f"SELECT count() FROM `{pl.db}`.kv__changes WHERE ns = 'bench' "
                                    f"AND k = 'b{last}'").strip() == "1", 300, 0.05, "the last bench row")
    return n / (time.monotonic() - t0)


def main() -> int:  # noqa: C901
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--format", choices=["json", "protobuf", "both"], default="both")
    ap.add_argument("--consumer", choices=["engine", "python"], default="engine",
                    help="ClickHouse's Kafka engine, or a Python consumer that inserts (consumer.py)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--events", type=int, default=0, help="then measure events/s with N inserts")
    ap.add_argument("--quiet", action="store_true", help="no side-by-side tables")
    args = ap.parse_args()
    fmts = ["json", "protobuf"] if args.format == "both" else [args.format]
    ok = True
    print("clickhouse pipeline: starting Kafka, PostgreSQL and chDB ...", flush=True)
    with wt.KafkaBroker() as kafka, wt.PgCluster("chpipe") as pg, \
            tempfile.TemporaryDirectory(prefix="walship-chdb-") as chdir:
        ch = wch.ClickHousePipeline(chdir)
        print(f"  Kafka {kafka.bootstrap}, PostgreSQL port {pg.port}, chDB "
              f"{ch.query('SELECT version()').strip()} in {chdir}", flush=True)
        try:
            for fmt in fmts:
                pl = Pipeline(pg, kafka, ch, fmt, consumer=args.consumer)
                try:
                    t0 = time.monotonic()
                    pl.setup()
                    waited = pl.sync()
                    rows, values, diffs = pl.compare()
                    print(f"[{fmt}] snapshot: {rows} rows, {values} values compared, {len(diffs)} differences "
                          f"({waited:.1f} s to consume)", flush=True)
                    for d in diffs[:20]:
                        print("   ", d)
                    ok = ok and not diffs
                    for r in range(1, args.rounds + 1):
                        n = workload.round_(pg, pl.schema, r)
                        waited = pl.sync()
                        rows, values, diffs = pl.compare()
                        verdict = "EQUAL" if not diffs else "DIFFERENT"
                        print(f"[{fmt}] round {r}: {n} statements, {pl.changes()} change rows in ClickHouse; "
                              f"{rows} rows, {values} values compared: {verdict} ({waited:.1f} s to consume)",
                              flush=True)
                        for d in diffs[:20]:
                            print("   ", d)
                        ok = ok and not diffs
                    if not args.quiet:
                        for t in workload.TABLES:
                            print(wch.side_by_side(pg, ch, pl.db, pl.schema, pl.specs[t]))
                    if args.events:
                        print(f"[{fmt}] end to end: {bench(pl, args.events):,.0f} events/s "
                              f"({args.events} inserts, commit → row in ClickHouse)", flush=True)
                    print(f"[{fmt}] done in {time.monotonic() - t0:.1f} s", flush=True)
                finally:
                    pl.close()
        finally:
            ch.close()
    print("clickhouse pipeline:", "EQUAL in every round" if ok else "DIFFERENCES (above)")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
