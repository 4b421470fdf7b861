"""Large transactions and large values decode without harming the server.

A 200 MB transaction (spilled to disk: the test cluster runs with
logical_decoding_work_mem=64kB) and a single 100 MB value go through the walship plugin
in both formats. The server must stay up (same postmaster), the decoding backend's
peak memory must stay bounded, and every event must be there, whole.
"""

from __future__ import annotations

import pytest

PG_OPTIONS = {"shared_preload_libraries": ""}
MB = 1024 * 1024


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the backend ever had."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def postmaster_start(pg):
    return pg.scalar("SELECT pg_postmaster_start_time()")


@pytest.mark.timeout(900)
def test_200mb_transaction(pg, postmaster_start):
    pg.execute("CREATE TABLE big_txn (id bigint PRIMARY KEY, payload text)")
    pg.execute("SELECT pg_create_logical_replication_slot('big_txn', 'walship')")
    with pg.connect() as conn:
        start = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        conn.execute("INSERT INTO big_txn SELECT g, repeat(md5(g::text), 5) "
                     "FROM generate_series(1, 1000000) g")
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start,)).fetchone()[0]
    assert wal >= 200 * MB, f"the transaction wrote only {wal / MB:.0f} MB of WAL"

    with pg.connect() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        events, total, distinct_ids = conn.execute(
            "SELECT count(*), sum(length(data)), count(DISTINCT lsn) "
            "FROM pg_logical_slot_get_binary_changes('big_txn', NULL, NULL)").fetchone()
        peak = peak_rss_mb(pid)
        spilled = conn.execute("SELECT spill_bytes FROM pg_stat_replication_slots "
                               "WHERE slot_name = 'big_txn'").fetchone()[0]
    print(f"200 MB transaction: {events} events, {total / MB:.0f} MB, spilled {spilled / MB:.0f} MB, "
          f"decoding backend peak {peak:.0f} MB")
    assert events == 1_000_000
    assert distinct_ids == 1_000_000          # each event at its own change LSN
    assert total > 200 * MB
    assert spilled > 0, "the transaction should have been spilled to disk"
    assert peak < 512, f"decoding backend peaked at {peak:.0f} MB"
    assert pg.scalar("SELECT pg_postmaster_start_time()") == postmaster_start


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fmt", ["protobuf", "json"])
def test_100mb_value(pg, postmaster_start, fmt):
    table = f"big_value_{fmt}"
    pg.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text, b bytea)")
    pg.execute(f"SELECT pg_create_logical_replication_slot('{table}', 'walship')")
    # 100 MB of text that does not compress away, and the same as bytea.
    pg.execute(f"INSERT INTO {table} SELECT 1, string_agg(md5(g::text), ''), NULL "
               "FROM generate_series(1, 100 * 1024 * 1024 / 32) g")
    pg.execute(f"UPDATE {table} SET b = convert_to(v, 'UTF8')")
    with pg.connect() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        rows = conn.execute(
            f"SELECT length(data) FROM pg_logical_slot_get_binary_changes('{table}', NULL, NULL, "
            "'format', %s)", (fmt,)).fetchall()
        peak = peak_rss_mb(pid)
    sizes = [r[0] for r in rows]
    assert len(sizes) == 2                     # the INSERT and the UPDATE
    assert sizes[0] > 100 * MB                 # the whole value, not truncated
    # The UPDATE left the text alone (unchanged TOAST, not carried) and set the bytea.
    assert sizes[1] > (100 * MB if fmt == "protobuf" else 133 * MB)  # JSON: base64
    print(f"{fmt}: events {sizes}, decoding backend peak {peak:.0f} MB")
    assert peak < 2048, f"decoding backend peaked at {peak:.0f} MB for a 100 MB value"
    assert pg.scalar("SELECT pg_postmaster_start_time()") == postmaster_start
    assert pg.scalar(f"SELECT length(v) FROM {table}") == 100 * MB
