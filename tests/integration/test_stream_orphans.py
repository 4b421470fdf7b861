"""No walship_* slot outlives its stream: the launcher drops the slots create_stream made
whose catalog row is gone (deleted by hand, DROP SCHEMA walship CASCADE, create_stream's
transaction lost in a crash), once nothing uses them, and leaves other slots alone."""

from __future__ import annotations

import time

import pytest

import walship_testlib as wt

PG_OPTIONS = {"settings": {"walship.naptime": "1s"}}


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION walship")
    pg.execute("CREATE TABLE items (id int PRIMARY KEY)")
    return pg


def slots(db) -> set[str]:
    return {r[0] for r in db.execute("SELECT slot_name FROM pg_replication_slots")}


def running(db, name):
    wt.wait_for(lambda: (wt.stream_status(db, name) or {}).get("state") == "running", 30, 0.1,
                f"{name} to run")


def test_a_catalog_row_deleted_by_hand_takes_its_slot_and_worker_along(db, kafka):
    db.execute("SELECT walship.create_stream('by_hand', %s, ARRAY['items'])", [kafka.bootstrap])
    running(db, "by_hand")
    # someone else's slot with a walship-like name stays
    db.execute("SELECT pg_create_logical_replication_slot('walship_not_a_stream', 'walship')")
    db.execute("DELETE FROM walship.streams WHERE name = 'by_hand'")
    wt.wait_for(lambda: "walship_by_hand" not in slots(db), 30, 0.2, "the orphan slot to go")
    assert 'dropped replication slot "walship_by_hand": its stream no longer exists' \
        in db.log_text()
    assert db.scalar("SELECT count(*) FROM pg_stat_activity "
                     "WHERE backend_type = 'walship stream'") == 0
    assert "walship_not_a_stream" in slots(db)
    db.execute("SELECT pg_drop_replication_slot('walship_not_a_stream')")


def test_drop_schema_cascade_stops_workers_and_drops_slots(db, kafka):
    db.execute("SELECT walship.create_stream('schema_gone', %s, ARRAY['items'])",
               [kafka.bootstrap])
    running(db, "schema_gone")
    db.execute("DROP SCHEMA walship CASCADE")
    wt.wait_for(lambda: "walship_schema_gone" not in slots(db), 30, 0.2, "the slot to go")
    wt.wait_for(lambda: db.scalar("SELECT count(*) FROM pg_stat_activity "
                                  "WHERE backend_type = 'walship stream'") == 0, 30, 0.2,
                "the worker to stop")
    db.execute("CREATE EXTENSION walship")


def test_a_crash_inside_create_streams_transaction_leaves_no_slot(db, kafka):
    conn = db.connect(autocommit=False)
    conn.execute("SELECT walship.create_stream('lost', %s, ARRAY['items'])", [kafka.bootstrap])
    assert "walship_lost" in slots(db)  # the slot exists before the commit
    # while create_stream's transaction is open, the launcher leaves its slot alone
    time.sleep(2.5)
    assert "walship_lost" in slots(db)
    db.crash()
    db.start()
    conn.close()
    wt.wait_for(lambda: "walship_lost" not in slots(db), 30, 0.2, "the lost slot to go")
    # and the name can be used again
    db.execute("SELECT walship.create_stream('lost', %s, ARRAY['items'])", [kafka.bootstrap])
    running(db, "lost")
    db.execute("SELECT walship.drop_stream('lost')")
