"""The fault suite's load generator and verifier (tests/integration/test_faults.py).

The load: small numbered transactions, committed one after another by one client that
survives crashes of the server (it reconnects, and never needs to know whether a commit
whose answer it lost went through):

- inserts into ``f_ins`` (one row each, ids from a counter);
- updates of 50 hot keys of ``f_hot`` (``v`` set to the transaction's sequence number,
  so that per key the versions grow in commit order), each logged in ``f_hotlog``, a
  table no stream covers, in the same transaction;
- rolled-back inserts into ``f_ins`` (ids of their own), which must never arrive;
- inserts into ``f_other``, which no stream covers either;
- every 250th transaction a large one: 2,000 rows into ``f_ins``.

The truth is the database afterwards: ``f_ins`` holds every committed insert,
``f_hotlog`` every committed update. The verifier reads both topics, every partition to
its end, and reports committed / received / distinct / duplicates / lost / phantoms
(received, never committed: a rolled-back row) / per-key order violations (a new version
of a hot key that arrives after a later one; a duplicate re-sent after a crash repeats
an old version and is counted as a duplicate, not as a violation).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import walship_testlib as wt
from walship_testlib.load import PacedLoad

HOT_KEYS = 50
LARGE_EVERY = 250
LARGE_ROWS = 2000
ROLLBACK_BASE = 1_000_000_000  # ids of rolled-back inserts: never committed

SCHEMA_SQL = f"""
CREATE TABLE f_ins (id bigint PRIMARY KEY, seq bigint NOT NULL, pad text);
CREATE TABLE f_hot (k int PRIMARY KEY, v bigint NOT NULL);
CREATE TABLE f_hotlog (seq bigint PRIMARY KEY, k int NOT NULL);
CREATE TABLE f_other (id bigint PRIMARY KEY);
INSERT INTO f_hot SELECT g, 0 FROM generate_series(0, {HOT_KEYS - 1}) g;
"""
TABLES = ["public.f_ins", "public.f_hot"]


def create_schema(pg) -> None:
    with pg.connect() as conn:
        conn.execute(SCHEMA_SQL)


def create_stream(pg, bootstrap: str, name: str, **options) -> list[str]:
    """A JSON stream of f_ins and f_hot; returns its two topics. Changes only: the load
    inserts while a snapshot would read, and each row it read after its insert would
    count as a duplicate (tests/integration/test_snapshot.py crashes snapshots)."""
    opts = {"topic_prefix": name, "format": "json", "json_schema": False,
            "snapshot_mode": "no_data", **options}
    pg.execute("SELECT walship.create_stream(%s, %s, %s, %s::jsonb)",
               [name, bootstrap, TABLES, json.dumps(opts)])
    wt.wait_for(lambda: (wt.stream_status(pg, name) or {}).get("state") == "running", 60, 0.1,
                f"stream {name} to run")
    return [f"{name}.public.f_ins", f"{name}.public.f_hot"]


class LoadGenerator(PacedLoad):
    """Commits the load (see the module's docstring) at about ``rate`` transactions a
    second in a thread of its own, until stop()."""

    def __init__(self, pg, rate: float = 300, seed: int = 7, resume: bool = False):
        """``resume``: go on after what the database holds (a promoted standby's load),
        ten million ids and sequence numbers further, so that a change the old primary
        committed and the standby never got cannot be mistaken for a new one."""
        super().__init__(pg, rate, name="walship-load", what="the load generator")
        self.random = random.Random(seed)
        self.seq = 0
        self.next_id = 1
        if resume:
            self.seq = pg.scalar(
                "SELECT greatest((SELECT max(seq) FROM f_ins), (SELECT max(seq) FROM f_hotlog), "
                "(SELECT max(id) FROM f_other), 0)") + 10_000_000
            self.next_id = pg.scalar(
                f"SELECT coalesce(max(id), 0) + 10000001 FROM f_ins WHERE id < {ROLLBACK_BASE}")
        self.next_rollback_id = ROLLBACK_BASE

    def _transaction(self, conn) -> None:
        self.seq += 1
        seq = self.seq
        if seq % LARGE_EVERY == 0:
            first = self.next_id
            self.next_id += LARGE_ROWS
            with conn.transaction():
                conn.execute("INSERT INTO f_ins SELECT g, %s, 'large' FROM "
                             "generate_series(%s::bigint, %s::bigint) g",
                             [seq, first, first + LARGE_ROWS - 1])
            return
        roll = self.random.random()
        if roll < 0.60:
            row = self.next_id
            self.next_id += 1
            conn.execute("INSERT INTO f_ins VALUES (%s, %s, 'x')", [row, seq])
        elif roll < 0.85:
            k = self.random.randrange(HOT_KEYS)
            with conn.transaction():
                conn.execute("UPDATE f_hot SET v = %s WHERE k = %s", [seq, k])
                conn.execute("INSERT INTO f_hotlog VALUES (%s, %s)", [seq, k])
        elif roll < 0.93:
            row = self.next_rollback_id
            self.next_rollback_id += 1
            conn.execute("BEGIN")
            conn.execute("INSERT INTO f_ins VALUES (%s, %s, 'rolled back')", [row, seq])
            conn.execute("ROLLBACK")
        else:
            conn.execute("INSERT INTO f_other VALUES (%s)", [seq])


@dataclass
class Report:
    committed: int = 0
    received: int = 0
    distinct: int = 0
    duplicates: int = 0
    lost: int = 0
    phantoms: int = 0
    order_violations: int = 0
    lost_examples: list = field(default_factory=list)
    violation_examples: list = field(default_factory=list)

    def line(self) -> str:
        return (f"committed {self.committed}, received {self.received}, distinct "
                f"{self.distinct}, duplicates {self.duplicates}, lost {self.lost}, phantoms "
                f"{self.phantoms}, order violations {self.order_violations}")


def verify(pg, bootstrap: str, topics: list[str], timeout: float = 120,
           isolation_level: str = "read_committed") -> Report:
    """Compares what the database committed with what every partition of the stream's
    two topics holds (read to its end; call after the stream caught up), as a consumer of
    ``isolation_level`` sees it: read_committed (the default) skips what an exactly-once
    stream's aborted Kafka transactions wrote."""
    ins_topic, hot_topic = topics
    committed_ins = {r[0] for r in pg.execute("SELECT id FROM f_ins")}
    committed_hot = {(r[0], r[1]) for r in pg.execute("SELECT k, seq FROM f_hotlog")}
    report = Report(committed=len(committed_ins) + len(committed_hot))

    seen_ins: dict[int, int] = {}
    seen_hot: dict[tuple[int, int], int] = {}
    newest: dict[int, int] = {}
    for m in wt.consume_all(bootstrap, [ins_topic, hot_topic], timeout=timeout,
                            isolation_level=isolation_level):
        report.received += 1
        value = json.loads(m.value)
        after = value["after"]
        if m.topic == ins_topic:
            seen_ins[after["id"]] = seen_ins.get(after["id"], 0) + 1
            continue
        key = (after["k"], after["v"])
        seen_hot[key] = seen_hot.get(key, 0) + 1
        if seen_hot[key] > 1:
            continue  # a re-sent old version: a duplicate
        if after["v"] < newest.get(after["k"], -1):
            report.order_violations += 1
            if len(report.violation_examples) < 5:
                report.violation_examples.append(
                    (after["k"], after["v"], newest[after["k"]], m.partition, m.offset))
        newest[after["k"]] = max(after["v"], newest.get(after["k"], -1))

    report.distinct = len(seen_ins) + len(seen_hot)
    report.duplicates = report.received - report.distinct
    lost_ins = committed_ins - set(seen_ins)
    lost_hot = committed_hot - set(seen_hot)
    report.lost = len(lost_ins) + len(lost_hot)
    report.lost_examples = sorted(lost_ins)[:5] + sorted(lost_hot)[:5]
    # the hot rows' first version (v 0, inserted with the schema) is no logged change, but
    # a stream with a snapshot sends it as a read: a version the table had, no phantom
    initial_hot = {(k, 0) for k in range(HOT_KEYS)}
    report.phantoms = (len(set(seen_ins) - committed_ins)
                       + len(set(seen_hot) - committed_hot - initial_hot))
    return report
