"""The Spark pipeline (pipelines/spark): PostgreSQL → walship → Kafka → Spark Structured
Streaming (foreachBatch: decode, fold per key in version order, one MERGE per table) →
a Delta Lake table and an Iceberg table per PostgreSQL table, in both formats.

After the stream's snapshot and after each of two workload rounds, the query consumes
what Kafka holds from its checkpoint (an ``availableNow`` run: incremental), and every
row and every column of both copies must equal PostgreSQL's: numerics exact, floats as
doubles (NaN, infinities, -0), timestamps to the microsecond, bytea, jsonb, uuid, arrays,
NULLs, unchanged TOAST values (under REPLICA IDENTITY DEFAULT, also through chains of key
changes), deletes (tombstones) and truncates; protobuf's run reads in small micro-batches
(maxOffsetsPerTrigger). pyspark must be installed (tests/requirements.txt) and
Maven must reach Maven Central once for the jars: otherwise the test fails, it never skips.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import pytest

PIPELINE_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "spark"
sys.path.insert(0, str(PIPELINE_DIR))
sys.path.insert(0, str(PIPELINE_DIR.parent / "common"))

import walship_spark as wsp  # noqa: E402
import workload  # noqa: E402

PG_OPTIONS = {"name": "pipe_spark"}
MAX_OFFSETS = 120
SESSION: dict = {}

_spec = importlib.util.spec_from_file_location("walship_spark_run", PIPELINE_DIR / "run.py")
pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline)


@pytest.fixture(scope="module")
def spark_dir():
    with tempfile.TemporaryDirectory(prefix="walship-spark-") as d:
        yield d


@pytest.fixture(scope="module")
def spark(spark_dir):
    t0 = time.monotonic()
    s = wsp.spark_session(spark_dir)   # raises (the test errors) without pyspark or the jars
    SESSION["seconds"] = time.monotonic() - t0
    yield s
    s.stop()


# protobuf's run reads in small micro-batches (maxOffsetsPerTrigger): many batches per
# drain, the partitions at different positions at each cut, key changes' deletes and
# creates in different batches, against the real Delta and Iceberg MERGEs
SMALL_BATCH = {"protobuf": MAX_OFFSETS}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_spark_copies_are_exact(pg, kafka, spark, spark_dir, fmt, figures):
    t0, cpu0 = time.monotonic(), wsp.jvm_cpu_seconds()
    cap = SMALL_BATCH.get(fmt)
    pl = pipeline.Pipeline(pg, kafka, spark, spark_dir, fmt, **({"max_offsets": cap} if cap else {}))
    pl.setup()
    try:
        report = []
        for r in range(0, 3):          # 0: the snapshot; 1, 2: workload rounds
            if r:
                workload.round_(pg, pl.schema, r)
            waited = pl.sync()
            sizes = pl.job.drained          # numInputRows of this drain's micro-batches
            assert sum(sizes) > 0, sizes
            if cap:
                assert max(sizes) <= cap and len(sizes) >= 2, sizes
            cmp = pl.compare()
            what = "snapshot" if r == 0 else f"round {r}"
            for sink, (rows, values, diffs) in cmp.items():
                report.append(f"{what} {sink}: {rows} rows, {values} values, {len(diffs)} differences")
                assert not diffs, f"{fmt}, {report[-1]}:\n" + "\n".join(diffs[:40])
                assert rows > 0
            report[-1] += f" (consumed in {waited:.1f} s, {len(sizes)} micro-batches of {sizes[:12]})"
        # the rounds exercised what they are meant to (else the comparison proves little)
        st = pl.job.stats
        assert st[("items", "r")] >= 300 and st[("items", "c")] >= 200 and st[("items", "d")] >= 40, st
        assert st[("items", "u", "note")] > 50 and st[("items", "c", "note")] > 0, \
            f"too few unchanged TOAST values: {st}"
        assert st[("items", "u", "blob")] > 50 and st[("items", "c", "blob")] > 0, st
        assert st[("kv", "t")] >= 2, st
        # consumed incrementally: each run read only what was new
        assert pl.job.batches >= 3, pl.job.batches
        timing = pl.job.timing()
        figures(f"spark pipeline [{fmt}]: " + "; ".join(report) +
                f"; {pl.job.changes} changes in {pl.job.batches} micro-batches ({timing}); "
                f"{time.monotonic() - t0:.1f} s, Spark's JVM {wsp.jvm_cpu_seconds() - cpu0:.0f} CPU s "
                f"(the SparkSession took {SESSION.get('seconds', 0):.1f} s)")
    finally:
        pl.close()


# ---- the fold alone (no Spark): the result must not depend on how partitions interleave
# or where micro-batches are cut --------------------------------------------------------------

def _fold_columns():
    mk = lambda name, typname, typlen, key=False: wsp.Column(  # noqa: E731
        name=name, pg_type=typname, typname=typname, typmod=-1, typlen=typlen, not_null=key, elem="", is_key=key)
    return [mk("id", "int8", 8, True), mk("v", "int4", 4), mk("note", "text", -1)]


def _merge_py(target: dict, sink_state: dict, changes, columns) -> None:
    """What TableSink.apply, merge_sql and TableSink.commit do, on a dict: key → (version,
    values, deleted): a delete keeps the row (its values as of the delete) as a tombstone."""
    f = wsp.fold(changes, columns, sink_state["truncated"], sink_state["pending"])
    stored = {k: {"note": target[k][1]["note"]} for k in f.refs if k in target}
    for v, vals in f.moves.items():
        sink_state["pending"].setdefault(v, {c: (x if kind == "v" else stored.get(x, {}).get(c))
                                             for c, (kind, x) in vals.items()})
    if f.truncate is not None and f.truncate > sink_state["truncated"]:
        for k in [k for k, (ver, _, _) in target.items() if ver < f.truncate]:
            del target[k]
        sink_state["truncated"] = f.truncate
    for r in f.rows:
        k, ver = (r["id"],), (r["_commit_lsn"], r["_change_lsn"])
        note = r["note"]
        if isinstance(note, tuple):
            note = stored.get(note[1], {}).get("note")
        if k in target and not target[k][0] < ver:
            continue
        if r["_op"] == "d":
            target[k] = (ver, target[k][1] if k in target else {"v": None, "note": None}, True)
        elif r["note__toast"]:
            target[k] = (ver, {"v": r["v"], "note": target[k][1]["note"] if k in target else None}, False)
        else:
            target[k] = (ver, {"v": r["v"], "note": note}, False)
    for v in f.used:                      # TableSink.commit: after the MERGE
        sink_state["pending"].pop(v, None)


def test_fold_independent_of_batches_and_interleaving():
    import itertools
    import random

    C = wsp.Change
    cols = _fold_columns()

    def up(op, k, v, note, ver, old=None, toast=False):
        ver += 2      # after the truncate
        return C(op, (k,), {"id": k, "v": v, "note": note}, {"note"} if toast else set(), (ver, ver), old)

    def dl(k, ver, kc=False):
        ver += 2
        return C("d", (k,), {}, set(), (ver, ver), key_change=kc)

    # a truncate at version 2 (in partition 0) and a row from before it (in partition 1):
    # wherever the batches are cut, the row must stay truncated
    trunc = C("t", (), {}, set(), (2, 2))
    before = C("r", (8,), {"id": 8, "v": 8, "note": "gone"}, set(), (1, 1))

    # partition 0 holds keys 1 and 3, partition 1 keys 2 and 4 (a key change crosses them)
    p0 = [trunc, up("r", 1, 0, "a", 1), up("r", 3, 0, "c", 1), up("u", 1, 1, None, 3, toast=True),
          dl(1, 5, True), up("u", 3, 5, None, 6, toast=True), up("c", 1, 9, "new", 7),
          dl(3, 8, True), up("c", 3, 1, None, 10, old=(4,), toast=True)]
    p1 = [before, up("c", 2, 2, None, 5, old=(1,), toast=True), up("u", 2, 3, None, 6, toast=True),
          (c4 := up("c", 4, 4, None, 8, old=(3,), toast=True)), dl(4, 10, True), dl(2, 11),
          up("c", 2, 7, "again", 12)]
    want = {(1,): {"v": 9, "note": "new"}, (2,): {"v": 7, "note": "again"}, (3,): {"v": 1, "note": "c"}}
    rng = random.Random(7)
    checked = cut = redelivered = 0
    for trial in range(600):
        # an interleaving that keeps each partition's order, cut into micro-batches
        seq, a, b = [], list(p0), list(p1)
        if trial % 2:
            # a redelivery across batches: the partition's events up to j, then again from
            # i < j on (walship resending from its confirmed position after a restart), so
            # an old create can land in a later batch than its delete
            part = a if trial % 4 == 1 else b
            j = rng.randrange(1, len(part) + 1)
            i = rng.randrange(0, j)
            part[:] = part[:j] + part[i:]
            redelivered += 1
        elif trial % 4 == 2:
            # one message again, later in its partition (a producer's retry): the create of
            # key 4, which ends deleted (a tombstone must keep it from coming back)
            b.insert(rng.randrange(b.index(c4) + 1, len(b) + 1), c4)
            redelivered += 1
        while a or b:
            seq.append((a if a and (not b or rng.random() < 0.5) else b).pop(0))
        cuts = sorted(rng.sample(range(1, len(seq)), rng.randrange(0, 5))) if trial % 4 else []
        batch_of = {}                       # (op, key, version) → its first delivery's batch
        for i, e in enumerate(seq):
            batch_of.setdefault((e.op, e.key, e.version), sum(i >= c for c in cuts))
        first = lambda e: batch_of[(e.op, e.key, e.version)]  # noqa: E731
        # What the fold cannot know: the create of a key change in a micro-batch before
        # the one that brings the old key's earlier changes (its partition read behind the
        # other's by a whole batch; see README, limits). Every other case must be exact.
        if any(e.old_key and first(o) > first(e)
               for e in seq for o in seq if o.key == e.old_key and o.version < e.version):
            continue
        checked += 1
        cut += bool(cuts)
        target, st = {}, {"truncated": (0, 0), "pending": {}}
        for lo, hi in itertools.pairwise([0, *cuts, len(seq)]):
            _merge_py(target, st, seq[lo:hi] + (seq[lo:hi][:1] if trial % 3 == 0 else []), cols)  # + a redelivery
        got = {k: vals for k, (_, vals, deleted) in target.items() if not deleted}
        assert got == want, (trial, cuts, got)
    assert checked > 200 and cut > 100 and redelivered > 100, (checked, cut, redelivered)


def _descriptor_with_new_members(path: Path, out: Path) -> None:
    """The installed descriptor set, with Value's members of the coming schema added when
    missing (timestamptz_us = 13, array = 14 of ArrayValue {repeated Value elements}): the
    decoder must read both forms."""
    from google.protobuf import descriptor_pb2 as d

    fds = d.FileDescriptorSet()
    fds.ParseFromString(path.read_bytes())
    f = next(f for f in fds.file if any(m.name == "ChangeEvent" for m in f.message_type))
    value = next(m for m in f.message_type if m.name == "Value")
    names = {x.name for x in value.field}
    pkg = "." + f.package if f.package else ""
    if "array" not in names:
        av = f.message_type.add(name="ArrayValue")
        av.field.add(name="elements", number=1, label=d.FieldDescriptorProto.LABEL_REPEATED,
                     type=d.FieldDescriptorProto.TYPE_MESSAGE, type_name=f"{pkg}.Value")
        value.field.add(name="array", number=14, label=d.FieldDescriptorProto.LABEL_OPTIONAL,
                        type=d.FieldDescriptorProto.TYPE_MESSAGE, type_name=f"{pkg}.ArrayValue", oneof_index=0)
    if "timestamptz_us" not in names:
        value.field.add(name="timestamptz_us", number=13, label=d.FieldDescriptorProto.LABEL_OPTIONAL,
                        type=d.FieldDescriptorProto.TYPE_INT64, oneof_index=0)
    out.write_bytes(fds.SerializeToString())


def test_protobuf_decoder_reads_both_schema_forms(tmp_path):
    import datetime as dt
    import walship_testlib as wt

    new = tmp_path / "new.desc"
    _descriptor_with_new_members(wt.find_descriptor_set(), new)
    mk = lambda name, typname, typlen, elem="", key=False: wsp.Column(  # noqa: E731
        name=name, pg_type=typname, typname=typname, typmod=-1, typlen=typlen, not_null=key, elem=elem, is_key=key)
    cols = [mk("id", "int8", 8, key=True), mk("at", "timestamptz", 8), mk("nums", "_int4", -1, "int4"),
            mk("tags", "_text", -1, "text"), mk("inf", "timestamptz", 8)]
    at = dt.datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    us = (at - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
    for form in ("current", "new"):
        dec = wsp.ProtobufDecoder(cols, new if form == "new" else None)
        ev = dec.cls()
        ev.op = 1
        ev.source.commit_lsn, ev.source.change_lsn = 2**40 + 7, 2**40 + 5
        ev.key.add(name="id").value.int64_value = 42
        row = {c.name: ev.after.columns.add(name=c.name).value for c in cols}
        row["id"].int64_value = 42
        if form == "new":
            row["at"].timestamptz_us = us
            for x in (1, None, -3):
                e = row["nums"].array.elements.add()
                if x is None:
                    e.is_null = True
                else:
                    e.int64_value = x
            row["tags"].array.elements.add().string_value = 'a,"b'
            row["inf"].timestamptz_us = 2**63 - 1      # infinity
        else:
            row["at"].timestamp_us = us
            row["nums"].string_value = "{1,NULL,-3}"
            row["tags"].string_value = '{"a,\\"b"}'
            row["inf"].timestamp_us = 2**63 - 1
        ch = dec.decode(ev.SerializeToString(), {})
        assert ch.version == (2**40 + 7, 2**40 + 5), form
        assert ch.values == {"id": 42, "at": at, "nums": [1, None, -3], "tags": ['a,"b'], "inf": None}, form


def test_json_decoder_out_of_range_and_multidimensional():
    """Dates and timestamps outside years 1-9999 are NULL in the JSON form as in protobuf
    (never an exception that would stick the query on the message); a multi-dimensional
    array (walship's JSON sends its PostgreSQL text) fails naming its column."""
    import datetime as dt
    import json

    mk = lambda name, typname, typlen, elem="", key=False: wsp.Column(  # noqa: E731
        name=name, pg_type=typname, typname=typname, typmod=-1, typlen=typlen, not_null=key, elem=elem, is_key=key)
    cols = [mk("id", "int8", 8, key=True), mk("at", "timestamptz", 8), mk("d", "date", 4)]
    dec = wsp.JsonDecoder(cols)

    def ev(at, d=0):
        return json.dumps({"op": "c", "source": {"commit_lsn": 9, "lsn": 8},
                           "after": {"id": 1, "at": at, "d": d}}).encode()

    ok = dec.decode(ev("2030-05-06T07:08:09.123456Z"), {})
    assert ok.values["at"] == dt.datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    for at in ("infinity", "-infinity", "10000-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
               "2020-01-01T00:00:00Z BC"):
        assert dec.decode(ev(at), {}).values["at"] is None, at
    assert dec.decode(ev(None, 2**40), {}).values["d"] is None
    with pytest.raises(ValueError, match="column at"):
        dec.decode(ev("not a time"), {})
    arr = wsp.JsonDecoder([cols[0], mk("m", "_int4", -1, "int4")])
    body = json.dumps({"op": "c", "source": {"commit_lsn": 9, "lsn": 8},
                       "after": {"id": 1, "m": "{{1,2},{3,4}}"}}).encode()
    with pytest.raises(ValueError, match="column m"):
        arr.decode(body, {})
    assert wsp._text_scalar(cols[1], "timestamptz", "infinity") is None
    assert wsp._text_scalar(cols[2], "date", "5874897-12-31") is None
