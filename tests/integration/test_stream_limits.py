"""Limits of the server a stream runs into, shown as what they are: no free background
worker slot ("starting" for ever before), a slot invalidated by max_slot_wal_keep_size
("requested WAL segment ... has already been removed" before)."""

from __future__ import annotations

import pytest

import walship_testlib as wt

# walship's launcher and the logical replication launcher take two of the three slots,
# the first stream the third
PG_OPTIONS = {"settings": {"max_worker_processes": 3, "max_parallel_workers": 0,
                           "max_slot_wal_keep_size": "1MB", "min_wal_size": "32MB",
                           "max_wal_size": "64MB"}}


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION walship")
    pg.execute("CREATE TABLE items (id int PRIMARY KEY)")
    return pg


def test_no_free_worker_slot_is_an_error_saying_what_to_raise(db, kafka):
    db.execute("SELECT walship.create_stream('first', %s, ARRAY['items'])", [kafka.bootstrap])
    wt.wait_for(lambda: wt.stream_status(db, "first")["state"] == "running", 30, 0.1, "first")
    db.execute("SELECT walship.create_stream('second', %s, ARRAY['items'])", [kafka.bootstrap])
    s = wt.wait_for(lambda: (x := wt.stream_status(db, "second"))["state"] == "error" and x,
                    30, 0.2, "the second stream to show why it does not run")
    assert "raise max_worker_processes" in s["last_error"]
    # once a slot is free, it starts by itself
    db.execute("SELECT walship.drop_stream('first')")
    wt.wait_for(lambda: wt.stream_status(db, "second")["state"] == "running", 30, 0.2,
                "the second stream to start")
    db.execute("SELECT walship.drop_stream('second')")


def test_an_invalidated_slot_says_so_and_how_to_recover(db, kafka):
    db.execute("SELECT walship.create_stream('lagging', %s, ARRAY['items'])", [kafka.bootstrap])
    wt.wait_for(lambda: wt.stream_status(db, "lagging")["state"] == "running", 30, 0.1,
                "running")
    db.execute("SELECT walship.stop_stream('lagging')")
    for i in range(4):  # WAL far beyond max_slot_wal_keep_size
        db.execute("INSERT INTO items SELECT g FROM generate_series(%s::int, %s::int) g",
                   [i * 1000 + 10000, i * 1000 + 10999])
        db.execute("SELECT pg_switch_wal()")

    def lost():
        db.execute("CHECKPOINT")  # slots are invalidated at checkpoints
        return db.scalar("SELECT wal_status FROM pg_replication_slots "
                         "WHERE slot_name = 'walship_lagging'") == "lost"

    wt.wait_for(lost, 30, 0.5, "the slot to be invalidated")
    db.execute("SELECT walship.start_stream('lagging')")
    s = wt.wait_for(lambda: (x := wt.stream_status(db, "lagging"))["state"] == "error" and x,
                    30, 0.2, "the stream to fail")
    assert 'replication slot "walship_lagging" of stream "lagging" was invalidated ' \
        '(wal_removed)' in s["last_error"]
    assert "max_slot_wal_keep_size" in s["last_error"]
    assert "walship.drop_stream('lagging')" in s["last_error"]
    db.execute("SELECT walship.drop_stream('lagging')")
