"""Which tables a stream carries: a partitioned table named in `tables` streams all its
partitions, those attached later included (under each partition's topic, or under the
root's with partition_root). It used to stream nothing, silently."""

from __future__ import annotations

import json

import pytest

import walship_testlib as wt

status = wt.stream_status


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION walship")
    return pg


def keys_by_topic(kafka, topics):
    out: dict[str, set[int]] = {}
    for m in wt.consume_all(kafka.bootstrap, topics, timeout=60):
        out.setdefault(m.topic, set()).add(json.loads(m.key)["id"])
    return out


@pytest.mark.parametrize("partition_root", [False, True])
def test_a_partitioned_table_streams_all_its_partitions(db, kafka, unique, partition_root):
    root = f"parted_{int(partition_root)}"
    db.execute(f"CREATE TABLE {root} (id int, at int, PRIMARY KEY (id, at)) "
               f"PARTITION BY RANGE (at)")
    db.execute(f"CREATE TABLE {root}_a PARTITION OF {root} FOR VALUES FROM (0) TO (100)")
    db.execute(f"CREATE TABLE {root}_b PARTITION OF {root} FOR VALUES FROM (100) TO (200) "
               f"PARTITION BY RANGE (at)")
    db.execute(f"CREATE TABLE {root}_b1 PARTITION OF {root}_b FOR VALUES FROM (100) TO (200)")
    name = unique[:40]
    options = {"topic_prefix": name, "format": "json", "json_schema": False,
               "partition_root": partition_root}
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY[%s], %s::jsonb)",
               [name, kafka.bootstrap, f"public.{root}", json.dumps(options)])
    wt.wait_for(lambda: (status(db, name) or {}).get("state") == "running", 30, 0.1, "running")
    db.execute(f"INSERT INTO {root} SELECT g, g FROM generate_series(1, 10) g")        # _a
    db.execute(f"INSERT INTO {root} SELECT g, g + 100 FROM generate_series(11, 20) g")  # _b1
    # attached after the stream was created
    db.execute(f"CREATE TABLE {root}_c (id int, at int, PRIMARY KEY (id, at))")
    db.execute(f"ALTER TABLE {root} ATTACH PARTITION {root}_c FOR VALUES FROM (200) TO (300)")
    db.execute(f"INSERT INTO {root} SELECT g, g + 200 FROM generate_series(21, 30) g")  # _c
    wt.wait_caught_up(db, name)

    prefix = f"{name}.public."
    if partition_root:
        expected = {prefix + root: set(range(1, 31))}
    else:
        expected = {prefix + f"{root}_a": set(range(1, 11)),
                    prefix + f"{root}_b1": set(range(11, 21)),
                    prefix + f"{root}_c": set(range(21, 31))}
    assert keys_by_topic(kafka, list(expected)) == expected
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_table_names_kafka_forbids_are_sanitized_as_debezium_does(db, kafka, unique):
    """Any role with CREATE can name a table so; it must not stop the stream."""
    tables = {'"bad name!"': "bad_name_", '"Ünïcode"': "_n_code", '"emoji😀t"': "emoji__t"}
    for table in tables:
        db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    db.execute("CREATE TABLE plain_after (id int PRIMARY KEY)")
    name = unique[:40]
    options = {"topic_prefix": name, "format": "json", "json_schema": False}
    db.execute("SELECT walship.create_stream(%s, %s, NULL, %s::jsonb)",
               [name, kafka.bootstrap, json.dumps(options)])
    wt.wait_for(lambda: (status(db, name) or {}).get("state") == "running", 30, 0.1, "running")
    for i, table in enumerate(tables):
        db.execute(f"INSERT INTO {table} VALUES ({i})")
    db.execute("INSERT INTO plain_after SELECT g FROM generate_series(1, 100) g")
    wt.wait_caught_up(db, name)
    expected = {f"{name}.public.{topic}": {i} for i, topic in enumerate(tables.values())}
    expected[f"{name}.public.plain_after"] = set(range(1, 101))
    assert keys_by_topic(kafka, list(expected)) == expected
    assert status(db, name)["state"] == "running"
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_a_topic_name_longer_than_kafka_allows_is_cut_at_249(db, kafka, unique):
    """A 200-character prefix and a 63-character table name make 268 characters; Debezium
    cuts the name at Kafka's 249, and so does walship, instead of stopping the stream."""
    table = "t" * 63
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    name = unique[:40]
    prefix = (name + "_" + "p" * 200)[:200]
    options = {"topic_prefix": prefix, "format": "json", "json_schema": False}
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY[%s], %s::jsonb)",
               [name, kafka.bootstrap, table, json.dumps(options)])
    wt.wait_for(lambda: (status(db, name) or {}).get("state") == "running", 30, 0.1, "running")
    db.execute(f"INSERT INTO {table} SELECT g FROM generate_series(1, 20) g")
    wt.wait_caught_up(db, name)
    topic = f"{prefix}.public.{table}"[:249]
    assert len(topic) == 249
    assert keys_by_topic(kafka, [topic]) == {topic: set(range(1, 21))}
    assert status(db, name)["state"] == "running"
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_a_renamed_table_keeps_streaming_and_a_dropped_one_is_reported(db, kafka, unique):
    """Tables are followed by identity: 100 rows after ALTER TABLE ... RENAME went missing
    before; a stream that restarts after the rename (and decodes WAL from both sides of
    it) keeps them too. A dropped table shows in stream_status.dropped_tables."""
    db.execute("CREATE TABLE ren_a (id int PRIMARY KEY)")
    db.execute("CREATE TABLE ren_b (id int PRIMARY KEY)")
    db.execute("CREATE TABLE ren_gone (id int PRIMARY KEY)")
    name = unique[:40]
    options = {"topic_prefix": name, "format": "json", "json_schema": False}
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY['ren_a', 'ren_b', 'ren_gone'], "
               "%s::jsonb)", [name, kafka.bootstrap, json.dumps(options)])
    wt.wait_for(lambda: (status(db, name) or {}).get("state") == "running", 30, 0.1, "running")
    assert status(db, name)["dropped_tables"] == []

    db.execute("INSERT INTO ren_a SELECT g FROM generate_series(1, 100) g")
    db.execute("ALTER TABLE ren_a RENAME TO ren_a_new")
    db.execute("INSERT INTO ren_a_new SELECT g FROM generate_series(101, 200) g")
    wt.wait_caught_up(db, name)

    # stopped, renamed and written while stopped: the restarted worker decodes WAL from
    # before and after this rename
    db.execute("SELECT walship.stop_stream(%s)", [name])
    db.execute("INSERT INTO ren_b SELECT g FROM generate_series(1, 50) g")
    db.execute("ALTER TABLE ren_b RENAME TO ren_b_new")
    db.execute("INSERT INTO ren_b_new SELECT g FROM generate_series(51, 100) g")
    db.execute("INSERT INTO ren_gone VALUES (1)")
    db.execute("DROP TABLE ren_gone")
    # a new table under a dropped or renamed name is another table: not streamed
    db.execute("CREATE TABLE ren_a (id int PRIMARY KEY)")
    db.execute("INSERT INTO ren_a VALUES (999)")
    db.execute("SELECT walship.start_stream(%s)", [name])
    wt.wait_for(lambda: (status(db, name) or {}).get("state") == "running", 30, 0.1, "running")
    db.execute("INSERT INTO ren_b_new SELECT g FROM generate_series(101, 150) g")
    wt.wait_caught_up(db, name)

    p = f"{name}.public."
    expected = {p + "ren_a": set(range(1, 101)), p + "ren_a_new": set(range(101, 201)),
                p + "ren_b": set(range(1, 51)), p + "ren_b_new": set(range(51, 151)),
                p + "ren_gone": {1}}
    assert keys_by_topic(kafka, list(expected)) == expected
    st = status(db, name)
    assert st["state"] == "running", st
    assert st["dropped_tables"] == ["public.ren_gone"]
    db.execute("SELECT walship.drop_stream(%s)", [name])
