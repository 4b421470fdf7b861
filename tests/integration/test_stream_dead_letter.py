"""Events Kafka refuses for good (here: larger than the limits), and the stream option
on_refused. Default, stop: the stream stops in front of the event, nothing after it is
sent or confirmed, and the error says what to raise and that dead_letter exists. With
dead_letter: a record naming the event (table, topic, key, commit LSN, xid, size, the
reason; never the row) goes to <topic_prefix>.walship.dead_letter, the status counts
it, and the stream goes on with every later event, in order."""

from __future__ import annotations

import json

import pytest

import walship_testlib as wt

status = wt.stream_status
# 65536 md5 hex digests: 2 MiB that does not compress
BIG_SQL = "SELECT string_agg(md5(g::text), '') FROM generate_series(1, 65536) g"
BIG = 65536 * 32


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION IF NOT EXISTS walship")
    return pg


def start(db, broker, name, table, kafka_props=None, **options):
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, doc text)")
    opts = {"topic_prefix": name, "format": "json", "json_schema": False, "partitions": 1,
            "snapshot_mode": "no_data", "kafka": {"allow.auto.create.topics": "false"}}
    opts["kafka"].update(kafka_props or {})
    opts.update(options)
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY[%s], %s::jsonb)",
               [name, broker.bootstrap, table, json.dumps(opts)])
    wt.wait_for(lambda: (status(db, name) or {}).get("state") == "running", 30, 0.1, "running")


def write_small_big_small(db, table):
    db.execute(f"INSERT INTO {table} VALUES (1, 'before')")
    db.execute(f"INSERT INTO {table} VALUES (2, ({BIG_SQL}))")
    db.execute(f"INSERT INTO {table} SELECT g, 'after' FROM generate_series(3, 100) g")


def ids(msgs):
    return [json.loads(m.key)["id"] for m in msgs]


def test_by_default_a_refused_event_stops_the_stream_and_says_how_to_go_on(db, kafka, unique):
    name = unique[:40]
    table = f"dl_stop_{name}"[:60]
    start(db, kafka, name, table, kafka_props={"message.max.bytes": "1000000"})
    db.execute(f"INSERT INTO {table} VALUES (1, 'before')")
    with db.connect() as conn:
        with conn.transaction():
            conn.execute(f"INSERT INTO {table} VALUES (2, ({BIG_SQL}))")
            # the refused transaction's commit record starts after this
            refused_at = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
    db.execute(f"INSERT INTO {table} SELECT g, 'after' FROM generate_series(3, 100) g")
    st = wt.wait_for(lambda: (s := status(db, name))["state"] == "error" and s, 30, 0.2,
                     "the stream to stop at the refused event")
    assert "message.max.bytes" in st["last_error"], st["last_error"]
    assert "on_refused" in st["last_error"] and "dead_letter" in st["last_error"]
    assert st["dead_letters"] == 0
    topic = f"{name}.public.{table}"
    db.execute(f"INSERT INTO {table} VALUES (1000, 'later')")
    # a retry: the launcher starts the worker again (it lives a few ms before it fails
    # again, too short to be sure to see its pid in the view, so count its start in the log)
    started = f'walship stream "{name}" started'
    before = db.log_text().count(started)
    wt.wait_for(lambda: db.log_text().count(started) > before, 70, 0.2, "a retry")
    # row 1 went out; nothing after the refused one did, and it is retried, not skipped:
    # the slot never passes the refused transaction
    # (row 1 may arrive twice: each restart may send again what was not yet confirmed)
    assert set(ids(wt.consume_all(kafka.bootstrap, topic, timeout=10))) == {1}
    confirmed = db.scalar("SELECT confirmed_flush_lsn FROM pg_replication_slots "
                          "WHERE slot_name = %s", ["walship_" + name])
    assert db.scalar("SELECT %s::pg_lsn <= %s::pg_lsn", [confirmed, refused_at])
    assert status(db, name)["state"] == "error"
    db.execute("SELECT walship.drop_stream(%s)", [name])


def check_dead_letter(db, kafka, name, table, error, reason):
    topic = f"{name}.public.{table}"
    msgs = wt.consume_all(kafka.bootstrap, topic, expected_count=99, timeout=60, linger=0.5,
                          exact=True)
    assert ids(msgs) == [1] + list(range(3, 101))  # every other event, in order
    wt.wait_caught_up(db, name)
    letters = wt.consume_all(kafka.bootstrap, f"{name}.walship.dead_letter", expected_count=1,
                             timeout=30, linger=0.5, exact=True)
    letter = letters[0]
    assert json.loads(letter.key) == {"id": 2}
    assert len(letter.value) < 2000  # a note of the event, not the row
    note = json.loads(letter.value)
    assert note["table"] == f"public.{table}"
    assert note["topic"] == topic
    assert note["size"] > BIG
    assert note["error"] == error, note
    assert note["reason"].startswith(reason), note
    assert note["key_size"] == len(letter.key)
    assert letter.header("walship.lsn").decode() == note["commit_lsn"]
    assert int(letter.header("walship.xid")) == note["xid"]
    # the LSN is the real commit LSN of row 2's transaction: row 1's is before it, row 3's after
    lsn = lambda m: int(m.header("walship.lsn").decode().split("/")[0], 16) << 32 | \
        int(m.header("walship.lsn").decode().split("/")[1], 16)
    assert lsn(msgs[0]) < lsn(letter) < lsn(msgs[1])
    st = status(db, name)
    assert st["state"] == "running" and st["dead_letters"] == 1, st
    assert db.log_text().count("dead-lettered an event of table") >= 1
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_dead_letter_for_an_event_larger_than_the_producer_allows(db, kafka, unique):
    name = unique[:40]
    table = f"dl_prod_{name}"[:60]
    start(db, kafka, name, table, on_refused="dead_letter",
          kafka_props={"message.max.bytes": "1000000"})
    write_small_big_small(db, table)
    check_dead_letter(db, kafka, name, table, "MSG_SIZE_TOO_LARGE",
                      "could not produce an event to Kafka topic")


def test_dead_letter_for_an_event_the_broker_refuses(db, kafka, unique):
    """A topic that exists with a smaller max.message.bytes than the producer's: the broker
    refuses the 2 MiB event, which travelled alone in its batch (it is larger than
    batch.size), so the refusal is certainly its own."""
    name = unique[:40]
    table = f"dl_brok_{name}"[:60]
    kafka.create_topic(f"{name}.public.{table}", partitions=1,
                       config={"max.message.bytes": "1048588"})
    start(db, kafka, name, table, on_refused="dead_letter")
    write_small_big_small(db, table)
    # refused by the broker after it was produced: the delivery report's path
    check_dead_letter(db, kafka, name, table, "MSG_SIZE_TOO_LARGE",
                      "could not deliver an event to Kafka topic")


def test_on_refused_takes_stop_or_dead_letter_only(db, kafka, unique):
    for bad in ("sometimes", 1, True):
        with pytest.raises(Exception) as err:
            db.execute("SELECT walship.create_stream(%s, %s, NULL, %s::jsonb)",
                       [unique[:40], kafka.bootstrap, json.dumps({"on_refused": bad})])
        assert 'invalid value for option "on_refused"' in str(err.value)
        assert "dead_letter" in str(err.value)
    assert db.scalar("SELECT count(*) FROM walship.streams WHERE name = %s", [unique[:40]]) == 0
