"""Snapshots (docs/snapshots.md, issue 9): the rows a stream's tables hold, sent as read
events while their changes stream, resumed after any crash, never restarted.

The proof is the replay (tests/lib/walship_testlib/snapshots.py): per topic, per
partition in offset order, keyed by the Kafka key, c/u/r set the row to ``after``, d and
tombstones remove it; once the load stopped and the stream caught up, the result must
equal ``SELECT *`` of the table: no row missing, none stale, none deleted still present.

- a 200,000-row table snapshotted (snapshot_mode initial) while a load updates, deletes
  and inserts its rows, through a kill -9 of the worker and an immediate restart of
  PostgreSQL in its middle; the same for an on-demand snapshot (walship.snapshot) and for
  a table added with walship.alter_stream. Each asserts the snapshot resumed (resumes in
  walship.snapshots, and far fewer read events than a restart would send);
- an empty table; a table dropped during its snapshot; keys changed during the snapshot;
  a partitioned table with and without partition_root; 10 kB TOAST values, also of
  rows updated (the value left alone) while their chunks are read;
  snapshot_mode no_data; the events (op r / source.snapshot incremental in JSON, READ in
  protobuf); the status columns;
- bad input: each a clear error naming what is wrong, raised before anything changes.
"""

from __future__ import annotations

import json
import random
import re
import string
import threading
import time

import psycopg
import pytest

import walship_testlib as wt
from walship_testlib import snapshots as snap

status = wt.stream_status
PARTITIONS = 3
LOAD_RATE = 40  # transactions a second (1-3 statements each): 2 cores, shared


def stream_options(name, **options):
    return {"topic_prefix": name, "format": "json", "json_schema": False,
            "partitions": PARTITIONS,
            # without it the broker auto-creates a topic (1 partition) before walship does
            "kafka": {"allow.auto.create.topics": "false"}, **options}


_created: list = []  # (cluster, stream) of the running test, dropped after it


@pytest.fixture(autouse=True)
def drop_leftover_streams():
    """A test that fails half-way leaves no worker running into the next ones."""
    yield
    while _created:
        pg, name = _created.pop()
        try:
            if pg.running and status(pg, name) is not None:
                drop_stream(pg, name)
        except Exception:  # reported by the test itself, if it matters
            pass


def create_stream(pg, bootstrap, name, tables, keep=False, **options):
    """create_stream (JSON, 3 partitions, ``options``) and wait for it to run; dropped
    after the test unless ``keep``."""
    pg.execute("SELECT walship.create_stream(%s, %s, %s, %s::jsonb)",
               [name, bootstrap, tables, json.dumps(stream_options(name, **options))])
    if not keep:
        _created.append((pg, name))
    return snap.wait_running(pg, name, timeout=60)


def sql_error(pg, sql, params=None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        pg.execute(sql, params)
    return info.value


def message(err: psycopg.Error) -> str:
    d = err.diag
    return " | ".join(x for x in (d.message_primary, d.message_detail, d.message_hint) if x)


def fill(pg, table, rows, pad="p"):
    """CREATE TABLE table (id bigint PRIMARY KEY, v bigint NOT NULL, pad text) with ids
    1..rows."""
    pg.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, v bigint NOT NULL, pad text)")
    pg.execute(f"INSERT INTO {table} SELECT g, g %% 1000, %s || g FROM generate_series(1, %s) g",
               [pad, rows])
    pg.execute(f"ANALYZE {table}")


def topic_of(name, table):
    return f"{name}.public.{table}"


def drop_stream(pg, name):
    pg.execute("SELECT walship.drop_stream(%s)", [name])


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION walship")
    return pg


@pytest.fixture
def cluster(request):
    """A cluster of the test's own, for the tests that crash it."""
    pg = wt.PgCluster(f"snap_{request.node.name[5:20]}",
                      extra_conf=f"walship.snapshot_max_in_flight = {IN_FLIGHT_CEILING}")
    try:
        pg.execute("CREATE EXTENSION walship")
        yield pg
    finally:
        pg.cleanup()


# -- through crashes ----------------------------------------------------------------------

def stop_start(pg, name):
    pg.execute("SELECT walship.stop_stream(%s)", [name])
    pg.execute("SELECT walship.start_stream(%s)", [name])
    snap.wait_running(pg, name)


# walship.snapshot_max_in_flight in the crash tests' clusters: no new chunk while more
# events are in flight (the default, 20,000, would allow more resends than these tables
# have rows)
IN_FLIGHT_CEILING = 2_000
CRASHES = [(0.35, snap.kill_worker, "kill -9 of the worker"),
           (0.70, snap.restart_immediate, "pg_ctl stop -m immediate + start")]


def snapshot_through_crashes(pg, bootstrap, name, table, rows, chunk, begin, figures, label,
                             interruptions=CRASHES):
    """A load on ``table`` (ids 1..rows); ``begin()`` starts its snapshot; at 35 % of the
    rows the worker is killed (kill -9), at 70 % PostgreSQL stops -m immediate and starts
    again (and whatever else ``interruptions`` holds); the snapshot must finish, resumed,
    and the replay of the table's topic must equal the table."""
    tname = f"public.{table}"
    started = time.monotonic()
    load = snap.TableLoad(pg, table, rows, rate=LOAD_RATE)
    at = []
    try:
        load.start()
        time.sleep(0.5)
        begin()
        midway = 0  # interruptions the snapshot had not finished by: each one resumes
        for fraction, interrupt, _ in interruptions:
            at.append(snap.wait_table_rows(pg, name, tname, int(rows * fraction),
                                           timeout=150)["rows_emitted"])
            interrupt(pg, name)
            if snap.snapshot_row(pg, name, tname)["state"] != "done":
                midway += 1
        final = snap.wait_snapshot_state(pg, name, ("done", "failed"), timeout=180)
        time.sleep(1)  # changes after the snapshot, too
    finally:
        load.stop()
    snapshot_s = time.monotonic() - started
    assert final["snapshot_state"] == "done", final
    assert load.failures > 0, "the crashes did not hit the load"
    wt.wait_caught_up(pg, name, timeout=180)

    topic = topic_of(name, table)
    rp = snap.replay(bootstrap, [topic], timeout=240)[topic]
    row = snap.snapshot_row(pg, name, tname)
    reads = rp.ops["r"]
    inserted = load.statements["insert"]
    figures(f"{label}: {rows} rows, {reads} read events ({reads / rows:.3f} per row), "
            f"{reads - row['rows_emitted']} sent again, "
            f"resumes {row['resumes']}, chunks {row['chunks']}, interrupted at {at} rows; "
            f"load {load.commits} transactions {dict(load.statements)}; {snapshot_s:.0f} s")
    snap.assert_replay_equals(pg, table, rp)
    assert row["state"] == "done" and row["error"] is None, row
    assert row["finished_at"] is not None and row["started_at"] is not None, row
    # resumed, not restarted: each interruption in the middle, one resumption (a fast
    # machine may finish before the last one: the kill and the restart must both hit)
    assert midway >= 2, at
    assert row["resumes"] >= midway, row
    # resumed, not restarted: each row's chunk is counted once in rows_emitted (a restart
    # from the start would read and count the rows before the crash again) ...
    assert row["rows_emitted"] <= rows + inserted, (row, rows, inserted)
    # ... and what the interruptions sent again is within the design's bound: per
    # interruption, the events in flight (at most the ceiling, stream_snapshot.c's
    # kafka_has_room) and two chunks, whatever the table's size
    ceiling = max(IN_FLIGHT_CEILING, 4 * chunk) + 2 * chunk
    resent = reads - row["rows_emitted"]
    assert 0 <= resent <= len(interruptions) * ceiling, (reads, row, len(interruptions), ceiling)
    # every row the load never touched can only have come from the snapshot
    untouched = pg.scalar(f"SELECT count(*) FROM {table} WHERE id <= %s AND v = id %% 1000 "
                          f"AND pad = 'p' || id", [rows])
    read_keys = sum(1 for h in rp.history.values() if any(e.op == "r" for e in h))
    assert read_keys >= untouched > rows // 2, (read_keys, untouched)
    assert all(e.snapshot == "incremental" for h in rp.history.values() for e in h
               if e.op == "r")
    assert rp.partitions == set(range(PARTITIONS))
    return rp, row


@pytest.mark.timeout(420)
def test_initial_snapshot_of_200k_rows_through_kill_9_and_immediate_restart(
        cluster, kafka, unique, figures):
    pg, name, rows = cluster, unique[:40], 200_000
    fill(pg, "big", rows)
    snapshot_through_crashes(
        pg, kafka.bootstrap, name, "big", rows, 1000,
        lambda: create_stream(pg, kafka.bootstrap, name, ["public.big"],
                              snapshot_chunk_size=1000),
        figures, "initial snapshot, kill -9 + immediate restart")
    s = status(pg, name)
    assert s["snapshot_tables_done"] == s["snapshot_tables_total"] == 1, s
    assert s["state"] == "running", s
    drop_stream(pg, name)


@pytest.mark.timeout(360)
def test_on_demand_snapshot_through_kill_9_and_immediate_restart(cluster, kafka, unique,
                                                                   figures):
    pg, name, rows = cluster, unique[:40], 60_000
    fill(pg, "od", rows)
    create_stream(pg, kafka.bootstrap, name, ["public.od"], snapshot_mode="no_data",
                  snapshot_chunk_size=500)
    assert status(pg, name)["snapshot_state"] == "none"
    assert snap.snapshot_rows(pg, name) == []
    snapshot_through_crashes(
        pg, kafka.bootstrap, name, "od", rows, 500,
        lambda: pg.execute("SELECT walship.snapshot(%s, ARRAY['public.od'])", [name]),
        figures, "walship.snapshot, kill -9 + immediate restart + stop/start",
        CRASHES + [(0.85, stop_start, "stop_stream + start_stream")])
    drop_stream(pg, name)


@pytest.mark.timeout(360)
def test_table_added_by_alter_stream_through_kill_9_and_immediate_restart(
        cluster, kafka, unique, figures):
    pg, name, rows = cluster, unique[:40], 60_000
    fill(pg, "al_first", 2000)
    fill(pg, "al_added", rows)
    create_stream(pg, kafka.bootstrap, name, ["public.al_first"], snapshot_chunk_size=500)
    snap.wait_snapshot_state(pg, name, ("done",), timeout=60)
    assert snap.snapshot_row(pg, name, "public.al_added") is None

    def begin():
        pg.execute("SELECT walship.alter_stream(%s, "
                   "ARRAY['public.al_first', 'public.al_added'])", [name])

    snapshot_through_crashes(pg, kafka.bootstrap, name, "al_added", rows, 500, begin, figures,
                             "alter_stream adds a table, kill -9 + immediate restart")
    assert pg.scalar("SELECT tables FROM walship.streams WHERE name = %s", [name]) == \
        ["public.al_first", "public.al_added"]
    s = status(pg, name)
    assert s["snapshot_state"] == "done" and s["snapshot_tables_total"] == 2, s
    assert s["snapshot_tables_done"] == 2, s
    # the first table was not snapshotted again, and its topic still replays to it
    first = snap.snapshot_row(pg, name, "public.al_first")
    assert first["state"] == "done" and first["rows_emitted"] == 2000, first
    topic = topic_of(name, "al_first")
    rp = snap.replay(kafka.bootstrap, [topic])[topic]
    snap.assert_replay_equals(pg, "al_first", rp)
    assert rp.distinct("r") == 2000, rp.ops
    drop_stream(pg, name)


# -- tables of every kind -----------------------------------------------------------------

def test_an_empty_table_is_done_with_no_read_events(db, kafka, unique):
    name = unique[:40]
    db.execute("CREATE TABLE em_empty (id bigint PRIMARY KEY, v text)")
    fill(db, "em_full", 300)
    create_stream(db, kafka.bootstrap, name, ["public.em_empty", "public.em_full"],
                  snapshot_chunk_size=100)
    s = snap.wait_snapshot_state(db, name, ("done", "failed"), timeout=60)
    assert s["snapshot_state"] == "done", s
    assert s["snapshot_tables_done"] == s["snapshot_tables_total"] == 2, s
    assert s["snapshot_rows"] == 300, s
    empty = snap.snapshot_row(db, name, "public.em_empty")
    assert empty["state"] == "done" and empty["rows_emitted"] == 0 and empty["error"] is None
    db.execute("INSERT INTO em_empty VALUES (1, 'after'), (2, 'after')")
    db.execute("DELETE FROM em_empty WHERE id = 2")
    wt.wait_caught_up(db, name)
    topics = [topic_of(name, "em_empty"), topic_of(name, "em_full")]
    rps = snap.replay(kafka.bootstrap, topics)
    assert rps[topics[0]].ops["r"] == 0, rps[topics[0]].ops
    assert rps[topics[0]].distinct_ops() == {"c": 2, "d": 1, "tombstone": 1}
    snap.assert_replay_equals(db, "em_empty", rps[topics[0]])
    snap.assert_replay_equals(db, "em_full", rps[topics[1]])
    assert rps[topics[1]].distinct("r") == 300
    drop_stream(db, name)


@pytest.mark.timeout(240)
def test_a_table_dropped_during_its_snapshot(db, kafka, unique):
    """The stream goes on; the dropped table's snapshot ends (done, or failed with an
    error that names it); the other tables complete and replay to their contents."""
    name = unique[:40]
    fill(db, "dr_gone", 40_000)
    fill(db, "dr_keep", 3000)
    create_stream(db, kafka.bootstrap, name, ["public.dr_keep", "public.dr_gone"],
                  snapshot_chunk_size=200)
    snap.wait_table_rows(db, name, "public.dr_gone", 1000, timeout=90)
    running = snap.snapshot_row(db, name, "public.dr_gone")
    assert running["state"] == "running", running
    db.execute("DROP TABLE dr_gone")
    with snap.Watcher(db, name) as w:
        s = wt.wait_for(lambda: (x := w.status()) and x["snapshot_tables_total"] == 2
                        and x["snapshot_tables_done"] == 2 and x, 90, 0.1,
                        "both tables' snapshots to end")
    gone = snap.snapshot_row(db, name, "public.dr_gone")
    assert gone is not None, snap.snapshot_rows(db, name)
    assert gone["state"] in ("done", "failed"), gone
    if gone["state"] == "failed":
        # the row names the table; its error must say what happened
        assert gone["error"] and ("dropped" in gone["error"] or "dr_gone" in gone["error"]), gone
        assert s["snapshot_state"] == "failed", s
    keep = snap.snapshot_row(db, name, "public.dr_keep")
    assert keep["state"] == "done" and keep["rows_emitted"] == 3000 and keep["error"] is None
    assert s["snapshot_tables_done"] == s["snapshot_tables_total"] == 2, s
    # the stream goes on
    db.execute("INSERT INTO dr_keep SELECT g, 0, 'after' FROM generate_series(3001, 3100) g")
    db.execute("UPDATE dr_keep SET v = -1 WHERE id <= 10")
    wt.wait_caught_up(db, name, timeout=60)
    s = status(db, name)
    assert s["state"] == "running", s
    assert s["dropped_tables"] == ["public.dr_gone"], s
    topic = topic_of(name, "dr_keep")
    snap.assert_replay_equals(db, "dr_keep", snap.replay(kafka.bootstrap, [topic])[topic])
    drop_stream(db, name)


@pytest.mark.timeout(240)
def test_keys_changed_during_the_snapshot(db, kafka, unique):
    """UPDATE ... SET id = id + 1000000 on rows ahead of and behind the snapshot's
    position while it runs, and some moved back down: the replay still equals the
    table (a key change is a delete + tombstone of the old key and a create of the new)."""
    # long enough that the key changes land while it runs, also on a fast machine (40,000
    # rows in chunks of 300 once finished before the third)
    name, rows = unique[:40], 100_000
    fill(db, "kc", rows)
    create_stream(db, kafka.bootstrap, name, ["public.kc"], snapshot_chunk_size=200)
    snap.wait_table_rows(db, name, "public.kc", rows // 10, timeout=90)
    landed = []
    for k in (3, 17, 29, 41):
        state = snap.snapshot_row(db, name, "public.kc")["state"]
        landed.append(state)
        db.execute("UPDATE kc SET id = id + 1000000, v = v + 1 "
                   "WHERE id < 1000000 AND id %% 50 = %s", [k])
        time.sleep(0.2)
    landed.append(snap.snapshot_row(db, name, "public.kc")["state"])
    db.execute("UPDATE kc SET id = id - 1000000 WHERE id > 1000000 AND id % 7 = 0")
    assert landed[:3] == ["running"] * 3, \
        f"the snapshot ended before the key changes landed in it: {landed}"
    s = snap.wait_snapshot_state(db, name, ("done", "failed"), timeout=120)
    assert s["snapshot_state"] == "done", s
    wt.wait_caught_up(db, name, timeout=60)
    topic = topic_of(name, "kc")
    rp = snap.replay(kafka.bootstrap, [topic])[topic]
    want = snap.assert_replay_equals(db, "kc", rp)
    assert len(want) == rows
    assert rp.ops["r"] <= 1.15 * rows, rp.ops
    drop_stream(db, name)


@pytest.mark.parametrize("partition_root", [False, True])
def test_a_partitioned_table(db, kafka, unique, partition_root):
    """Read leaf by leaf; with partition_root every row goes to the root's topic, without
    each leaf has its own. Rows updated and moved between partitions while the snapshot
    runs."""
    name = unique[:40]
    root = f"pt{int(partition_root)}"
    db.psql(f"""
        CREATE TABLE {root} (id int, at int, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE {root}_a PARTITION OF {root} FOR VALUES FROM (0) TO (100);
        CREATE TABLE {root}_b PARTITION OF {root} FOR VALUES FROM (100) TO (200)
            PARTITION BY RANGE (at);
        CREATE TABLE {root}_b1 PARTITION OF {root}_b FOR VALUES FROM (100) TO (200);
        INSERT INTO {root} SELECT g, g % 100, 'a' || g FROM generate_series(1, 5000) g;
        INSERT INTO {root} SELECT g, 100 + g % 100, 'b' || g FROM generate_series(5001, 10000) g;
    """)
    create_stream(db, kafka.bootstrap, name, [f"public.{root}"], snapshot_chunk_size=250,
                  partition_root=partition_root)
    db.execute(f"UPDATE {root} SET v = 'changed' WHERE id % 37 = 0")
    db.execute(f"UPDATE {root} SET at = at + 100 WHERE at < 100 AND id % 41 = 0")  # a -> b1
    db.execute(f"DELETE FROM {root} WHERE id % 43 = 0")
    s = snap.wait_snapshot_state(db, name, ("done", "failed"), timeout=90)
    assert s["snapshot_state"] == "done", s
    db.execute(f"INSERT INTO {root} VALUES (20001, 5, 'late'), (20002, 150, 'late')")
    wt.wait_caught_up(db, name, timeout=60)
    read = {r["table_name"]: r for r in snap.snapshot_rows(db, name)}
    if partition_root:
        topic = topic_of(name, root)
        rp = snap.replay(kafka.bootstrap, [topic])[topic]
        snap.assert_replay_equals(db, root, rp)
        assert rp.ops["r"] >= 9000, rp.ops
        for leaf in (f"{root}_a", f"{root}_b", f"{root}_b1"):
            assert topic_of(name, leaf) not in kafka.topics()
        # read partition by partition (docs/snapshots.md), published under the root's topic
        assert set(read) == {f"public.{root}_a", f"public.{root}_b1"}, read
    else:
        assert set(read) == {f"public.{root}_a", f"public.{root}_b1"}, read
        leaves = [f"{root}_a", f"{root}_b1"]
        topics = [topic_of(name, t) for t in leaves]
        rps = snap.replay(kafka.bootstrap, topics)
        for leaf, topic in zip(leaves, topics):
            snap.assert_replay_equals(db, leaf, rps[topic])
            assert rps[topic].ops["r"] >= 4000, (leaf, rps[topic].ops)
        assert topic_of(name, root) not in kafka.topics()
        assert topic_of(name, f"{root}_b") not in kafka.topics()
    assert all(r["state"] == "done" for r in read.values()), read
    drop_stream(db, name)


def test_toast_values_arrive_whole_in_read_events(db, kafka, unique):
    """10 kB of random text per row, stored out of line: the read event carries all of it."""
    name = unique[:40]
    rng = random.Random(3)
    db.execute("CREATE TABLE tst (id int PRIMARY KEY, n int, body text)")
    db.execute("ALTER TABLE tst ALTER COLUMN body SET STORAGE EXTERNAL")
    bodies = {i: "".join(rng.choices(string.ascii_letters + string.digits, k=10_240))
              for i in range(1, 41)}
    with db.connect() as conn:
        for i, body in bodies.items():
            conn.execute("INSERT INTO tst VALUES (%s, %s, %s)", [i, i, body])
    assert db.scalar("SELECT pg_relation_size(reltoastrelid) FROM pg_class "
                     "WHERE oid = 'tst'::regclass") > 40 * 10_000
    create_stream(db, kafka.bootstrap, name, ["public.tst"], snapshot_chunk_size=7)
    s = snap.wait_snapshot_state(db, name, ("done", "failed"), timeout=60)
    assert s["snapshot_state"] == "done", s
    wt.wait_caught_up(db, name)
    topic = topic_of(name, "tst")
    msgs = wt.consume_all(kafka.bootstrap, topic, expected_count=40, timeout=60, linger=1.0)
    ids = set()
    for m in msgs:
        v = json.loads(m.value)
        assert v["op"] == "r", v["op"]
        body = v["after"]["body"]
        i = v["after"]["id"]
        assert isinstance(body, str) and len(body) == 10_240 and body == bodies[i], \
            (i, len(body) if isinstance(body, str) else body)
        ids.add(i)
    assert ids == set(bodies)
    rp = snap.replay(kafka.bootstrap, [topic], messages=msgs)[topic]
    snap.assert_replay_equals(db, "tst", rp)
    drop_stream(db, name)


@pytest.mark.timeout(240)
def test_toast_values_of_rows_updated_during_the_snapshot(db, kafka, unique):
    """Updates that leave the 10 kB value alone (the WAL does not carry it) hit rows of
    the chunks being read: a row dropped from its chunk for such an update would reach
    the consumer without its value. The replay (which keeps a value an update did not
    carry) must still equal the table."""
    name, rows = unique[:40], 600
    rng = random.Random(4)
    db.execute("CREATE TABLE tsu (id int PRIMARY KEY, n int, body text)")
    db.execute("ALTER TABLE tsu ALTER COLUMN body SET STORAGE EXTERNAL")
    with db.connect() as conn:
        for i in range(1, rows + 1):
            conn.execute("INSERT INTO tsu VALUES (%s, 0, %s)",
                         [i, "".join(rng.choices(string.ascii_letters, k=10_240))])
    stop = threading.Event()
    updates = [0]

    def update():
        r = random.Random(8)
        with db.connect() as conn:
            while not stop.is_set():
                first = r.randrange(1, rows + 1)
                conn.execute("UPDATE tsu SET n = n + 1 WHERE id BETWEEN %s AND %s",
                             [first, first + 3])
                updates[0] += 1
                time.sleep(0.002)

    thread = threading.Thread(target=update, daemon=True)
    thread.start()
    try:
        create_stream(db, kafka.bootstrap, name, ["public.tsu"], snapshot_chunk_size=5)
        s = snap.wait_snapshot_state(db, name, ("done", "failed"), timeout=150)
        during = updates[0]
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(30)
    assert s["snapshot_state"] == "done", s
    assert during > 20, f"only {during} updates while the snapshot ran"
    wt.wait_caught_up(db, name, timeout=60)
    topic = topic_of(name, "tsu")
    rp = snap.replay(kafka.bootstrap, [topic])[topic]
    assert rp.unchanged_toast > 0, rp.ops  # the updates did leave the value out
    snap.assert_replay_equals(db, "tsu", rp)
    drop_stream(db, name)


def test_snapshot_mode_no_data_sends_no_read_events(db, kafka, unique):
    name = unique[:40]
    fill(db, "nd", 500)
    create_stream(db, kafka.bootstrap, name, ["public.nd"], snapshot_mode="no_data")
    db.execute("INSERT INTO nd VALUES (501, 0, 'new')")
    db.execute("UPDATE nd SET v = -1 WHERE id = 1")
    wt.wait_caught_up(db, name)
    time.sleep(2)  # a snapshot would have begun by now
    wt.wait_caught_up(db, name)
    s = status(db, name)
    assert s["snapshot_state"] == "none" and s["snapshot_tables_total"] == 0, s
    assert s["snapshot_rows"] == 0 and s["snapshot_finished_at"] is None, s
    assert snap.snapshot_rows(db, name) == []
    assert json.loads(db.scalar("SELECT options::text FROM walship.streams WHERE name = %s",
                                [name]))["snapshot_mode"] == "no_data"
    topic = topic_of(name, "nd")
    rp = snap.replay(kafka.bootstrap, [topic], timeout=30)[topic]
    assert rp.distinct_ops() == {"c": 1, "u": 1}, rp.ops
    drop_stream(db, name)


# -- the events ---------------------------------------------------------------------------

def lsn_text(lsn: int) -> str:
    return wt.format_lsn(lsn)


@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_read_events(db, kafka, event_class, unique, fmt):
    """JSON: op "r", source.snapshot "incremental" (Debezium's incremental-snapshot
    spelling), before null, after the row. Protobuf: op READ (walship.decode_event shows
    it), after the row. Same key and partition as change events; a walship.lsn header."""
    name = unique[:40]
    table = f"ev_{fmt}"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, n bigint, note text)")
    db.execute(f"INSERT INTO {table} SELECT g, 'name ' || g, g * 1000, "
               f"CASE WHEN g % 2 = 0 THEN NULL ELSE 'x' END FROM generate_series(1, 60) g")
    want = {r[0]: r for r in db.execute(f"SELECT id, name, n, note FROM {table}")}
    create_stream(db, kafka.bootstrap, name, [f"public.{table}"], snapshot_chunk_size=25,
                  format=fmt)
    s = snap.wait_snapshot_state(db, name, ("done", "failed"), timeout=60)
    assert s["snapshot_state"] == "done", s
    db.execute(f"UPDATE {table} SET n = -1 WHERE id = 7")
    wt.wait_caught_up(db, name)
    msgs = wt.consume_all(kafka.bootstrap, topic_of(name, table), expected_count=61,
                          timeout=60, linger=1.0)
    row_class = wt.load_event_class(message="walship.v1.Row")
    reads, changes = [], []
    for m in msgs:
        assert m.key is not None and m.value is not None
        assert m.partition == wt.java_partition(m.key, PARTITIONS), m
        lsn = m.header("walship.lsn")
        assert lsn is not None and re.fullmatch(rb"[0-9A-F]+/[0-9A-F]+", lsn), m.headers
        if fmt == "json":
            v = json.loads(m.value)
            key = json.loads(m.key)["id"]
            if v["op"] == "r":
                assert v["before"] is None, v
                assert v["source"]["snapshot"] == "incremental", v["source"]
                assert v["source"]["table"] == table and v["source"]["schema"] == "public"
                assert v["after"] == dict(zip(("id", "name", "n", "note"), want[key])), v
                assert isinstance(v["ts_ms"], int)
                reads.append(key)
            else:
                assert v["source"].get("snapshot") != "incremental", v["source"]
                changes.append((v["op"], key, v["after"]["n"]))
        else:
            ev = event_class.FromString(m.value)
            op = ev.DESCRIPTOR.fields_by_name["op"].enum_type.values_by_number[ev.op].name
            key = snap._pb_row(row_class.FromString(m.key))["id"]
            decoded = db.scalar("SELECT walship.decode_event(%s)", [m.value])
            assert decoded["op"] == op, decoded
            assert ev.source.table == table and ev.source.schema == "public"
            assert [c.name for c in ev.key] == ["id"] and ev.key[0].value.int64_value == key
            if op == "READ":
                assert not ev.HasField("before"), ev
                after = snap._pb_row(ev.after)
                assert after == dict(zip(("id", "name", "n", "note"), want[key])), after
                reads.append(key)
            else:
                changes.append((op, key, snap._pb_row(ev.after)["n"]))
    # (a worker restarted by an uncertain Kafka acknowledgement may send a chunk again)
    assert set(reads) == set(range(1, 61)) and len(reads) >= 60, sorted(reads)
    assert set(changes) == {("u" if fmt == "json" else "UPDATE", 7, -1)}, changes
    drop_stream(db, name)


def test_status_columns(db, kafka, unique):
    """snapshot_state none -> running -> done; snapshot_table names the table being read;
    snapshot_rows grows to the rows read; tables done/total; snapshot_finished_at. Then
    walship.snapshot(stream) snapshots every table again."""
    name = unique[:40]
    fill(db, "st_one", 20_000)
    fill(db, "st_two", 4000)
    db.execute("CREATE TABLE st_t0 AS SELECT now() AS t")
    create_stream(db, kafka.bootstrap, name, ["public.st_one", "public.st_two"],
                  snapshot_chunk_size=100)
    seen = []
    with snap.Watcher(db, name) as w:
        def done():
            s = w.status()
            if s is not None:
                seen.append(s)
            return s is not None and s["snapshot_state"] in ("done", "failed")

        wt.wait_for(done, 120, 0.02, "the snapshot to end")
    last = seen[-1]
    assert last["snapshot_state"] == "done", last
    running = [s for s in seen if s["snapshot_state"] == "running"]
    assert running, [s["snapshot_state"] for s in seen]
    assert {s["snapshot_state"] for s in seen} <= {"running", "done"}, \
        {s["snapshot_state"] for s in seen}
    assert any(s["snapshot_table"] in ("public.st_one", "public.st_two") for s in running)
    for s in running:
        assert s["snapshot_tables_total"] == 2 and 0 <= s["snapshot_tables_done"] < 2, s
        assert s["snapshot_finished_at"] is None, s
    rows = [s["snapshot_rows"] for s in seen]
    assert rows == sorted(rows), "snapshot_rows went back"
    assert any(0 < r < 24_000 for r in rows), "snapshot_rows never showed progress"
    assert last["snapshot_rows"] == 24_000, last
    assert last["snapshot_tables_done"] == last["snapshot_tables_total"] == 2, last
    assert last["snapshot_table"] is None, last
    t0 = db.scalar("SELECT t FROM st_t0")
    assert last["snapshot_finished_at"] is not None and last["snapshot_finished_at"] > t0
    for r in snap.snapshot_rows(db, name):
        n = 20_000 if r["table_name"] == "public.st_one" else 4000
        assert r["state"] == "done" and r["rows_emitted"] == n and r["error"] is None, r
        assert r["chunks"] >= n // 100 and r["resumes"] == 0, r
        assert t0 < r["requested_at"] <= r["started_at"] <= r["finished_at"], r

    # on demand, every table again (NULL): running again, then done, later
    first_finished = last["snapshot_finished_at"]
    db.execute("SELECT walship.snapshot(%s)", [name])
    s = status(db, name)
    assert s["snapshot_state"] == "running" and s["snapshot_finished_at"] is None, s
    assert s["snapshot_tables_done"] == 0 and s["snapshot_tables_total"] == 2, s
    s = snap.wait_snapshot_state(db, name, ("done", "failed"), timeout=120)
    assert s["snapshot_state"] == "done" and s["snapshot_rows"] == 24_000, s
    assert s["snapshot_finished_at"] > first_finished, s
    wt.wait_caught_up(db, name)
    topics = [topic_of(name, "st_one"), topic_of(name, "st_two")]
    rps = snap.replay(kafka.bootstrap, topics)
    for topic in topics:  # every row read twice
        reads = [sum(e.op == "r" for e in h) for h in rps[topic].history.values()]
        assert min(reads) >= 2, (topic, rps[topic].ops)
    snap.assert_replay_equals(db, "st_one", rps[topics[0]])
    snap.assert_replay_equals(db, "st_two", rps[topics[1]])
    drop_stream(db, name)


# -- bad input ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad(db, kafka):
    """Tables and two streams for the refused calls: a no_data stream of bi_a, bi_full
    (REPLICA IDENTITY FULL, no primary key) and bi_big; an initial one of bi_a."""
    db.psql("""
        CREATE TABLE bi_a (id int PRIMARY KEY);
        INSERT INTO bi_a SELECT generate_series(1, 10);
        CREATE TABLE bi_other (id int PRIMARY KEY);
        CREATE TABLE bi_full (a int);
        ALTER TABLE bi_full REPLICA IDENTITY FULL;
        INSERT INTO bi_full VALUES (1), (2);
        CREATE TABLE bi_big (id int PRIMARY KEY);
        INSERT INTO bi_big SELECT generate_series(1, 3000);
    """)
    nd, ini = f"bi_nd_{time.monotonic_ns() % 10**6}", f"bi_in_{time.monotonic_ns() % 10**6}"
    create_stream(db, kafka.bootstrap, nd, ["public.bi_a", "public.bi_full", "public.bi_big"],
                  keep=True, snapshot_mode="no_data", snapshot_chunk_size=1)
    create_stream(db, kafka.bootstrap, ini, ["public.bi_a"], keep=True)
    yield {"nd": nd, "init": ini}
    for s in (nd, ini):
        drop_stream(db, s)


def refused(db, sql, params, *names):
    """Runs a call that must fail; the error names every one of ``names``; the catalog
    (streams, requested snapshots, slots) is as it was."""
    before = snap.catalog_state(db)
    err = sql_error(db, sql, params)
    text = message(err)
    for n in names:
        assert n in text, f"the error does not name {n!r}: {text}"
    assert snap.catalog_state(db) == before, f"a refused call changed the catalog: {text}"
    return text


def test_snapshot_of_an_unknown_stream(db, bad):
    refused(db, "SELECT walship.snapshot('no_such_stream')", None, "no_such_stream")
    refused(db, "SELECT walship.snapshot('no_such_stream', ARRAY['bi_a'])", None,
            "no_such_stream")


def test_snapshot_of_a_table_not_in_the_stream(db, bad):
    refused(db, "SELECT walship.snapshot(%s, ARRAY['public.bi_other'])", [bad["nd"]],
            "bi_other", bad["nd"])
    # one good table with it: nothing is requested for the good one either
    refused(db, "SELECT walship.snapshot(%s, ARRAY['public.bi_a', 'bi_other'])", [bad["nd"]],
            "bi_other")


def test_snapshot_of_a_table_that_does_not_exist(db, bad):
    refused(db, "SELECT walship.snapshot(%s, ARRAY['public.bi_missing'])", [bad["nd"]],
            "bi_missing")
    refused(db, "SELECT walship.snapshot(%s, ARRAY['bi_a', 'bi_missing'])", [bad["nd"]],
            "bi_missing")


def test_snapshot_of_a_table_without_a_primary_key(db, bad):
    refused(db, "SELECT walship.snapshot(%s, ARRAY['public.bi_full'])", [bad["nd"]], "bi_full")
    refused(db, "SELECT walship.snapshot(%s, ARRAY['bi_a', 'bi_full'])", [bad["nd"]], "bi_full")


@pytest.mark.parametrize("options", [{}, {"snapshot_mode": "initial"}])
def test_create_stream_initial_with_a_table_without_a_primary_key(db, kafka, bad, options):
    refused(db, "SELECT walship.create_stream('bi_nokey', %s, ARRAY['bi_a', 'bi_full'], "
                "%s::jsonb)", [kafka.bootstrap, json.dumps(stream_options("bi_nokey",
                                                                          **options))],
            "bi_full")
    assert status(db, "bi_nokey") is None


def test_alter_stream_adding_a_table_without_a_primary_key_to_an_initial_stream(db, bad):
    refused(db, "SELECT walship.alter_stream(%s, ARRAY['public.bi_a', 'public.bi_full'])",
            [bad["init"]], "bi_full")


def test_a_second_snapshot_of_a_table_being_snapshotted(db, bad):
    db.execute("SELECT walship.snapshot(%s, ARRAY['public.bi_big'])", [bad["nd"]])
    snap.wait_table_rows(db, bad["nd"], "public.bi_big", 20, timeout=30)
    row = snap.snapshot_row(db, bad["nd"], "public.bi_big")
    assert row["state"] == "running", row
    worker = status(db, bad["nd"])["worker_pid"]
    refused(db, "SELECT walship.snapshot(%s, ARRAY['public.bi_big'])", [bad["nd"]], "bi_big")
    refused(db, "SELECT walship.snapshot(%s, ARRAY['bi_a', 'bi_big'])", [bad["nd"]], "bi_big")
    row = snap.snapshot_row(db, bad["nd"], "public.bi_big")
    assert row["state"] in ("pending", "running"), \
        f"the snapshot (3000 rows, 1 per chunk) ended before the second call was tried: {row}"
    assert snap.snapshot_row(db, bad["nd"], "public.bi_a") is None
    # the refused calls did not disturb the worker reading the table
    time.sleep(1)
    s = status(db, bad["nd"])
    assert s["worker_pid"] == worker and s["state"] == "running", s
    assert snap.snapshot_row(db, bad["nd"], "public.bi_big")["rows_emitted"] > row["rows_emitted"]


CHUNK_SIZES = [0, 10_000_000, -5, 1.5]


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_snapshot_chunk_size_out_of_range_in_create_stream(db, kafka, bad, size):
    name = "bi_chunk"
    refused(db, "SELECT walship.create_stream(%s, %s, ARRAY['bi_a'], %s::jsonb)",
            [name, kafka.bootstrap, json.dumps(stream_options(name, snapshot_chunk_size=size))],
            "snapshot_chunk_size", str(size))
    assert status(db, name) is None


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_snapshot_chunk_size_out_of_range_in_alter_stream(db, bad, size):
    refused(db, "SELECT walship.alter_stream(%s, NULL, %s::jsonb)",
            [bad["nd"], json.dumps({"snapshot_chunk_size": size})], "snapshot_chunk_size",
            str(size))


def test_snapshot_chunk_size_limits_are_accepted(db, kafka, unique):
    name = unique[:40]
    create_stream(db, kafka.bootstrap, name, None, snapshot_mode="no_data",
                  snapshot_chunk_size=100_000)
    db.execute("SELECT walship.alter_stream(%s, NULL, %s::jsonb)",
               [name, json.dumps({"snapshot_chunk_size": 1})])
    options = json.loads(db.scalar("SELECT options::text FROM walship.streams WHERE name = %s",
                                   [name]))
    assert options["snapshot_chunk_size"] == 1 and options["snapshot_mode"] == "no_data"
    drop_stream(db, name)


def test_snapshot_mode_unknown_in_create_stream(db, kafka, bad):
    refused(db, "SELECT walship.create_stream('bi_mode', %s, ARRAY['bi_a'], %s::jsonb)",
            [kafka.bootstrap, json.dumps(stream_options("bi_mode", snapshot_mode="sometimes"))],
            "snapshot_mode", "sometimes")
    assert status(db, "bi_mode") is None


def test_snapshot_mode_unknown_in_alter_stream(db, bad):
    refused(db, "SELECT walship.alter_stream(%s, NULL, %s::jsonb)",
            [bad["nd"], json.dumps({"snapshot_mode": "sometimes"})], "snapshot_mode",
            "sometimes")


def test_alter_stream_of_an_unknown_stream(db, bad):
    refused(db, "SELECT walship.alter_stream('no_such_stream', ARRAY['bi_a'])", None,
            "no_such_stream")
