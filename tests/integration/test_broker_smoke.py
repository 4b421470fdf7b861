"""Smoke tests of the test infrastructure itself: the real Kafka broker, the Java-
compatible partitioner, the PostgreSQL cluster helper and the event schema loader.
None of these need walship to be built or installed."""

from __future__ import annotations

import re

from confluent_kafka import Producer

import walship_testlib as wt

# Apache Kafka's own vectors (clients/.../common/utils/UtilsTest.java, testMurmur2).
KAFKA_MURMUR2_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def _produce(bootstrap: str, topic: str, records, **conf) -> dict[bytes, list[int]]:
    """Produce (key, value, headers) records; return key -> partitions from delivery reports."""
    placed: dict[bytes, list[int]] = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            placed.setdefault(msg.key(), []).append(msg.partition())

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5, **conf})
    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
    assert producer.flush(30) == 0, "messages still queued after 30 s"
    assert not errors, errors
    return placed


def test_broker_is_kafka_4_1_kraft_on_loopback(kafka):
    host, port = kafka.bootstrap.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    md = kafka.admin().list_topics(timeout=10)
    assert [b.host for b in md.brokers.values()] == ["127.0.0.1"]
    if kafka.log_path is not None:
        log = kafka.log_path.read_text(errors="replace")
        m = re.search(r"Kafka version: (\S+)", log)
        assert m and m.group(1).startswith("4.1."), m and m.group(1)
        assert "KafkaRaftServer" in log  # KRaft, no ZooKeeper


def test_keys_round_trip_on_three_partitions(kafka, unique):
    topic = unique
    kafka.create_topic(topic, partitions=3)
    assert kafka.topics()[topic] == 3

    keys = [f"key-{i}".encode() for i in range(20)] + list(KAFKA_MURMUR2_VECTORS)
    records = []
    for round_ in range(2):  # two values per key: their order must hold
        for key in keys:
            records.append((key, b"v%d:" % round_ + key, [("round", str(round_).encode()),
                                                         ("k", key)]))
    placed = _produce(kafka.bootstrap, topic, records, partitioner="murmur2_random")

    msgs = wt.consume_all(kafka.bootstrap, topic, expected_count=len(records), timeout=60,
                          linger=0.5, exact=True)
    got = sorted((m.key, m.value, tuple(m.headers)) for m in msgs)
    want = sorted((k, v, tuple(h)) for k, v, h in records)
    assert got == want

    by_key: dict[bytes, list] = {}
    for m in msgs:
        by_key.setdefault(m.key, []).append(m)
    assert {p for m in msgs for p in [m.partition]} == {0, 1, 2}
    for key, ms in by_key.items():
        # every record of a key is in one partition, where Java would put it, in order
        assert {m.partition for m in ms} == {wt.java_partition(key, 3)}, key
        assert set(placed[key]) == {wt.java_partition(key, 3)}, key
        ms.sort(key=lambda m: m.offset)
        assert [m.header("round") for m in ms] == [b"0", b"1"], key


def test_murmur2_matches_kafka_utils_vectors():
    for data, expected in KAFKA_MURMUR2_VECTORS.items():
        assert wt.java_murmur2(data) == expected, data
    # toPositive masks the sign bit (it is not abs()): 1173551340 % 3 == 0, abs() gives 2
    assert wt.java_partition(b"21", 3) == 0 and abs(-973932308) % 3 == 2


def test_librdkafka_murmur2_random_places_keys_like_java(kafka, unique):
    topic = unique
    partitions = 7
    kafka.create_topic(topic, partitions=partitions)
    keys = list(KAFKA_MURMUR2_VECTORS) + [b"", b"\x00", b"\xff\xfe\xfd", b"user:42",
                                          (1234567890).to_bytes(8, "big")]
    keys += [f"order-{i}".encode() for i in range(50)]
    placed = _produce(kafka.bootstrap, topic, [(k, b"x", None) for k in keys],
                      partitioner="murmur2_random")
    mismatches = {k: (placed[k], wt.java_partition(k, partitions))
                  for k in keys if placed[k] != [wt.java_partition(k, partitions)]}
    assert not mismatches
    assert len({wt.java_partition(k, partitions) for k in keys}) == partitions

    # librdkafka's default ('consistent_random', CRC32) is NOT Java-compatible: this is
    # why walship's producer sets partitioner=murmur2_random.
    default_placed = _produce(kafka.bootstrap, topic, [(k, b"y", None) for k in keys])
    assert any(default_placed[k] != [wt.java_partition(k, partitions)] for k in keys if k)


def test_broker_restart_keeps_port_and_data(kafka, unique):
    # An external broker (WALSHIP_KAFKA_BOOTSTRAP) is not ours to restart: use a private one.
    broker = wt.KafkaBroker() if kafka.external else kafka
    try:
        topic = unique
        _produce(broker.bootstrap, topic, [(b"k", b"before restart", None)])  # auto-created
        before = broker.bootstrap
        broker.kill()  # a crash
        broker.start()
        assert broker.bootstrap == before
        broker.restart()  # a graceful stop and start
        assert broker.bootstrap == before
        msgs = wt.consume_all(broker.bootstrap, topic, expected_count=1, timeout=60)
        assert msgs[0].value == b"before restart"
        assert broker.topics()[topic] == 1  # num.partitions=1 for auto-created topics
    finally:
        if broker is not kafka:
            broker.cleanup()


def test_consume_all_to_end_without_expected_count(kafka, unique):
    topic = unique
    kafka.create_topic(topic, partitions=2)
    _produce(kafka.bootstrap, topic, [(b"a", b"1", None), (b"b", b"2", None)])
    msgs = wt.consume_all(kafka.bootstrap, topic, timeout=30)
    assert sorted(m.value for m in msgs) == [b"1", b"2"]


def test_pg_cluster_helper():
    with wt.PgCluster("smoke", shared_preload_libraries="") as pg:
        settings = dict(pg.execute(
            "select name, setting from pg_settings where name in "
            "('wal_level', 'max_replication_slots', 'logical_decoding_work_mem', 'TimeZone',"
            " 'output_plugin_libraries', 'listen_addresses')"))
        assert settings["wal_level"] == "logical"
        assert settings["max_replication_slots"] == "20"
        assert settings["logical_decoding_work_mem"] == "64"  # kB
        assert settings["TimeZone"] == "UTC"
        assert settings["listen_addresses"] == "127.0.0.1"
        if wt.server_has_setting("output_plugin_libraries"):
            assert pg.has_output_plugin_libraries
            assert "walship" in [s.strip() for s in settings["output_plugin_libraries"].split(",")]
        else:
            assert "output_plugin_libraries" not in settings

        pg.execute("create table t (id int primary key, v text)")
        pg.execute("select pg_create_logical_replication_slot('smoke', 'test_decoding')")
        pg.execute("insert into t values (1, 'a')")
        pg.restart("immediate")  # a crash; the slot and the change survive
        rows = [r[0] for r in pg.execute(
            "select data from pg_logical_slot_get_changes('smoke', null, null)")]
        assert any("INSERT: id[integer]:1 v[text]:'a'" in r for r in rows), rows
        assert pg.pid is not None
        base = pg.base_dir
    assert not base.exists()


def test_event_class_from_descriptor_set(event_class):
    ev = event_class()
    assert ev.DESCRIPTOR.full_name == "walship.v1.ChangeEvent"
    fields = {f.name: f.number for f in ev.DESCRIPTOR.fields}
    assert fields["op"] == 1 and fields["source"] == 2 and fields["after"] == 5
    ev.op = ev.DESCRIPTOR.fields_by_name["op"].enum_type.values_by_name["INSERT"].number
    ev.source.commit_lsn = 0x16B3748
    col = ev.after.columns.add(name="id", type_oid=23, type_name="integer")
    col.value.int64_value = 42
    null_col = ev.after.columns.add(name="v", type_oid=25, type_name="text")
    null_col.value.is_null = True
    back = wt.decode_event(ev.SerializeToString(), event_class)
    d = wt.event_to_dict(back)
    assert d["op"] == "INSERT"
    assert d["source"]["commit_lsn"] == 0x16B3748
    assert d["after"]["columns"][0]["value"] == {"int64_value": 42}
    assert d["after"]["columns"][1]["value"] == {"is_null": True}
