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
interleave. A key change delivered twice keeps its carried TOAST values; the decoders
read ±infinity, years outside 1-9999 and multi-dimensional arrays exactly. OpenSearch must start (jars from Maven Central, cached): if it cannot, the
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


def _event_classes():
    """ChangeEvent and Row from the installed descriptor set."""
    import walship_testlib as wt

    return wt.load_event_class(), wt.load_event_class(message="walship.v1.Row")


def test_protobuf_decoding():
    """Value members by name: timestamps, ±infinity and years outside 1-9999 (exact text, the
    sink does not stop), arrays from ArrayValue (NULL elements; two dimensions as nested
    lists), unchanged TOAST values."""
    Event, Row = _event_classes()
    cols = [_column("id", "int8", 8, is_key=True), _column("created", "timestamp", 8),
            _column("updated", "timestamptz", 8), _column("day", "date", 4), _column("far", "timestamp", 8),
            _column("tags", "_text", elem="text"), _column("nums", "_int4", elem="int4"),
            _column("grid", "_int4", elem="int4"), _column("note", "text")]
    dec = wos.ProtobufDecoder(cols, Event, Row)
    ev = Event(op=Event.DESCRIPTOR.fields_by_name["op"].enum_type.values_by_name["INSERT"].number)
    ev.source.commit_lsn, ev.source.change_lsn = 0x1_0000_0040, 0x1_0000_0010
    k = ev.key.add(name="id")
    k.value.int64_value = 5
    a = ev.after.columns
    a.add(name="id").value.int64_value = 5
    a.add(name="created").value.timestamp_us = -2_000_000_000_123_456
    a.add(name="updated").value.timestamptz_us = 2**63 - 1            # infinity
    a.add(name="day").value.date_days = -2**31                         # -infinity
    a.add(name="far").value.timestamp_us = 253_402_300_800_000_001     # 10000-01-01 00:00:00.000001
    tags = a.add(name="tags").value.array
    for s in ("a", None, 'quote"d', "NULL", ""):
        e = tags.elements.add()
        if s is None:
            e.is_null = True
        else:
            e.string_value = s
    tags.dims.append(5)
    nums = a.add(name="nums").value.array
    for n in (1, None, -3):
        e = nums.elements.add()
        if n is None:
            e.is_null = True
        else:
            e.int64_value = n
    grid = a.add(name="grid").value.array      # '{{1,2,3},{4,NULL,6}}'
    for n in (1, 2, 3, 4, None, 6):
        e = grid.elements.add()
        if n is None:
            e.is_null = True
        else:
            e.int64_value = n
    grid.dims.extend([2, 3])
    a.add(name="note").value.unchanged_toast = True
    ch = dec.decode(ev.SerializeToString(), None, {})
    assert ch.op == "c" and ch.key == (5,) and ch.version == (0x1_0000_0040, 0x1_0000_0010)
    assert ch.after["created"] == "1906-08-16T20:26:39.876544"
    assert ch.after["updated"] == "infinity"
    assert ch.after["day"] == "-infinity"
    assert ch.after["far"] == "+10000-01-01T00:00:00.000001"
    assert ch.after["tags"] == ["a", None, 'quote"d', "NULL", ""]
    assert ch.after["nums"] == [1, None, -3]
    assert ch.after["grid"] == [[1, 2, 3], [4, None, 6]]
    assert ch.after["note"] is wos.UNCHANGED
    assert wos.render(cols[7], ch.after["grid"]) == "[[1, 2, 3], [4, null, 6]]"


def test_json_decoding_of_infinities():
    """walship's JSON forms of ±infinity and of years outside 1-9999 decode to the same
    text as protobuf's (the sink does not stop on them); a multi-dimensional array (JSON
    sends its text) is refused with an error naming the column."""
    cols = [_column("id", "int8", 8, is_key=True), _column("ts", "timestamp", 8),
            _column("tz", "timestamptz", 8), _column("day", "date", 4), _column("grid", "_int4", elem="int4")]
    dec = wos.JsonDecoder(cols)
    with pytest.raises(ValueError, match="column grid .*multi-dimensional"):
        dec.row({"grid": "{{1,2},{3,4}}"})       # walship's JSON sends it as text: refused, not mangled
    row = dec.row({"id": 1, "ts": 9223372036825200000, "tz": "-infinity", "day": 2147483647})
    assert row == {"id": 1, "ts": "infinity", "tz": "-infinity", "day": "infinity"}
    row = dec.row({"id": 1, "ts": -2_000_000_000_123_456, "tz": "+10000-01-01T00:00:00.5Z", "day": -719529})
    assert row == {"id": 1, "ts": "1906-08-16T20:26:39.876544", "tz": "+10000-01-01T00:00:00.500000Z",
                   "day": "-0001-12-31"}
    assert dec.row({"tz": "2030-05-03T02:53:20.654321+02:00"}) == {"tz": "2030-05-03T00:53:20.654321Z"}


@pytest.mark.timeout(300)
def test_key_change_redelivered_keeps_toast_values(opensearch):
    """At-least-once: one key change (the delete of the old key, the create of the new one
    whose TOAST-able values are unchanged) delivered again in a later bulk, by the same
    sink and by a new one (a restart after a crash before the offsets were committed), in
    both orders: the new key's document keeps the carried values."""
    client = opensearch.client
    cols = [_column("id", "int8", 8, is_key=True), _column("v", "int4", 4), _column("note", "text"),
            _column("blob", "bytea")]
    index = f"redeliver-{int(time.time() * 1000)}"
    note, blob = "n" * 3000, "YmxvYg=="

    def new_sink():
        t = wos.TableSink("topic.redeliver", index, cols, None)
        s = wos.Sink("127.0.0.1:9", client, [t], "unused")   # never started: fed directly
        s.create_indexes(exist_ok=True)
        return s, t

    def feed(sink, t, *changes):
        for ch in changes:
            assert sink._apply(t, ch), ch
        sink.flush()

    def doc(_id):
        r = client.request("GET", f"/{index}/_doc/{_id}", ok=(404,))
        return r["_source"] if r.get("found") else None

    ins = wos.Change("c", (1,), {"id": 1, "v": 1, "note": note, "blob": blob}, (1000, 900))
    dele = wos.Change("d", (1,), None, (2000, 1900), "old")
    cre = wos.Change("c", (2,), {"id": 2, "v": 2, "note": wos.UNCHANGED, "blob": wos.UNCHANGED}, (2000, 1900), "new")
    s1, t1 = new_sink()
    try:
        feed(s1, t1, ins)
        feed(s1, t1, dele, cre)
        want = {"id": 2, "v": 2, "note": note, "blob": blob}
        assert doc("1") is None and {k: doc("2")[k] for k in want} == want
        feed(s1, t1, dele, cre)                     # the same sink: carries in memory
        feed(s1, t1, cre)
        assert doc("1") is None and {k: doc("2")[k] for k in want} == want, s1.stats
        assert s1.stats["unresolved_toast"] == 0, s1.stats
    finally:
        s1.stop()
    for order in ((dele, cre), (cre, dele)):        # a new sink: carries from the state index
        s2, t2 = new_sink()
        try:
            feed(s2, t2, *order)
            assert doc("1") is None and {k: doc("2")[k] for k in want} == want, (order[0].op, s2.stats)
            assert s2.stats["unresolved_toast"] == 0 and s2.stats["already_applied"] == 1, s2.stats
        finally:
            s2.stop()
    carry = client.request("GET", f"/{wos.STATE_INDEX}/_doc/{wos.urlq(wos.Sink._carry_id(index, (2000, 1900)))}")
    assert carry["_source"]["values"] == {"note": note, "blob": blob}
