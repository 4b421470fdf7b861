"""A stream that cannot get a background worker shows why, instead of "starting" for
ever."""

from __future__ import annotations

import pytest

import walship_testlib as wt

# walship's launcher and the logical replication launcher take two of the three slots,
# the first stream the third
PG_OPTIONS = {"settings": {"max_worker_processes": 3, "max_parallel_workers": 0}}


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
