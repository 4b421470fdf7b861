"""A stream through a failover (PostgreSQL 17 and later): its slot is a failover slot
(create_stream option failover), a physical standby keeps it in step
(sync_replication_slots), the primary stops at once under load, the standby is promoted,
and its launcher starts the stream on the synchronized slot. Every change of the new
primary's history (what the old primary committed and the standby received, then what
the new primary commits) is in Kafka, and nothing else: the stream never sent a change
the standby did not have (synchronized_standby_slots). Before 17, the option is an error
naming the version."""

from __future__ import annotations

import json
import os
import signal
import time

import psycopg
import pytest

import walship_faults as wf
import walship_testlib as wt

status = wt.stream_status
# the PostgreSQL under test; the failover test exists from 17 on (not a skip: on 15 and 16
# the option's refusal is what there is to test)
PG_MAJOR = int(wt.pg_config("version").split()[1].split(".")[0])


def server_version(pg) -> int:
    return int(pg.scalar("SHOW server_version_num"))


@pytest.fixture
def primary():
    pg = wt.PgCluster("failover_primary",
                      settings={"synchronized_standby_slots": "standby1"} if PG_MAJOR >= 17
                      else None)
    try:
        pg.execute("CREATE EXTENSION walship")
        yield pg
    finally:
        pg.cleanup()


def test_failover_option_needs_postgresql_17(primary, kafka, unique):
    if server_version(primary) >= 170000:
        primary.execute("SELECT walship.create_stream(%s, %s, NULL, %s::jsonb)",
                        [unique[:40], kafka.bootstrap, json.dumps({"failover": True})])
        assert primary.scalar("SELECT failover FROM pg_replication_slots WHERE slot_name = %s",
                              ["walship_" + unique[:40]]) is True
        primary.execute("SELECT walship.drop_stream(%s)", [unique[:40]])
        return
    with pytest.raises(psycopg.errors.FeatureNotSupported) as err:
        primary.execute("SELECT walship.create_stream(%s, %s, NULL, %s::jsonb)",
                        [unique[:40], kafka.bootstrap, json.dumps({"failover": True})])
    assert "needs PostgreSQL 17 or later" in str(err.value)


@pytest.mark.timeout(400)
def _a_stream_survives_a_failover(primary, kafka, unique, figures):
    """The standby's WAL receiver is frozen (SIGSTOP) for the last seconds before the
    primary stops: the primary commits on, the standby gets none of it, and the stream
    must not send it (it waits, and says so), or it would be in Kafka but not in the new
    primary's history: a phantom."""
    primary.execute("ALTER SYSTEM SET walship.stall_timeout = '2s'")
    primary.reload()
    primary.execute("SELECT pg_create_physical_replication_slot('standby1')")
    standby = wt.PgCluster.standby_of(
        primary, "standby1", name="failover_standby",
        settings={"sync_replication_slots": True, "hot_standby_feedback": True,
                  # a primary's setting; the copy pg_basebackup made would name a slot
                  # the promoted standby does not have (and the stream would wait, saying so)
                  "synchronized_standby_slots": ""})
    try:
        wf.create_schema(primary)
        name = unique[:40]
        topics = wf.create_stream(primary, kafka.bootstrap, name, partitions=3, failover=True)
        slot = "walship_" + name

        with wf.LoadGenerator(primary, 200) as load:
            # the standby synchronizes the slot, and keeps it once it is persistent
            def synced():
                primary.execute("SELECT pg_log_standby_snapshot()")
                return standby.scalar(
                    "SELECT synced AND NOT temporary FROM pg_replication_slots "
                    "WHERE slot_name = %s", [slot])
            wt.wait_for(synced, 90, 0.5, "the slot to be synchronized")
            time.sleep(2)
            receiver = standby.scalar("SELECT pid FROM pg_stat_wal_receiver")
            os.kill(receiver, signal.SIGSTOP)
            try:
                frozen_at = primary.scalar("SELECT pg_current_wal_lsn()")
                st = wt.wait_for(lambda: (x := status(primary, name))["state"] == "error"
                                 and x, 30, 0.2, "the stream to say it waits for the standby")
                assert "synchronized_standby_slots" in st["last_error"], st["last_error"]
                time.sleep(2)
                ahead = primary.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)",
                                       [frozen_at])
                assert ahead > 0  # the primary committed on while the standby got nothing
                primary.stop("immediate")
            finally:
                os.kill(receiver, signal.SIGCONT)
        old_commits = load.commits

        standby.promote()
        wait = wt.wait_for(lambda: (s := status(standby, name)) and s["state"] == "running"
                           and s, 90, 0.5, "the stream to run on the promoted standby")
        assert wait["worker_pid"] is not None
        with wf.LoadGenerator(standby, 200, seed=8, resume=True) as after:
            time.sleep(4)
        wt.wait_caught_up(standby, name, timeout=180)
        report = wf.verify(standby, kafka.bootstrap, topics)
        figures(f"failover (PostgreSQL {server_version(standby) // 10000}): {report.line()}; "
                f"{old_commits} transactions before the primary stopped (the last seconds of "
                f"them, {ahead} bytes of WAL, never reached the standby), {after.commits} "
                f"after the promotion")
        assert report.lost == 0, report.lost_examples
        assert report.phantoms == 0, "Kafka holds changes the promoted standby never had"
        assert report.order_violations == 0, report.violation_examples
        assert after.commits > 0 and old_commits > 0
    finally:
        standby.cleanup()

if PG_MAJOR >= 17:
    test_a_stream_survives_a_failover = _a_stream_survives_a_failover
