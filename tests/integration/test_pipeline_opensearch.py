"""The OpenSearch pipeline (pipelines/opensearch): PostgreSQL → walship → Kafka → the sink
(walship_opensearch.Sink, a Kafka consumer) → one OpenSearch 2.19.6 node, in both formats.

After the stream's snapshot and after each of two workload rounds, every document of the
indexes must equal PostgreSQL's row, column by column: numerics exact, doubles (NaN,
infinities, -0), timestamps to the microsecond, bytea, jsonb, uuid, arrays, NULLs,
unchanged TOAST values (also through chains of key changes), deletes and truncates; every
``_id`` must be its row's key. Two sinks consume each stream: one in Kafka's order, one
that drains everything and applies one partition after the other in reverse order (key
changes then arrive before the delete of the old key, rows of other partitions before a
truncate): both must be exact, which shows the result does not depend on how partitions
interleave. OpenSearch must start (jars from Maven Central, cached): if it cannot, the
test fails, it never skips.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

PIPELINE_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "opensearch"
sys.path.insert(0, str(PIPELINE_DIR))
sys.path.insert(0, str(PIPELINE_DIR.parent / "common"))

import walship_opensearch as wos  # noqa: E402
import workload  # noqa: E402

PG_OPTIONS = {"name": "pipe_opensearch"}
ORDERS = ("kafka", "adversarial")

_spec = importlib.util.spec_from_file_location("walship_opensearch_run", PIPELINE_DIR / "run.py")
pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline)


@pytest.fixture(scope="module")
def opensearch():
    with wos.OpenSearchServer() as node:   # raises (the test errors) when it cannot start
        yield node


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_opensearch_copy_is_exact(pg, kafka, opensearch, fmt, figures):
    t0 = time.monotonic()
    pl = pipeline.Pipeline(pg, kafka, opensearch.client, fmt, orders=ORDERS)
    try:
        pl.setup()
        report = []
        for r in range(0, 3):          # 0: the snapshot; 1, 2: workload rounds
            if r:
                workload.round_(pg, pl.schema, r)
            waited = pl.sync()
            for order in ORDERS:
                rows, values, diffs = pl.compare(order)
                what = "snapshot" if r == 0 else f"round {r}"
                assert not diffs, f"{fmt}/{order}, {what}: {len(diffs)} differences:\n" + "\n".join(diffs[:40])
                assert rows > 0
            report.append(f"{what}: {rows} rows, {values} values x {len(ORDERS)} sinks EQUAL "
                          f"(consumed in {waited:.1f} s)")
        # at-least-once: everything delivered again, from the beginning, changes nothing
        replayed = pl.replay("kafka")
        rows, values, diffs = pl.compare("kafka")
        assert not diffs, f"{fmt}, after a replay of every topic: {len(diffs)} differences:\n" + "\n".join(diffs[:40])
        assert replayed["stale"] > 0, replayed
        report.append(f"replay of every topic from offset 0 into the same indexes: EQUAL "
                      f"({replayed['stale']} stale writes refused by version, "
                      f"{replayed.get('below_truncate', 0)} changes below a truncate dropped)")
        # the rounds exercised what they are meant to (else the comparison proves little)
        for order in ORDERS:
            st = pl.sinks[order].stats
            assert st["r"] >= 350 and st["c"] >= 200 and st["d"] >= 40 and st["tombstone"] >= 40, (order, st)
            assert st["unchanged_toast_updates"] > 50 and st["unchanged_toast_values"] > 100, (order, st)
            assert st["key_change_creates"] >= 30 and st["key_change_carries"] > 10, (order, st)
            assert st["t"] >= 2 and st["truncated_docs"] > 0, (order, st)
            assert st["unresolved_toast"] == 0, (order, st)
        # the adversarial order did put key-change creates before their deletes
        assert pl.sinks["adversarial"].stats["waits"] > 0, pl.sinks["adversarial"].stats
        st = pl.sinks["kafka"].stats
        figures(f"opensearch pipeline [{fmt}]: " + "; ".join(report) +
                f"; sink: {st['r']} snapshot reads, {st['c']} creates, {st['u']} updates "
                f"({st['unchanged_toast_values']} unchanged TOAST values kept), {st['d']} deletes, "
                f"{st['key_change_creates']} key-change creates ({st['key_change_carries']} carried TOAST values), "
                f"{st['t']} truncates; {time.monotonic() - t0:.1f} s")
    finally:
        pl.close()


def _column(name, typname, typlen=-1, elem="", is_key=False):
    return wos.Column(name=name, pg_type=typname, typname=typname, typmod=-1, typlen=typlen,
                      not_null=is_key, elem=elem, is_key=is_key)


def _event_classes(coming: bool):
    """ChangeEvent and Row from the installed descriptor set; ``coming``: edited into the
    form of the schema change under way (Value.timestamptz_us = 13, Value.array = 14 with
    ArrayValue.elements, 64-bit Source.xid/commit_lsn/change_lsn)."""
    import walship_testlib as wt
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.descriptor_pb2 import FieldDescriptorProto as F

    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(wt.find_descriptor_set().read_bytes())
    if coming:
        f = next(x for x in fds.file if x.package == "walship.v1")
        msgs = {m.name: m for m in f.message_type}
        if "ArrayValue" not in msgs:           # not there yet: add it as the change will
            av = f.message_type.add(name="ArrayValue")
            av.field.add(name="elements", number=1, label=F.LABEL_REPEATED, type=F.TYPE_MESSAGE,
                         type_name=".walship.v1.Value")
            v = msgs["Value"]
            v.field.add(name="timestamptz_us", number=13, label=F.LABEL_OPTIONAL, type=F.TYPE_INT64, oneof_index=0)
            v.field.add(name="array", number=14, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
                        type_name=".walship.v1.ArrayValue", oneof_index=0)
            for fld in msgs["Source"].field:
                if fld.name in ("xid", "commit_lsn", "change_lsn"):
                    fld.type = F.TYPE_INT64
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    try:
        from google.protobuf.message_factory import GetMessageClass
    except ImportError:  # protobuf < 4.22
        from google.protobuf import message_factory
        GetMessageClass = message_factory.MessageFactory(pool).GetPrototype  # noqa: N806
    return (GetMessageClass(pool.FindMessageTypeByName("walship.v1.ChangeEvent")),
            GetMessageClass(pool.FindMessageTypeByName("walship.v1.Row")))


@pytest.mark.parametrize("coming", [False, True], ids=["current-schema", "coming-schema"])
def test_protobuf_decoding_of_both_schema_forms(coming):
    """The sink's protobuf decoding reads Value members by name, so the schema change under
    way (timestamptz_us, ArrayValue) decodes to the same documents as today's form."""
    Event, Row = _event_classes(coming)
    cols = [_column("id", "int8", 8, is_key=True), _column("created", "timestamp", 8),
            _column("updated", "timestamptz", 8), _column("tags", "_text", elem="text"),
            _column("nums", "_int4", elem="int4"), _column("note", "text")]
    dec = wos.ProtobufDecoder(cols, Event, Row)
    ev = Event(op=Event.DESCRIPTOR.fields_by_name["op"].enum_type.values_by_name["INSERT"].number)
    ev.source.commit_lsn, ev.source.change_lsn = 0x1_0000_0040, 0x1_0000_0010
    k = ev.key.add(name="id")
    k.value.int64_value = 5
    a = ev.after.columns
    a.add(name="id").value.int64_value = 5
    a.add(name="created").value.timestamp_us = -2_000_000_000_123_456
    if coming:
        a.add(name="updated").value.timestamptz_us = 1_904_000_000_654_321
        tags = a.add(name="tags").value.array.elements
        for s in ("a", None, 'quote"d', "NULL", ""):
            e = tags.add()
            if s is None:
                e.is_null = True
            else:
                e.string_value = s
        nums = a.add(name="nums").value.array.elements
        for n in (1, None, -3):
            e = nums.add()
            if n is None:
                e.is_null = True
            else:
                e.int64_value = n
    else:
        a.add(name="updated").value.timestamp_us = 1_904_000_000_654_321
        a.add(name="tags").value.string_value = '{a,NULL,"quote\\"d","NULL",""}'
        a.add(name="nums").value.string_value = "{1,NULL,-3}"
    a.add(name="note").value.unchanged_toast = True
    ch = dec.decode(ev.SerializeToString(), None, {})
    assert ch.op == "c" and ch.key == (5,) and ch.version == (0x1_0000_0040, 0x1_0000_0010)
    assert ch.after["created"] == "1906-08-16T20:26:39.876544"
    assert ch.after["updated"] == "2030-05-03T00:53:20.654321Z"
    assert ch.after["tags"] == ["a", None, 'quote"d', "NULL", ""]
    assert ch.after["nums"] == [1, None, -3]
    assert ch.after["note"] is wos.UNCHANGED
