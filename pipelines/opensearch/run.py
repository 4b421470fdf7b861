"""PostgreSQL → walship → Kafka → OpenSearch, end to end, in one process tree.

Starts a throwaway PostgreSQL (walship preloaded), the test Kafka broker and one OpenSearch
node, creates two tables with rows, a stream over them (its snapshot sends those rows),
one index per table (mapping from PostgreSQL's catalog) and the sink (walship_opensearch.Sink,
a Kafka consumer in this process), runs the workload rounds, and after each round waits
until the sink has committed everything and compares every document with PostgreSQL's row.

    python3 pipelines/opensearch/run.py [--format json|protobuf|both] [--rounds 2]
                                        [--order kafka|adversarial]
                                        [--events N]   # also measure events/s end to end

Exit status 0 when OpenSearch equals PostgreSQL after every round, in every format.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "common"))

import walship_testlib as wt  # noqa: E402
import walship_opensearch as wos  # noqa: E402
import workload  # noqa: E402


class Pipeline:
    """One format's pipeline: a schema in PostgreSQL, a stream, its indexes and sinks
    (one per ``orders`` entry, each with its own consumer group and index names)."""

    def __init__(self, pg, kafka, client: "wos.OpenSearchClient", fmt: str, partitions: int = 3,
                 orders: tuple[str, ...] = ("kafka",)):
        self.pg, self.kafka, self.client, self.fmt = pg, kafka, client, fmt
        self.schema = f"src_{fmt}"
        self.stream = f"os_{fmt}"
        self.prefix = f"os_{fmt}"
        self.partitions = partitions
        self.orders = orders
        self.sinks: dict[str, wos.Sink] = {}
        self.tables: dict[str, dict[str, wos.TableSink]] = {}

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
        with self.pg.connect() as conn:
            cols = {t: wos.table_columns(conn, f'"{self.schema}"."{t}"') for t in workload.TABLES}
        for order in self.orders:
            suffix = "" if order == "kafka" else f".{order}"
            tabs = {}
            for t in workload.TABLES:
                dec = wos.JsonDecoder(cols[t]) if self.fmt == "json" else wos.ProtobufDecoder(cols[t])
                tabs[t] = wos.TableSink(self.topic(t), wos.index_name(self.topic(t)) + suffix, cols[t], dec)
            self.tables[order] = tabs
            sink = wos.Sink(self.kafka.bootstrap, self.client, list(tabs.values()),
                            f"opensearch-{self.fmt}-{order}-{uuid.uuid4().hex[:8]}", order=order)
            sink.create_indexes()
            self.sinks[order] = sink.start()
        tables = [f"{self.schema}.{t}" for t in workload.TABLES]
        self.pg.execute("SELECT walship.create_stream(%s, %s, %s, %s)",
                        [self.stream, self.kafka.bootstrap, tables, json.dumps(self.options())])

    def sync(self, timeout: float = 180) -> float:
        """Waits until Kafka holds every committed change (the stream confirmed it, its
        snapshot done) and every sink committed all of it; returns the seconds waited."""
        t0 = time.monotonic()
        wt.wait_for(lambda: (wt.stream_status(self.pg, self.stream) or {}).get("snapshot_state") == "done",
                    timeout, 0.2, f"stream {self.stream}'s snapshot")
        wt.wait_caught_up(self.pg, self.stream, timeout)
        for s in self.sinks.values():
            s.wait_consumed(self.kafka.bootstrap, timeout)
        return time.monotonic() - t0

    def replay(self, order: str = "kafka", timeout: float = 180) -> dict:
        """At-least-once, the worst case: a new consumer group reads every topic again from
        the beginning into the same indexes; returns its sink's counters. The indexes must
        then still equal the tables (versions reject what is older, floors what a truncate
        removed, carries are in the state index)."""
        sink = wos.Sink(self.kafka.bootstrap, self.client, list(self.tables[order].values()),
                        f"opensearch-{self.fmt}-replay-{uuid.uuid4().hex[:8]}", order=order)
        sink.create_indexes(exist_ok=True)
        sink.start()
        try:
            sink.wait_consumed(self.kafka.bootstrap, timeout)
        finally:
            sink.stop()
        return dict(sink.stats)

    def compare(self, order: str = "kafka") -> tuple[int, int, list[str]]:
        rows = values = 0
        diffs: list[str] = []
        for t, ts in self.tables[order].items():
            r, v, d = wos.compare(self.pg, self.client, self.schema, ts, t)
            rows, values, diffs = rows + r, values + v, diffs + d
        return rows, values, diffs

    def close(self) -> None:
        for s in self.sinks.values():
            s.stop()
        self.pg.execute("SELECT walship.drop_stream(%s)", [self.stream])


def bench(pl: Pipeline, n: int) -> float:
    """Events/s end to end: n single-row inserts committed in batches of 100, from the
    first commit until the last one's document is visible in OpenSearch (real-time GET)."""
    s = pl.schema
    t0 = time.monotonic()
    with pl.pg.connect() as conn:
        for b in range(0, n, 100):
            with conn.transaction():
                conn.execute(f"INSERT INTO {s}.kv SELECT 'bench', 'b' || g, g FROM generate_series(%s::int, %s::int) g",
                             [b, min(n, b + 100) - 1])
    ts = pl.tables["kafka"]["kv"]
    last = wos.urlq(wos.doc_id(("bench", f"b{n - 1}")))
    wt.wait_for(lambda: (pl.sinks["kafka"].check() or
                         pl.client.request("GET", f"/{ts.index}/_doc/{last}", ok=(404,)).get("found")),
                600, 0.05, "the last bench document")
    return n / (time.monotonic() - t0)


def main() -> int:  # noqa: C901
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--format", choices=["json", "protobuf", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--order", choices=["kafka", "adversarial", "both"], default="both",
                    help="how the sink interleaves partitions (both: two sinks, two sets of indexes)")
    ap.add_argument("--events", type=int, default=0, help="then measure events/s with N inserts")
    ap.add_argument("--quiet", action="store_true", help="no side-by-side tables")
    args = ap.parse_args()
    fmts = ["json", "protobuf"] if args.format == "both" else [args.format]
    orders = ("kafka", "adversarial") if args.order == "both" else (args.order,)
    if args.events and "kafka" not in orders:
        orders = ("kafka",) + orders
    ok = True
    print("opensearch pipeline: starting Kafka, PostgreSQL and OpenSearch ...", flush=True)
    with wt.KafkaBroker() as kafka, wt.PgCluster("ospipe") as pg, wos.OpenSearchServer() as node:
        print(f"  Kafka {kafka.bootstrap}, PostgreSQL port {pg.port}, OpenSearch {node.version()} on "
              f"127.0.0.1:{node.port} (up in {node.started_in:.1f} s, home {node.home})", flush=True)
        for fmt in fmts:
            pl = Pipeline(pg, kafka, node.client, fmt, orders=orders)
            t0 = time.monotonic()
            try:
                pl.setup()
                for r in range(0, args.rounds + 1):
                    n = workload.round_(pg, pl.schema, r) if r else 0
                    waited = pl.sync()
                    for order in orders:
                        rows, values, diffs = pl.compare(order)
                        verdict = "EQUAL" if not diffs else "DIFFERENT"
                        what = "snapshot" if r == 0 else f"round {r} ({n} statements)"
                        print(f"[{fmt}/{order}] {what}: {rows} rows, {values} values compared: {verdict} "
                              f"({waited:.1f} s to consume)", flush=True)
                        for d in diffs[:20]:
                            print("   ", d)
                        ok = ok and not diffs
                for order in orders:
                    print(f"[{fmt}/{order}] sink: {dict(sorted(pl.sinks[order].stats.items()))}", flush=True)
                if not args.quiet:
                    for t, ts in pl.tables[orders[0]].items():
                        print(wos.side_by_side(pg, node.client, pl.schema, ts, t))
                if args.events:
                    print(f"[{fmt}] end to end: {bench(pl, args.events):,.0f} events/s "
                          f"({args.events} inserts, commit → document in OpenSearch)", flush=True)
                print(f"[{fmt}] done in {time.monotonic() - t0:.1f} s", flush=True)
            finally:
                pl.close()
    print("opensearch pipeline:", "EQUAL in every round" if ok else "DIFFERENCES (above)")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
