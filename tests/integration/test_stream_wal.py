"""A stream must not hold WAL for tables it does not cover: 1 GB written into other
tables moves the slot's confirmed_flush_lsn (and then restart_lsn) along with the WAL,
while the stream's own table keeps streaming."""

from __future__ import annotations

import time

import pytest

import walship_testlib as wt

GB = 1 << 30


def slot(pg, name) -> dict:
    with pg.connect() as conn:
        cur = conn.execute(
            "SELECT confirmed_flush_lsn, restart_lsn, wal_status, pg_current_wal_lsn() AS now, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) AS confirmed_lag, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) AS retained "
            "FROM pg_replication_slots WHERE slot_name = %s", [f"walship_{name}"])
        return dict(zip([c.name for c in cur.description], cur.fetchone()))


def lsn_diff(pg, a, b) -> int:
    return int(pg.scalar("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", [a, b]))


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION walship")
    pg.execute("CREATE TABLE watched (id int PRIMARY KEY, v text)")
    pg.execute("CREATE TABLE bulk (id bigint, payload text)")
    pg.execute("ALTER TABLE bulk ALTER payload SET STORAGE EXTERNAL")  # no compression
    return pg


@pytest.mark.timeout(600)
def test_1gb_into_other_tables_does_not_hold_wal(db, kafka, event_class, unique):
    name = unique[:40]
    prefix = f"w{name}"
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY['watched'], %s::jsonb)",
               [name, kafka.bootstrap, f'{{"topic_prefix": "{prefix}", "snapshot_mode": "no_data"}}'])
    wt.wait_for(lambda: db.scalar("SELECT state FROM walship.stream_status WHERE name = %s",
                                  [name]) == "running", 30, 0.1, "running")
    db.execute("INSERT INTO watched VALUES (1, 'before')")

    start = db.scalar("SELECT pg_current_wal_lsn()")
    samples = []  # confirmed_flush_lsn while the load runs
    t0 = time.monotonic()
    batch = 0
    while lsn_diff(db, db.scalar("SELECT pg_current_wal_lsn()"), start) < GB:
        # ~64 MB of WAL per transaction, in rows nobody streams
        db.execute("INSERT INTO bulk SELECT g, repeat(md5(g::text), 64) "
                   "FROM generate_series(%s::bigint, %s::bigint) g", [batch * 30000, batch * 30000 + 29999])
        batch += 1
        samples.append(slot(db, name)["confirmed_flush_lsn"])
    written_in = time.monotonic() - t0
    end = db.scalar("SELECT pg_current_wal_lsn()")
    written = lsn_diff(db, end, start)
    assert written >= GB

    # confirmed_flush_lsn moved during the load, not only at its end
    moved = sum(1 for a, b in zip(samples, samples[1:]) if lsn_diff(db, b, a) > 0)
    assert moved >= len(samples) // 3, samples

    # and passes everything written, with nothing to send
    t1 = time.monotonic()
    wt.wait_for(lambda: lsn_diff(db, slot(db, name)["confirmed_flush_lsn"], end) >= 0, 300, 0.2,
                f"confirmed_flush_lsn to pass {end}")
    caught_up_in = time.monotonic() - t1

    # checkpoints log running transactions; once past them restart_lsn follows and the WAL
    # can go
    def released():
        db.execute("CHECKPOINT")
        time.sleep(0.5)
        return slot(db, name)["retained"] < 64 << 20

    wt.wait_for(released, 60, 0.5, "restart_lsn to follow")
    s = slot(db, name)
    assert s["wal_status"] == "reserved"

    # the stream's own table still streams, once
    db.execute("INSERT INTO watched VALUES (2, 'after')")
    msgs = wt.consume_all(kafka.bootstrap, f"{prefix}.public.watched", expected_count=2,
                          timeout=60, linger=1.0, exact=True)
    ids = [event_class.FromString(m.value).after.columns[0].value.int64_value for m in msgs]
    assert ids == [1, 2]
    st = db.execute("SELECT events_produced, state FROM walship.stream_status WHERE name = %s",
                    [name])[0]
    assert st == (2, "running")
    print(f"{written / GB:.2f} GB of WAL written in {written_in:.1f}s; the slot confirmed it "
          f"{caught_up_in:.1f}s later; {s['retained'] / (1 << 20):.1f} MB retained")
    db.execute("SELECT walship.drop_stream(%s)", [name])
