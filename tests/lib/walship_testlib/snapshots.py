"""Snapshots as the tests watch them (tests/integration/test_snapshot.py): the catalog
``walship.snapshots``, waiting on a snapshot's progress through crashes of the server,
a load that updates, deletes and inserts the rows of a table while it is snapshotted,
and the replay of a stream's topics that must equal the table.

The replay rule: per topic, per partition in offset order, keyed by the Kafka key:
``c``/``u``/``r`` (INSERT/UPDATE/READ in protobuf) set the row to ``after``, ``d``
(DELETE) removes it, a tombstone (a null value) removes it; a column of an update that
is an unchanged TOAST value (``__debezium_unavailable_value``) keeps the value the row
had, as a consumer of Debezium's events does. After the load stopped and
the stream caught up, the result must equal ``SELECT *`` of the table.

Import it as a module of its own (``from walship_testlib import snapshots``); the
package's ``__init__`` does not import it.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .common import wait_for
from .consume import consume_all
from .events import array_to_python
from .load import PacedLoad
from .streams import stream_status


# -- the catalog ---------------------------------------------------------------------------

SNAPSHOT_COLUMNS = ("stream, table_oid::oid AS table_oid, table_name, state, last_key, "
                    "rows_emitted, chunks, resumes, requested_at, started_at, finished_at, "
                    "error")


def snapshot_rows(pg, stream: str, conn=None) -> list[dict]:
    """The stream's rows of walship.snapshots (ordered by table_name), as dicts."""
    if conn is None:
        with pg.connect() as conn:
            return snapshot_rows(pg, stream, conn)
    cur = conn.execute(f"SELECT {SNAPSHOT_COLUMNS} FROM walship.snapshots WHERE stream = %s "
                       "ORDER BY table_name, table_oid", [stream])
    return [dict(zip([c.name for c in cur.description], r)) for r in cur.fetchall()]


def snapshot_row(pg, stream: str, table_name: str, conn=None) -> dict | None:
    """The row of walship.snapshots of one table ("public.t"), or None."""
    rows = [r for r in snapshot_rows(pg, stream, conn) if r["table_name"] == table_name]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def catalog_state(pg) -> dict:
    """Everything a refused call must leave as it was: the streams, which snapshots were
    requested (and when), the replication slots. (A snapshot already running moves its
    state and counters on by itself; those are not compared.)"""
    return {
        "streams": pg.execute("SELECT name, bootstrap_servers, tables, table_oids::oid[]::text, "
                              "options, enabled FROM walship.streams ORDER BY name"),
        "snapshots": pg.execute("SELECT stream, table_oid::oid, table_name, requested_at "
                                "FROM walship.snapshots ORDER BY stream, table_oid"),
        "slots": pg.execute("SELECT slot_name FROM pg_replication_slots ORDER BY 1"),
    }


def _quiet(fn):
    """fn(), or None while the server restarts (connection refused or killed)."""
    try:
        return fn()
    except Exception:
        return None


class Watcher:
    """Polls a stream through one connection, reconnecting through crashes."""

    def __init__(self, pg, stream: str):
        self.pg = pg
        self.stream = stream
        self.conn = None

    def _conn(self):
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = self.pg.connect()
        return self.conn

    def _call(self, fn):
        import psycopg

        try:
            return fn(self._conn())
        except (psycopg.OperationalError, psycopg.InterfaceError):
            # the server restarts (killed, crashed, stopped): connect again; any other
            # error (a query that fails) is the test's failure
            try:
                if self.conn is not None:
                    self.conn.close()
            except Exception:
                pass
            self.conn = None
            return None

    def status(self) -> dict | None:
        return self._call(lambda c: stream_status(self.pg, self.stream, c))

    def snapshots(self) -> list[dict] | None:
        return self._call(lambda c: snapshot_rows(self.pg, self.stream, c))

    def table(self, table_name: str) -> dict | None:
        rows = self.snapshots()
        if rows is None:
            return None
        for r in rows:
            if r["table_name"] == table_name:
                return r
        return None

    def close(self) -> None:
        if self.conn is not None:
            _quiet(self.conn.close)
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_table_rows(pg, stream: str, table_name: str, at_least: int, timeout: float = 120,
                    interval: float = 0.02) -> dict:
    """Waits until the snapshot of ``table_name`` has emitted ``at_least`` rows (as
    walship.snapshots saved them); returns that row. Fails if the snapshot of the table
    ends (done/failed) before that."""
    with Watcher(pg, stream) as w:
        def reached():
            r = w.table(table_name)
            if r is None:
                return None
            assert r["state"] not in ("done", "failed") or r["rows_emitted"] >= at_least, (
                f"the snapshot of {table_name} ended ({r['state']}, {r['rows_emitted']} rows, "
                f"error {r['error']!r}) before it had emitted {at_least} rows: it ran too "
                f"fast for the crash to land in its middle")
            return r if r["rows_emitted"] >= at_least else None

        return wait_for(reached, timeout, interval,
                        f"the snapshot of {table_name} ({stream}) to emit {at_least} rows")


def wait_snapshot_state(pg, stream: str, states: Sequence[str] = ("done",),
                        timeout: float = 180) -> dict:
    """Waits for stream_status.snapshot_state to be one of ``states`` (through crashes);
    returns the status row."""
    with Watcher(pg, stream) as w:
        return wait_for(lambda: (s := w.status()) and s["snapshot_state"] in states and s,
                        timeout, 0.1, f"the snapshot of stream {stream} to be {'/'.join(states)}")


def wait_running(pg, stream: str, not_pid: int | None = None, timeout: float = 90) -> dict:
    """Waits until the stream runs with a worker (other than ``not_pid``)."""
    with Watcher(pg, stream) as w:
        return wait_for(lambda: (s := w.status()) and s["state"] == "running"
                        and s["worker_pid"] not in (None, not_pid) and s,
                        timeout, 0.1, f"stream {stream} to run (again)")


def kill_worker(pg, stream: str) -> int:
    """kill -9 of the stream's worker (the postmaster then restarts every process);
    waits for the stream to run again with a new worker; returns the killed pid."""
    pid = stream_status(pg, stream)["worker_pid"]
    assert pid is not None, stream_status(pg, stream)
    os.kill(pid, signal.SIGKILL)
    wait_running(pg, stream, not_pid=pid)
    return pid


def restart_immediate(pg, stream: str) -> None:
    """pg_ctl stop -m immediate (a crash: no checkpoint, no flush), start again, and wait
    for the stream to run."""
    pg.stop("immediate")
    pg.start()
    wait_running(pg, stream)


# -- the load -----------------------------------------------------------------------------

class TableLoad(PacedLoad):
    """Updates, deletes and inserts rows of a table ``(id bigint PRIMARY KEY, v bigint,
    pad text)`` holding ids 1..``rows`` at about ``rate`` transactions a second, in a
    thread of its own, until stop(); survives crashes of the server (reconnects; the
    database is the truth, so it never needs to know whether a commit whose answer it
    lost went through).

    A transaction is 1–3 statements, each one of: an update of one random row (v + 1,
    a new pad), an update of a run of up to 20 neighbouring rows, a delete of a random
    row, an insert of a new row (ids above ``rows``), a re-insert of a random id (a
    deleted row comes back; ON CONFLICT DO NOTHING). Random ids fall ahead of and behind
    the snapshot's position alike.
    """

    def __init__(self, pg, table: str, rows: int, rate: float = 60, seed: int = 5):
        super().__init__(pg, rate, name=f"load-{table}", what=f"the load on {table}")
        self.table = table
        self.rows = rows
        self.random = random.Random(seed)
        self.next_id = rows + 1
        self.statements = collections.Counter()

    def stop(self) -> None:
        if self._stop.is_set() and not self._thread.is_alive():
            return
        super().stop()

    def _statement(self, conn) -> None:
        r = self.random
        hi = self.next_id
        roll = r.random()
        t = self.table
        if roll < 0.35:
            conn.execute(f"UPDATE {t} SET v = v + 1, pad = %s WHERE id = %s",
                         [f"u{r.randrange(10**9)}", r.randrange(1, hi)])
            self.statements["update"] += 1
        elif roll < 0.45:
            first = r.randrange(1, hi)
            conn.execute(f"UPDATE {t} SET v = v + 1 WHERE id BETWEEN %s AND %s",
                         [first, first + r.randrange(1, 20)])
            self.statements["update_run"] += 1
        elif roll < 0.70:
            conn.execute(f"DELETE FROM {t} WHERE id = %s", [r.randrange(1, hi)])
            self.statements["delete"] += 1
        elif roll < 0.92:
            row = self.next_id
            self.next_id += 1
            conn.execute(f"INSERT INTO {t} VALUES (%s, 0, 'new') ON CONFLICT DO NOTHING", [row])
            self.statements["insert"] += 1
        else:
            conn.execute(f"INSERT INTO {t} VALUES (%s, 1000, 'back') ON CONFLICT DO NOTHING",
                         [r.randrange(1, hi)])
            self.statements["reinsert"] += 1

    def _transaction(self, conn) -> None:
        with conn.transaction():
            for _ in range(self.random.randint(1, 3)):
                self._statement(conn)


# -- the replay ---------------------------------------------------------------------------

def canonical(d: dict) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)


UNCHANGED_TOAST = "__debezium_unavailable_value"  # JSON's (Debezium's) placeholder


def _pb_value(v):
    kind = v.WhichOneof("kind")
    if kind == "is_null":
        return None
    if kind == "unchanged_toast":
        return UNCHANGED_TOAST
    if kind == "json":
        return json.loads(v.json)
    if kind == "array":
        return array_to_python(v.array, _pb_value)
    return getattr(v, kind)


def _pb_row(row) -> dict:
    return {c.name: _pb_value(c.value) for c in row.columns}


@dataclass
class Event:
    partition: int
    offset: int
    op: str          # c, u, d, r, t, m, or "tombstone"
    lsn: str | None  # the walship.lsn header
    after: dict | None
    snapshot: Any = None  # JSON: payload.source.snapshot

    def short(self) -> str:
        after = None if self.after is None else {
            k: (v if not isinstance(v, str) or len(v) <= 24 else f"{v[:12]}…({len(v)})")
            for k, v in self.after.items()}
        return f"p{self.partition}@{self.offset} {self.op} lsn={self.lsn} after={after}"


@dataclass
class TopicReplay:
    topic: str
    rows: dict[str, dict] = field(default_factory=dict)      # canonical key -> after
    history: dict[str, list[Event]] = field(default_factory=dict)
    ops: collections.Counter = field(default_factory=collections.Counter)
    partitions: set = field(default_factory=set)
    keyless: int = 0
    unchanged_toast: int = 0  # updates that did not carry a TOAST-ed value

    def distinct(self, op: str) -> int:
        """Events of ``op`` not counting repeats (same key, same row: what a restarted
        worker may send again, at least once)."""
        return len({(k, canonical(e.after) if e.after is not None else None)
                    for k, h in self.history.items() for e in h if e.op == op})

    def distinct_ops(self) -> dict[str, int]:
        return {op: self.distinct(op) for op in self.ops if op != "keyless"}


PB_OPS = {1: "c", 2: "u", 3: "d", 4: "t", 5: "m", 6: "begin", 7: "commit", 8: "r"}


def replay(bootstrap: str, topics: Iterable[str], fmt: str = "json", event_class=None,
           row_class=None, timeout: float = 180, messages=None) -> dict[str, TopicReplay]:
    """Reads every partition of ``topics`` to its end and replays it (the module's rule).
    ``fmt``: "json" (json_schema false or true) or "protobuf" (pass ``event_class`` and
    ``row_class``, the walship.v1.ChangeEvent and walship.v1.Row classes)."""
    topics = list(topics)
    if messages is None:
        messages = consume_all(bootstrap, topics, timeout=timeout)
    out = {t: TopicReplay(t) for t in topics}
    for m in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
        rp = out[m.topic]
        rp.partitions.add(m.partition)
        if m.key is None:
            rp.keyless += 1
            rp.ops["keyless"] += 1
            continue
        if fmt == "json":
            k = json.loads(m.key)
            if isinstance(k, dict) and set(k) == {"schema", "payload"}:
                k = k["payload"]
        else:
            k = _pb_row(row_class.FromString(m.key))
        key = canonical(k)
        lsn = m.header("walship.lsn")
        lsn = lsn.decode() if lsn is not None else None
        if m.value is None:
            ev = Event(m.partition, m.offset, "tombstone", lsn, None)
        elif fmt == "json":
            v = json.loads(m.value)
            if isinstance(v, dict) and set(v) >= {"schema", "payload"}:
                v = v["payload"]
            ev = Event(m.partition, m.offset, v["op"], lsn, v.get("after"),
                       (v.get("source") or {}).get("snapshot"))
        else:
            e = event_class.FromString(m.value)
            ev = Event(m.partition, m.offset, PB_OPS.get(e.op, str(e.op)), lsn,
                       _pb_row(e.after) if e.HasField("after") else None)
        rp.ops[ev.op] += 1
        rp.history.setdefault(key, []).append(ev)
        if ev.op in ("c", "u", "r"):
            after = ev.after
            if ev.op == "u" and UNCHANGED_TOAST in after.values():
                # an UPDATE that left a TOAST-ed value alone does not carry it: a consumer
                # keeps the value it has (if it has none, the placeholder stays: a mismatch)
                before = rp.rows.get(key) or {}
                after = {c: (before.get(c, v) if v == UNCHANGED_TOAST else v)
                         for c, v in after.items()}
                rp.unchanged_toast += 1
            rp.rows[key] = after
        elif ev.op in ("d", "tombstone"):
            rp.rows.pop(key, None)
    return out


def primary_key(pg, table: str) -> list[str]:
    cols = [r[0] for r in pg.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY (i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        [table])]
    assert cols, f"{table} has no primary key"
    return cols


def table_contents(pg, table: str, only: bool = False) -> dict[str, dict]:
    """canonical key -> row (row_to_json) of every row of ``table`` (ONLY: no partitions)."""
    key = primary_key(pg, table)
    rows = pg.execute(f"SELECT row_to_json(t) FROM {'ONLY ' if only else ''}{table} t")
    return {canonical({c: r[0][c] for c in key}): r[0] for r in rows}


def differences(want: dict[str, dict], rp: TopicReplay, limit: int = 6) -> list[str]:
    """What differs between a table (``want``) and a topic's replay, with the events of
    each example key: an empty list when they are equal."""
    got = rp.rows
    missing = [k for k in want if k not in got]
    present = [k for k in got if k not in want]
    stale = [k for k in want if k in got and got[k] != want[k]]
    out = []

    def hist(k):
        return "; ".join(e.short() for e in rp.history.get(k, [])) or "no events"

    def short(row):
        return None if row is None else {
            c: (v if not isinstance(v, str) or len(v) <= 24 else f"{v[:12]}…({len(v)})")
            for c, v in row.items()}

    if missing:
        out.append(f"{rp.topic}: {len(missing)} row(s) of the table missing from the replay")
        out += [f"  missing {k}: table {short(want[k])}; events: {hist(k)}"
                for k in missing[:limit]]
    if stale:
        out.append(f"{rp.topic}: {len(stale)} row(s) stale in the replay")
        out += [f"  stale {k}: table {short(want[k])}, replay {short(got[k])}; events: {hist(k)}"
                for k in stale[:limit]]
    if present:
        out.append(f"{rp.topic}: {len(present)} row(s) in the replay that the table does not "
                   "hold (deleted, or never committed)")
        out += [f"  present {k}: replay {short(got[k])}; events: {hist(k)}"
                for k in present[:limit]]
    return out


def assert_replay_equals(pg, table: str, rp: TopicReplay, only: bool = False) -> dict:
    """The replay of the table's topic equals the table; returns the table's contents."""
    want = table_contents(pg, table, only)
    problems = differences(want, rp)
    assert not problems, "\n".join(
        [f"replaying {rp.topic} does not give {table} ({len(want)} rows; replay "
         f"{len(rp.rows)} rows; events {dict(rp.ops)}):"] + problems)
    return want
