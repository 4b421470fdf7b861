"""Rows larger than Kafka's default message size (1 MB): on a topic walship creates, a
5 MB TOAST-ed value arrives whole and the stream keeps running; on an existing topic
with a smaller max.message.bytes, the stream stops with a message saying what to raise."""

from __future__ import annotations

import hashlib
import json

import walship_testlib as wt

# 163840 md5 hex digests of 32 characters: 5 MiB that does not compress.
BIG_VALUE_SQL = "SELECT string_agg(md5(g::text), '') FROM generate_series(1, 163840) g"
BIG_LENGTH = 163840 * 32
WALSHIP_MAX_MESSAGE_BYTES = "33554432"  # the sink's default message.max.bytes


def create_stream(pg, kafka, name: str, prefix: str, table: str) -> None:
    pg.execute("SELECT walship.create_stream(%s, %s, ARRAY[%s], %s::jsonb)",
               [name, kafka.bootstrap, table,
                json.dumps({"topic_prefix": prefix, "partitions": 1, "snapshot_mode": "no_data",
                            # the broker must not auto-create the topic before walship does
                            "kafka": {"allow.auto.create.topics": "false"}})])


def topic_config(kafka, topic: str, key: str) -> str:
    from confluent_kafka.admin import ConfigResource

    admin = kafka.admin()  # kept alive until the answer is in
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    return configs[key].value


def test_5mb_row_arrives_whole_and_stream_keeps_running(pg, kafka, event_class, unique):
    pg.execute("CREATE EXTENSION IF NOT EXISTS walship")
    name = unique[:40]
    table = f"big_{name}"[:60]
    prefix = f"lr{name}"
    topic = f"{prefix}.public.{table}"
    pg.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, doc text)")
    create_stream(pg, kafka, name, prefix, table)

    pg.execute(f"INSERT INTO {table} VALUES (1, ({BIG_VALUE_SQL}))")
    pg.execute(f"INSERT INTO {table} VALUES (2, 'small after big')")
    big = pg.scalar(BIG_VALUE_SQL)
    assert len(big) == BIG_LENGTH

    wt.wait_caught_up(pg, name, timeout=45)
    msgs = wt.consume_all(kafka.bootstrap, topic, expected_count=2, timeout=30, linger=0.5,
                          exact=True)
    assert len(msgs[0].value) > BIG_LENGTH  # one Kafka message, bigger than 1 MB
    events = [event_class.FromString(m.value) for m in msgs]
    docs = [{c.name: c.value for c in ev.after.columns}["doc"].string_value for ev in events]
    assert len(docs[0]) == BIG_LENGTH
    assert hashlib.md5(docs[0].encode()).hexdigest() == hashlib.md5(big.encode()).hexdigest()
    assert docs[1] == "small after big"  # in order, behind the big one

    # the topic walship created accepts what its producer may send
    assert topic_config(kafka, topic, "max.message.bytes") == WALSHIP_MAX_MESSAGE_BYTES
    s = wt.stream_status(pg, name)
    assert s["state"] == "running" and s["last_error"] is None
    assert s["events_acked"] >= 2
    pg.execute("SELECT walship.drop_stream(%s)", [name])


def test_existing_topic_with_smaller_limit_names_the_setting(pg, kafka, unique):
    pg.execute("CREATE EXTENSION IF NOT EXISTS walship")
    name = unique[:40]
    table = f"big_{name}"[:60]
    prefix = f"lr{name}"
    topic = f"{prefix}.public.{table}"
    kafka.create_topic(topic, partitions=1, config={"max.message.bytes": "1048588"})
    pg.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, doc text)")
    create_stream(pg, kafka, name, prefix, table)

    pg.execute(f"INSERT INTO {table} VALUES (1, ({BIG_VALUE_SQL}))")
    s = wt.wait_for(lambda: (x := wt.stream_status(pg, name))["last_error"] and x, 30, 0.2,
                    "the stream to report the refused event")
    assert "max.message.bytes" in s["last_error"], s["last_error"]
    assert s["events_acked"] == 0
    pg.execute("SELECT walship.drop_stream(%s)", [name])
