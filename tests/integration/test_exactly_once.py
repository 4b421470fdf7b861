"""delivery = exactly_once (docs/streams.md, "Exactly once"): Kafka transactions holding whole PostgreSQL
transactions, the stream's position kept in Kafka in the same transaction.

Checked with read_committed consumers: every committed change exactly once through worker
crashes, a stop in the middle of a large transaction (aborted: none of it is visible) and a
producer that fences the stream's; the position record says how far the stream is; a
position that is not this server's history stops the stream with an error naming it; the
options are checked at create_stream. The fault suite (test_faults.py) runs its scenarios
with exactly_once too.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter

import pytest

import walship_testlib as wt

status = wt.stream_status
STALL_TIMEOUT_S = 3
PG_OPTIONS = {"settings": {"walship.stall_timeout": f"{STALL_TIMEOUT_S}s",
                           "walship.stop_timeout": "2s"}}


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION walship")
    return pg


def status_or_none(db, name):
    try:
        return status(db, name)
    except Exception:  # the server is restarting
        return None


def create(db, broker, name, table, **options):
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    opts = {"topic_prefix": name, "format": "json", "json_schema": False,
            "snapshot_mode": "no_data", "delivery": "exactly_once", **options}
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY[%s], %s::jsonb)",
               [name, broker.bootstrap, table, json.dumps(opts)])
    wt.wait_for(lambda: (status(db, name) or {}).get("state") == "running", 60, 0.1,
                f"stream {name} to run")
    return f"{name}.public.{table}"


def transactional_id(db, name) -> str:
    sysid = db.scalar("SELECT system_identifier FROM pg_control_system()")
    return f"walship.{sysid}.postgres.{name}"


def ids(kafka, topic, expected=None, isolation="read_committed", timeout=90) -> Counter:
    msgs = wt.consume_all(kafka.bootstrap, topic, expected, timeout=timeout,
                          isolation_level=isolation, linger=1.0 if expected else 0.0)
    return Counter(json.loads(m.key)["id"] for m in msgs if m.value is not None)


def positions(kafka, name):
    """The position records of the stream, oldest first (read_committed)."""
    return [json.loads(m.value) for m in
            wt.consume_all(kafka.bootstrap, f"{name}.walship.offsets", timeout=30)
            if m.value is not None]


def test_options_are_checked_at_create_stream(db, kafka, unique):
    name = unique[:40]
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY)")

    def create_with(options):
        db.execute("SELECT walship.create_stream(%s, %s, ARRAY[%s], %s::jsonb)",
                   [name, kafka.bootstrap, name, json.dumps({"snapshot_mode": "no_data", **options})])

    with pytest.raises(Exception, match=r'invalid value for option "delivery"(.|\n)*Expected '
                                        r'"at_least_once" or "exactly_once", got exactly'):
        create_with({"delivery": "exactly"})
    with pytest.raises(Exception, match='option "transaction_interval_ms" of stream .* needs '
                                        'delivery exactly_once'):
        create_with({"transaction_interval_ms": 20})
    with pytest.raises(Exception, match=r'"transaction_max_events"(.|\n)*Expected an integer from 1'):
        create_with({"delivery": "exactly_once", "transaction_max_events": 0})
    with pytest.raises(Exception, match='"transactional.id" can only be set with the stream '
                                        'option delivery = exactly_once'):
        create_with({"kafka": {"transactional.id": "mine"}})
    with pytest.raises(Exception, match='"transaction.timeout.ms"'):
        create_with({"delivery": "exactly_once", "kafka": {"transaction.timeout.ms": "soon"}})
    # exactly once takes both, and the catalog keeps delivery and the sizes
    create_with({"delivery": "exactly_once", "transaction_interval_ms": 20,
                 "kafka": {"transactional.id": f"{name}-tid", "transaction.timeout.ms": 60000}})
    stored = db.scalar("SELECT options FROM walship.streams WHERE name = %s", [name])
    assert stored["delivery"] == "exactly_once"
    assert stored["transaction_interval_ms"] == 20
    assert stored["transaction_max_events"] == 100000
    db.execute("SELECT walship.drop_stream(%s)", [name])
    # at least once keeps saying so
    create_with({})
    stored = db.scalar("SELECT options FROM walship.streams WHERE name = %s", [name])
    assert stored["delivery"] == "at_least_once" and "transaction_interval_ms" not in stored
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_changes_arrive_once_and_the_position_says_how_far(db, kafka, unique):
    name = unique[:40]
    topic = create(db, kafka, name, name)
    for b in range(5):
        with db.connect(autocommit=False) as conn:
            conn.execute(f"INSERT INTO {name} SELECT g, 'x' FROM generate_series(%s::int, %s::int) g",
                         [b * 1000 + 1, (b + 1) * 1000])
            conn.commit()
    db.execute(f"UPDATE {name} SET v = 'y' WHERE id <= 100")
    last_commit = db.scalar("SELECT pg_current_wal_lsn()")
    wt.wait_caught_up(db, name)
    got = ids(kafka, topic, 5100)
    assert sum(got.values()) == 5100 and len(got) == 5000
    assert all(n == (2 if i <= 100 else 1) for i, n in got.items())
    # read_uncommitted sees the same: nothing was aborted
    assert ids(kafka, topic, 5100, "read_uncommitted") == got
    records = positions(kafka, name)
    assert records, "no position record"
    newest = records[-1]
    assert newest["stream"] == name and newest["database"] == "postgres"
    assert newest["system_identifier"] == str(
        db.scalar("SELECT system_identifier FROM pg_control_system()"))
    assert newest["timeline"] == db.scalar("SELECT timeline_id FROM pg_control_checkpoint()")
    # the position is the last transaction's commit, at or below the WAL we read after it
    assert db.scalar("SELECT %s::pg_lsn <= %s::pg_lsn", [newest["commit_lsn"], last_commit]) is True
    assert db.scalar("SELECT %s::pg_lsn - '0/0'::pg_lsn", [newest["commit_lsn"]]) == newest["lsn"]
    assert sum(r["events"] for r in records) == 5100
    msgs = wt.consume_all(kafka.bootstrap, f"{name}.walship.offsets", timeout=30)
    assert {m.key.decode() for m in msgs} == {transactional_id(db, name)}
    # walship created it compacted, with one partition
    from confluent_kafka.admin import AdminClient, ConfigResource
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    offsets_topic = f"{name}.walship.offsets"
    assert len(admin.list_topics(offsets_topic, timeout=10).topics[offsets_topic].partitions) == 1
    resource = ConfigResource(ConfigResource.Type.TOPIC, offsets_topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"
    db.execute("SELECT walship.drop_stream(%s)", [name])


def load(db, table, stop: threading.Event, first: int = 1):
    """Transactions of 1-20 inserts, one after another, until stop (after a crash, the
    next id is looked up: a commit whose answer was lost may have gone through)."""
    i = first
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = db.connect(autocommit=False)
            n = 1 + i % 20
            conn.execute(f"INSERT INTO {table} SELECT g, 'v' FROM generate_series(%s::int, %s::int) g",
                         [i, i + n - 1])
            conn.commit()
            i += n
        except Exception:
            conn = None
            time.sleep(0.2)
            try:  # a commit whose answer was lost may have gone through
                i = db.scalar(f"SELECT coalesce(max(id), 0) FROM {table}") + 1
            except Exception:
                pass


def under_load(db, kafka, name, topic, faults):
    """Runs faults() while the load commits, then waits until the stream has caught up;
    returns (committed, ids received read_committed)."""
    stop = threading.Event()
    writer = threading.Thread(target=load, args=(db, name, stop), daemon=True)
    writer.start()
    try:
        faults()
    finally:
        stop.set()
        writer.join(30)
    committed = db.scalar(f"SELECT count(*) FROM {name}")
    wt.wait_caught_up(db, name, timeout=180)
    return committed, ids(kafka, topic, committed)


def test_worker_crashes_lose_and_double_nothing(db, kafka, unique, figures):
    name = unique[:40]
    topic = create(db, kafka, name, name, transaction_interval_ms=20)

    def crashes():
        for _ in range(3):
            time.sleep(2.5)
            pid = status(db, name)["worker_pid"]
            os.kill(pid, signal.SIGKILL)
            wt.wait_for(lambda: (s := status_or_none(db, name)) and s["state"] == "running"
                        and s["worker_pid"] not in (None, pid), 90, 0.2, "the stream to run again")
        time.sleep(2)

    committed, got = under_load(db, kafka, name, topic, crashes)
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    lost = committed - len(got)
    figures(f"exactly once, 3 worker crashes: committed {committed}, received "
           f"{sum(got.values())}, duplicates {duplicates}, lost {lost}")
    assert (duplicates, lost) == (0, 0)
    assert set(got) == set(db.scalar(f"SELECT array_agg(id) FROM {name}"))
    # what the crashes left open was aborted: read_uncommitted may see more, never less
    assert set(ids(kafka, topic, None, "read_uncommitted")) >= set(got)
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_a_stop_inside_a_large_transaction_aborts_it(db, kafka, unique):
    """walship.stop_timeout (2 s) ends the stop in the middle of a 1,000,000-row
    transaction: its Kafka transaction is aborted, so read_committed consumers see none of
    it, and the next start sends it whole, once."""
    name = unique[:40]
    topic = create(db, kafka, name, name)
    db.execute(f"INSERT INTO {name} VALUES (0, 'before')")
    wt.wait_caught_up(db, name)
    db.execute(f"INSERT INTO {name} SELECT g, 'p' FROM generate_series(1, 1000000) g")
    wt.wait_for(lambda: (status(db, name)["events_produced"] or 0) > 50000, 120, 0.05,
                "the large transaction to be on its way")
    db.execute("SELECT walship.stop_stream(%s)", [name])
    wt.wait_for(lambda: status(db, name)["state"] == "stopped", 60, 0.2, "the stream to stop")
    assert sum(ids(kafka, topic).values()) == 1, "part of an unfinished transaction is visible"
    db.execute("SELECT walship.start_stream(%s)", [name])
    wt.wait_caught_up(db, name, timeout=600)
    got = ids(kafka, topic, 1000001, timeout=300)
    assert len(got) == 1000001 and max(got.values()) == 1
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_a_fencing_producer_stops_the_worker_and_the_stream_recovers(db, kafka, unique):
    """Another producer with the stream's transactional.id fences it: the worker's open
    Kafka transaction never becomes visible, the status says who took over, the next
    worker fences that producer in turn and the stream goes on, exactly once."""
    from confluent_kafka import Producer

    name = unique[:40]
    topic = create(db, kafka, name, name)
    intruders = []

    def fence():
        time.sleep(1.5)
        first_pid = status(db, name)["worker_pid"]
        intruder = Producer({"bootstrap.servers": kafka.bootstrap,
                             "transactional.id": transactional_id(db, name)})
        intruders.append(intruder)
        intruder.init_transactions(30)
        # the fenced worker fails, and the launcher starts the next (1 s backoff)
        wt.wait_for(lambda: (s := status(db, name))["worker_pid"] not in (None, first_pid)
                    and s["state"] == "running", 90, 0.1, "a new worker")
        errors = db.scalar("SELECT string_agg(last_error, ' | ') FROM walship.stream_status "
                           "WHERE name = %s", [name]) or ""
        assert "fenced" in errors, errors
        time.sleep(1.5)

    committed, got = under_load(db, kafka, name, topic, fence)
    intruder = intruders[0]
    assert len(got) == committed and max(got.values()) == 1
    # the intruder is fenced now: it can no longer write as the stream
    intruder.begin_transaction()
    intruder.produce(topic, key=b'{"id": -1}', value=b"{}")
    with pytest.raises(Exception, match="(?i)fenced|epoch"):
        intruder.commit_transaction(30)
    db.execute("SELECT walship.drop_stream(%s)", [name])


def write_position(kafka, name, tid, value):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(f"{name}.walship.offsets", key=tid.encode(),
                     value=None if value is None else json.dumps(value).encode())
    assert producer.flush(30) == 0


def test_a_position_that_is_not_this_servers_stops_the_stream(db, kafka, unique):
    """A position written by another server, or past the end of this server's WAL (a
    restore from an older backup), would make the stream skip changes Kafka never had:
    the worker refuses it, naming it; a tombstone for the key resets the position."""
    name = unique[:40]
    topic = create(db, kafka, name, name)
    db.execute(f"INSERT INTO {name} VALUES (1, 'a')")
    wt.wait_caught_up(db, name)
    tid = transactional_id(db, name)
    newest = positions(kafka, name)[-1]
    db.execute("SELECT walship.stop_stream(%s)", [name])
    wt.wait_for(lambda: status(db, name)["state"] == "stopped", 60, 0.2, "the stream to stop")

    def start_and_fail(match):
        db.execute("SELECT walship.start_stream(%s)", [name])
        wt.wait_for(lambda: (s := status(db, name))["state"] == "error" and s["last_error"],
                    60, 0.2, "the stream to fail")
        error = status(db, name)["last_error"]
        assert match in error, error
        db.execute("SELECT walship.stop_stream(%s)", [name])
        wt.wait_for(lambda: status(db, name)["state"] == "stopped", 60, 0.2, "the stream to stop")

    write_position(kafka, name, tid, {**newest, "system_identifier": "12345"})
    start_and_fail("was written by another PostgreSQL server (system identifier 12345")
    far = newest["lsn"] + (1 << 40)
    write_position(kafka, name, tid, {**newest, "lsn": far})
    start_and_fail("past the end of this server's WAL")
    write_position(kafka, name, tid, {**newest, "timeline": 7})
    start_and_fail("is not in this server's history")
    write_position(kafka, name, tid, {"stream": name})
    start_and_fail("is not walship's")
    # a tombstone: no position, the slot decides; the stream runs and goes on
    write_position(kafka, name, tid, None)
    db.execute("SELECT walship.start_stream(%s)", [name])
    wt.wait_for(lambda: status(db, name)["state"] == "running", 60, 0.2, "the stream to run")
    db.execute(f"INSERT INTO {name} VALUES (2, 'b')")
    wt.wait_caught_up(db, name)
    assert ids(kafka, topic, 2) == Counter({1: 1, 2: 1})
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_kafka_down_at_the_start_shows_and_the_stream_goes_on(db, unique):
    """With its broker down, a starting worker cannot reach the offsets topic or the
    transaction coordinator: the status says what it waits for, and the stream starts
    by itself once the broker is back, sending what was committed meanwhile once."""
    name = unique[:40]
    with wt.KafkaBroker() as broker:
        topic = create(db, broker, name, name)
        db.execute(f"INSERT INTO {name} SELECT g, 'a' FROM generate_series(1, 100) g")
        wt.wait_caught_up(db, name)
        db.execute("SELECT walship.stop_stream(%s)", [name])
        broker.stop()
        db.execute(f"INSERT INTO {name} SELECT g, 'b' FROM generate_series(101, 300) g")
        db.execute("SELECT walship.start_stream(%s)", [name])
        s = wt.wait_for(lambda: (x := status(db, name))["state"] == "error" and x,
                        STALL_TIMEOUT_S + 30, 0.2, "the wait to show")
        assert s["worker_pid"] is not None  # waiting, not failing
        assert "offsets topic" in s["last_error"] or "coordinator" in s["last_error"], \
            s["last_error"]
        broker.start()
        wt.wait_for(lambda: status(db, name)["state"] == "running", 120, 0.2,
                    "the stream to start by itself")
        wt.wait_caught_up(db, name, timeout=120)
        got = ids(broker, topic, 300)
        assert set(got) == set(range(1, 301)) and max(got.values()) == 1
        db.execute("SELECT walship.drop_stream(%s)", [name])


def test_a_transaction_longer_than_the_transaction_timeout_says_so(db, unique):
    """A PostgreSQL transaction that takes longer to send than transaction.timeout.ms:
    the coordinator aborts its Kafka transaction (the broker checks every 500 ms here),
    the status says to raise the property, and once alter_stream raised it the stream
    sends the transaction, once."""
    name = unique[:40]
    env = {**os.environ,
           "WALSHIP_KAFKA_CONFIG": "transaction.abort.timed.out.transaction.cleanup.interval.ms=500"}
    with wt.KafkaBroker(env=env) as broker:
        topic = create(db, broker, name, name, kafka={"transaction.timeout.ms": 1000})
        db.execute(f"INSERT INTO {name} SELECT g, repeat('p', 500) FROM generate_series(1, 600000) g")
        s = wt.wait_for(lambda: "transaction.timeout.ms" in ((x := status(db, name))["last_error"] or "")
                        and x, 180, 0.2, "the timeout to show")
        assert "Raise the Kafka property transaction.timeout.ms" in s["last_error"], s["last_error"]
        assert sum(ids(broker, topic).values()) == 0  # nothing of it is visible
        db.execute("SELECT walship.alter_stream(%s, NULL, %s::jsonb)",
                   [name, json.dumps({"kafka": {"transaction.timeout.ms": 600000}})])
        wt.wait_caught_up(db, name, timeout=300)
        got = ids(broker, topic, 600000, timeout=180)
        assert len(got) == 600000 and max(got.values()) == 1
        db.execute("SELECT walship.drop_stream(%s)", [name])


def test_snapshot_read_events_travel_in_the_transactions(db, kafka, unique):
    """A snapshot's read events go out in the Kafka transactions too: read_committed
    consumers see every row once, as a read event, and then the changes."""
    name = unique[:40]
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
    db.execute(f"INSERT INTO {name} SELECT g, 'r' FROM generate_series(1, 20000) g")
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY[%s], %s::jsonb)",
               [name, kafka.bootstrap, name,
                json.dumps({"topic_prefix": name, "format": "json", "json_schema": False,
                            "delivery": "exactly_once", "snapshot_chunk_size": 3000})])
    wt.wait_for(lambda: (status(db, name) or {}).get("snapshot_state") == "done", 120, 0.2,
                "the snapshot to finish")
    db.execute(f"UPDATE {name} SET v = 'u' WHERE id <= 10")
    wt.wait_caught_up(db, name)
    msgs = wt.consume_all(kafka.bootstrap, f"{name}.public.{name}", 20010, timeout=120,
                          linger=1.0)
    ops = Counter((json.loads(m.value)["op"], json.loads(m.key)["id"])
                  for m in msgs if m.value is not None)
    reads = {i for (op, i) in ops if op == "r"}
    assert reads == set(range(1, 20001))
    assert max(ops.values()) == 1
    assert {i for (op, i) in ops if op == "u"} == set(range(1, 11))
    db.execute("SELECT walship.drop_stream(%s)", [name])
