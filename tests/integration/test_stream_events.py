"""A stream end to end: inserts, updates, deletes and truncates over several tables and
column types arrive in Kafka as protobuf events, compared one by one with what was
committed; through stop/start, a PostgreSQL restart, and a drop."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

import walship_testlib as wt

status = wt.stream_status
wait_caught_up = wt.wait_caught_up

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)






def value_of(v):
    kind = v.WhichOneof("kind")
    if kind == "is_null":
        return None
    if kind == "json":
        return json.loads(v.json)
    if kind == "uuid":
        return uuid.UUID(bytes=v.uuid)
    return getattr(v, kind)


def row_of(row) -> dict:
    return {c.name: value_of(c.value) for c in row.columns}


def micros(ts: dt.datetime) -> int:
    return (ts - EPOCH) // dt.timedelta(microseconds=1)


def days(d: dt.date) -> int:
    return (d - EPOCH.date()).days


class Model:
    """What the committed rows should look like in events, per table."""

    @staticmethod
    def orders(id, customer, amount, paid, created, tags, note):
        return {"id": id, "customer": customer, "amount": amount, "paid": paid,
                "created": micros(created), "tags": tags, "note": note}

    @staticmethod
    def people(id, name, born, score, photo):
        return {"id": id, "name": name, "born": days(born), "score": score, "photo": photo}

    @staticmethod
    def pairs(a, b, v):
        return {"a": a, "b": b, "v": v}


KEYS = {"orders": ["id"], "people": ["id"], "pairs": ["a", "b"]}

# The Value member each column's type travels in (a NULL is is_null): timestamptz has its
# own member, timestamptz_us, since the 0.x schema change.
MEMBERS = {
    "orders": {"id": "int64_value", "customer": "string_value", "amount": "numeric",
               "paid": "bool_value", "created": "timestamptz_us", "tags": "json",
               "note": "string_value"},
    "people": {"id": "uuid", "name": "string_value", "born": "date_days",
               "score": "double_value", "photo": "bytes_value"},
    "pairs": {"a": "int64_value", "b": "string_value", "v": "int64_value"},
}


def check_members(table, columns) -> None:
    for c in columns:
        kind = c.value.WhichOneof("kind")
        assert kind in ("is_null", MEMBERS[table][c.name]), f"{table}.{c.name}: {kind}"


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION walship")
    pg.psql("""
        CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL,
                             amount numeric(12,2), paid boolean, created timestamptz,
                             tags jsonb, note text);
        CREATE TABLE people (id uuid PRIMARY KEY, name varchar(50), born date,
                             score float8, photo bytea);
        CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
        CREATE TABLE ignored (id int PRIMARY KEY, payload text);
    """)
    return pg


class Expect:
    """The events a test expects, per topic, in commit order."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.by_topic: dict[str, list[tuple]] = {}

    def add(self, table, op, key, after=None):
        self.by_topic.setdefault(f"{self.prefix}.public.{table}", []).append((op, key, after))
        if op == "DELETE" and key is not None:  # tombstones on by default, as Debezium's
            self.by_topic[f"{self.prefix}.public.{table}"].append(("TOMBSTONE", key, None))

    def total(self):
        return sum(len(v) for v in self.by_topic.values())


def consume_and_compare(kafka, expect: Expect, event_class, row_class, partitions):
    msgs = wt.consume_all(kafka.bootstrap, list(expect.by_topic), expected_count=expect.total(),
                          timeout=90, linger=1.0, exact=True)
    got: dict[str, list] = {}
    for m in msgs:
        got.setdefault(m.topic, []).append(m)
    for topic, want in expect.by_topic.items():
        ms = got.get(topic, [])
        assert len(ms) == len(want), topic
        # one partition per key (Java's murmur2), so order is only defined per key
        by_key_got: dict[bytes, list] = {}
        for m in ms:
            table = topic.rsplit(".", 1)[1]
            if m.value is None:  # a tombstone: a key and no value, in the key's partition
                assert m.key and m.partition == wt.java_partition(m.key, partitions), topic
                assert m.header("walship.lsn") is not None
                by_key_got.setdefault(m.key, []).append((m.partition, m.offset, None))
                continue
            ev = event_class.FromString(m.value)
            check_members(table, list(ev.after.columns) + list(ev.key))
            assert ev.source.database == "postgres" and ev.source.schema == "public"
            assert ev.source.table == table
            assert m.header("walship.lsn").decode() == \
                f"{ev.source.commit_lsn >> 32:X}/{ev.source.commit_lsn & 0xFFFFFFFF:X}"
            assert int(m.header("walship.xid")) == ev.source.xid
            if m.key:
                # the Kafka key is the event's key columns, as a walship.v1.Row
                assert m.partition == wt.java_partition(m.key, partitions), topic
                assert row_of(row_class.FromString(m.key)) == \
                    {c.name: value_of(c.value) for c in ev.key}
            by_key_got.setdefault(m.key, []).append((m.partition, m.offset, ev))
        by_key_want: dict[str, list] = {}
        for op, key, after in want:
            by_key_want.setdefault(json.dumps(key, default=str, sort_keys=True), []).append(
                (op, key, after))
        got_rendered: dict[str, list] = {}
        for mkey, evs in by_key_got.items():
            evs.sort(key=lambda x: (x[0], x[1]))
            assert len({p for p, _, _ in evs}) == 1  # every change of a row in one partition
            for _, _, ev in evs:
                if ev is None:
                    key = row_of(row_class.FromString(mkey))
                    got_rendered.setdefault(json.dumps(key, default=str, sort_keys=True),
                                            []).append(("TOMBSTONE", key, None))
                    continue
                op = ev.DESCRIPTOR.fields_by_name["op"].enum_type.values_by_number[ev.op].name
                key = {c.name: value_of(c.value) for c in ev.key} or None
                after = row_of(ev.after) if ev.HasField("after") else None
                if op == "TRUNCATE":
                    assert list(ev.source.truncated_tables) == [f"public.{table}"]
                got_rendered.setdefault(json.dumps(key, default=str, sort_keys=True), []).append(
                    (op, key, after))
        assert got_rendered == by_key_want, topic
        # commit order holds within each partition
        lsns = {}
        for p, _, ev in sorted((x for evs in by_key_got.values() for x in evs),
                               key=lambda x: (x[0], x[1])):
            if ev is None:
                continue
            assert ev.source.commit_lsn >= lsns.get(p, 0)
            lsns[p] = ev.source.commit_lsn
    return msgs


@pytest.mark.timeout(400)
def test_changes_of_several_tables_and_types(db, kafka, event_class, unique):
    row_class = wt.load_event_class(message="walship.v1.Row")
    name = unique[:40]
    prefix = f"ev{name}"
    partitions = 3
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY['orders', 'people', 'pairs'], "
               "%s::jsonb)", [name, kafka.bootstrap,
                              json.dumps({"topic_prefix": prefix, "partitions": partitions,
                                          # the module's tables hold earlier tests' rows: the
                                          # changes of this test only
                                          "snapshot_mode": "no_data",
                                          # TODO(sink): make this the sink's default; without
                                          # it the broker auto-creates topics (1 partition)
                                          # before walship's CreateTopics
                                          "kafka": {"allow.auto.create.topics": "false"}})])
    expect = Expect(prefix)
    t0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    people = [uuid.UUID(int=i * 7919 + 1) for i in range(4)]

    with db.connect(autocommit=False) as conn:
        # one transaction over three tables
        for i in range(1, 6):
            row = (i, f"customer {i}", f"{i * 10}.50", i % 2 == 0, t0 + dt.timedelta(days=i),
                   {"i": i, "tags": ["a", "b"][: i % 3]}, None if i == 3 else f"note ü {i}")
            conn.execute("INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s)",
                         [*row[:5], json.dumps(row[5]), row[6]])
            expect.add("orders", "INSERT", {"id": i}, Model.orders(*row))
        for i, pid in enumerate(people):
            row = (pid, f"person {i}", dt.date(1990 + i, 1, 31), 0.5 + i, bytes([i, 0, 255]))
            conn.execute("INSERT INTO people VALUES (%s, %s, %s, %s, %s)", row)
            expect.add("people", "INSERT", {"id": pid}, Model.people(*row))
        for a in (1, 2):
            for b in ("x", "y"):
                conn.execute("INSERT INTO pairs VALUES (%s, %s, %s)", [a, b, a * 100])
                expect.add("pairs", "INSERT", {"a": a, "b": b}, Model.pairs(a, b, a * 100))
        conn.commit()

        # updates, one statement each
        conn.execute("UPDATE orders SET paid = true, amount = amount + 1 WHERE id IN (1, 3)")
        for i in (1, 3):
            row = (i, f"customer {i}", f"{i * 10 + 1}.50", True, t0 + dt.timedelta(days=i),
                   {"i": i, "tags": ["a", "b"][: i % 3]}, None if i == 3 else f"note ü {i}")
            expect.add("orders", "UPDATE", {"id": i}, Model.orders(*row))
        conn.execute("UPDATE people SET score = -2.25, name = NULL WHERE id = %s", [people[1]])
        expect.add("people", "UPDATE", {"id": people[1]},
                   Model.people(people[1], None, dt.date(1991, 1, 31), -2.25, bytes([1, 0, 255])))
        conn.commit()

        # a transaction nobody streams, and one that rolls back
        conn.execute("INSERT INTO ignored SELECT g, 'x' FROM generate_series(1, 100) g")
        conn.commit()
        conn.execute("INSERT INTO orders VALUES (99, 'never', 1, false, now(), '{}', null)")
        conn.rollback()

        # deletes and a truncate
        conn.execute("DELETE FROM people WHERE id = %s", [people[2]])
        expect.add("people", "DELETE", {"id": people[2]})
        conn.execute("DELETE FROM orders WHERE id = 5")
        expect.add("orders", "DELETE", {"id": 5})
        conn.commit()
        conn.execute("TRUNCATE pairs")
        expect.add("pairs", "TRUNCATE", None)
        conn.commit()

    wait_caught_up(db, name)
    consume_and_compare(kafka, expect, event_class, row_class, partitions)
    assert kafka.topics()[f"{prefix}.public.orders"] == partitions
    assert f"{prefix}.public.ignored" not in kafka.topics()
    s = status(db, name)
    assert s["events_acked"] == expect.total() and s["last_error"] is None

    # stop, write, start: what was written while stopped arrives once
    db.execute("SELECT walship.stop_stream(%s)", [name])
    db.execute("INSERT INTO orders VALUES (10, 'while stopped', 1, false, %s, '[]', null)", [t0])
    expect.add("orders", "INSERT", {"id": 10}, Model.orders(10, "while stopped", "1.00", False,
                                                            t0, [], None))
    db.execute("SELECT walship.start_stream(%s)", [name])
    wait_caught_up(db, name)

    # restart PostgreSQL with changes in between: the stream comes back by itself
    db.execute("INSERT INTO orders VALUES (11, 'before restart', 2, true, %s, 'null', 'x')", [t0])
    expect.add("orders", "INSERT", {"id": 11}, Model.orders(11, "before restart", "2.00", True,
                                                            t0, None, "x"))
    db.restart()
    db.execute("UPDATE orders SET note = 'after restart' WHERE id = 11")
    expect.add("orders", "UPDATE", {"id": 11}, Model.orders(11, "before restart", "2.00", True,
                                                            t0, None, "after restart"))
    wait_caught_up(db, name)

    consume_and_compare(kafka, expect, event_class, row_class, partitions)

    # drop: the slot goes, later changes go nowhere
    db.execute("SELECT walship.drop_stream(%s)", [name])
    assert db.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                     [f"walship_{name}"]) == 0
    db.execute("INSERT INTO orders VALUES (12, 'after drop', 3, true, now(), '{}', null)")
    orders = len(expect.by_topic[f"{prefix}.public.orders"])
    wt.consume_all(kafka.bootstrap, f"{prefix}.public.orders", expected_count=orders,
                   timeout=30, linger=2.0, exact=True)
