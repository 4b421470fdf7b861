"""A snapshot row carries what a change event of the same row carries, for every type.

The compatibility suite's tables and changes (tests/compat/scripts: every type of the
type table, NULLs and defaults, TOAST values, composite and odd-named keys, partitions)
go through two streams of one database: stream ``chg`` (``snapshot_mode`` ``no_data``)
sees the changes as they happen; stream ``snap``, created afterwards, snapshots the
result. For every row the table holds at the end, ``snap``'s ``read`` event must carry
exactly the ``after`` of ``chg``'s last event of that key (and JSON's schema), and
``snap`` must hold one read per row and no other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import walship_testlib as wt

SCRIPTS = Path(__file__).resolve().parents[1] / "compat" / "scripts"
UNAVAILABLE = "__debezium_unavailable_value"


def keyed_tables(pg) -> dict[str, int]:
    """Topic suffix (schema.table) -> rows, of the tables a snapshot reads (a key,
    partitions for their partitioned table)."""
    rows = pg.execute(
        "SELECT n.nspname, c.relname, c.oid::regclass::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname IN ('public', 'My Schema') "
        "AND EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid "
        "            AND (i.indisprimary OR i.indisreplident))")
    return {f"{s}.{t}": pg.scalar(f"SELECT count(*) FROM {q}") for s, t, q in rows}


def topic_of(prefix: str, suffix: str) -> str:
    # the characters Kafka forbids become '_', as the stream names its topics
    return prefix + "." + "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_"
                                  for ch in suffix)


def parse(fmt, event_class, m):
    if m.value is None:
        return None
    if fmt == "json":
        return json.loads(m.value)
    ev = event_class()
    ev.ParseFromString(m.value)
    return ev


def key_of(fmt, m):
    """The key without its schema (JSON's schema names the stream's topic prefix)."""
    if fmt == "json" and m.key is not None:
        return json.dumps(json.loads(m.key)["payload"], sort_keys=True)
    return m.key


def op_of(fmt, ev) -> str:
    if fmt == "json":
        return ev["payload"]["op"]
    return {1: "c", 2: "u", 3: "d", 4: "t", 8: "r"}[ev.op]


def after_of(fmt, ev):
    if fmt == "json":
        return ev["payload"]["after"]
    return ev.after.SerializeToString(deterministic=True)


def incomplete(fmt, ev) -> bool:
    """The change left a TOAST-ed value out (the WAL does not carry it); a read has it."""
    if fmt == "json":
        return UNAVAILABLE in json.dumps(ev["payload"]["after"])
    return any(c.value.WhichOneof("kind") == "unchanged_toast" for c in ev.after.columns)


@pytest.mark.timeout(300)
def test_read_events_carry_what_change_events_carry(pg, kafka, event_class):
    pg.execute("CREATE EXTENSION IF NOT EXISTS walship")
    pg.psql((SCRIPTS / "schema.sql").read_text())
    formats = ("json", "protobuf")
    base = {"truncate": True, "partitions": 1}
    for fmt in formats:
        name = f"chg_{fmt}"
        pg.execute("SELECT walship.create_stream(%s, %s, NULL, %s::jsonb)",
                   [name, kafka.bootstrap, json.dumps({**base, "format": fmt,
                                                       "topic_prefix": name,
                                                       "snapshot_mode": "no_data"})])
        wt.wait_for(lambda: (wt.stream_status(pg, name) or {}).get("state") == "running", 60,
                    0.1, "the change stream to run")
    pg.psql((SCRIPTS / "changes.sql").read_text())
    for fmt in formats:
        wt.wait_caught_up(pg, f"chg_{fmt}")
        name = f"snap_{fmt}"
        pg.execute("SELECT walship.create_stream(%s, %s, NULL, %s::jsonb)",
                   [name, kafka.bootstrap, json.dumps({**base, "format": fmt,
                                                       "topic_prefix": name})])
    tables = keyed_tables(pg)
    for fmt in formats:
        name = f"snap_{fmt}"
        wt.wait_for(lambda: (wt.stream_status(pg, name) or {}).get("snapshot_state") == "done",
                    120, 0.2, f"the snapshot of {name} to finish")
        wt.wait_caught_up(pg, name)
        status = wt.stream_status(pg, name)
        assert status["snapshot_rows"] == sum(tables.values())
        assert status["snapshot_tables_done"] == status["snapshot_tables_total"] == len(tables)

    for fmt in formats:
        compared = 0
        for suffix, count in sorted(tables.items()):
            changes = wt.consume_all(kafka.bootstrap, [topic_of(f"chg_{fmt}", suffix)],
                                     timeout=30)
            reads = wt.consume_all(kafka.bootstrap, [topic_of(f"snap_{fmt}", suffix)],
                                   expected_count=count, timeout=60, linger=0.5, exact=True)
            last: dict[bytes, object] = {}
            for m in changes:  # one partition: offset order is commit order
                ev = parse(fmt, event_class, m)
                if ev is None or op_of(fmt, ev) == "d":
                    last.pop(key_of(fmt, m), None)
                elif op_of(fmt, ev) == "t":
                    last.clear()
                else:
                    last[key_of(fmt, m)] = ev
            got = {}
            for m in reads:
                ev = parse(fmt, event_class, m)
                assert op_of(fmt, ev) == "r", (fmt, suffix, key_of(fmt, m))
                if fmt == "json":
                    assert ev["payload"]["source"]["snapshot"] == "incremental"
                    assert ev["payload"]["before"] is None
                got[key_of(fmt, m)] = ev
            assert set(got) == set(last), (fmt, suffix)
            for key, ev in got.items():
                want = last[key]
                if incomplete(fmt, want):
                    continue
                assert after_of(fmt, ev) == after_of(fmt, want), (fmt, suffix, key)
                if fmt == "json":  # named after each stream's topics
                    assert (json.dumps(ev["schema"]).replace(f"snap_{fmt}.", "")
                            == json.dumps(want["schema"]).replace(f"chg_{fmt}.", "")), \
                        (fmt, suffix)
                compared += 1
        assert compared > 20, fmt
    for fmt in formats:
        for name in (f"chg_{fmt}", f"snap_{fmt}"):
            pg.execute("SELECT walship.drop_stream(%s)", [name])
