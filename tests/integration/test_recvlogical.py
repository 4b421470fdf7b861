"""pg_recvlogical -P walship end to end: the plugin alone, without shared_preload_libraries.

Creates a slot with pg_recvlogical, streams to a file with varint framing (protobuf) and
as newline-delimited JSON, splits the file back into events, and compares every event
with what was committed, value by value, as PostgreSQL itself computes them.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import uuid

import pytest

# The output plugin needs no preloading: prove it.
PG_OPTIONS = {"shared_preload_libraries": ""}

TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a integer, b text);
CREATE TABLE every_type (
    id      bigint PRIMARY KEY,
    i2      int2, i4 int4, i8 int8,
    num     numeric, f4 float4, f8 float8,
    b       boolean, t text, vc varchar(20), ch char(5),
    by      bytea, u uuid, j json, jb jsonb,
    d       date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
    ia      int[], ta text[], ia2 int[], ua uuid[], tza timestamptz[], na numeric[],
    e       mood, dom posint, comp pair, rng int4range, ip inet,
    big     text
);
ALTER TABLE every_type ALTER COLUMN big SET STORAGE EXTERNAL;
"""

ROWS = """
INSERT INTO every_type VALUES
 (1, 1, 2, 3, 12.345, 1.5, 2.25, true, 'héllo', 'vc', 'ab', '\\x00ff00'::bytea,
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}', '{"b": {"c": null}}',
  '2024-02-29', '12:34:56.789', '12:34:56+05:30', '2024-01-02 03:04:05.678901',
  '2024-01-02 03:04:05.678901+00', '1 year 2 mons 3 days 04:05:06.5',
  '{1,NULL,3}', '{"a b",NULL,"c\\"d"}', '[0:1][-2:-1]={{1,2},{3,NULL}}',
  '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}', '{"2024-01-02 03:04:05.678901+00",infinity}',
  '{1.50,NaN,NULL}', 'happy', 7, '(1,"x y")', '[1,10)', '192.168.0.1/24',
  repeat('x', 1048576)),
 (2, -32768, -2147483648, -9223372036854775808, 'NaN', 'Infinity', '-Infinity', false,
  '', '', '', '\\x'::bytea, '00000000-0000-0000-0000-000000000000', 'null', '[]',
  '0044-03-15 BC', '00:00', '00:00-08', '-infinity', 'infinity', '-1 days',
  '{}', '{NULL}', '{}', '{}', '{-infinity}', '{}', 'sad', 1, '(,)', 'empty', '::1', NULL),
 (3, NULL, NULL, NULL, 'Infinity', 'NaN', 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, 'infinity', NULL, NULL, 'infinity', '-infinity', NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 0, 0, 0, '-Infinity', '-0', '1e308', true, 'x', 'y', 'z', NULL, NULL, NULL, NULL,
  '-infinity', '24:00', NULL, '4713-01-01 00:00 BC', '294246-12-31 23:59:59.999999+00', NULL,
  NULL, NULL, '{{1},{2}}', NULL, NULL, '{Infinity,-Infinity}', NULL, NULL, NULL, NULL, NULL,
  NULL);
UPDATE every_type SET t = 'changed' WHERE id = 1;      -- big is TOAST-ed and untouched
UPDATE every_type SET big = 'small now' WHERE id = 1;
DELETE FROM every_type WHERE id = 2;
TRUNCATE every_type;
"""

# What PostgreSQL says each column should decode to, per protobuf Value member.
EXPECTED_SQL = """
SELECT id, i2, i4, i8, num::text, f4::float8, f8, b, t, vc, ch, by, u::text, j::text, jb::text,
       CASE WHEN d = 'infinity' THEN 2147483647 WHEN d = '-infinity' THEN -2147483648
            ELSE d - date '1970-01-01' END,
       tm::text, ttz::text,
       CASE WHEN ts = 'infinity' THEN 9223372036854775807
            WHEN ts = '-infinity' THEN -9223372036854775808
            ELSE (extract(epoch FROM ts) * 1000000)::bigint END,
       CASE WHEN tstz = 'infinity' THEN 9223372036854775807
            WHEN tstz = '-infinity' THEN -9223372036854775808
            ELSE (extract(epoch FROM tstz) * 1000000)::bigint END,
       iv::text,
       -- arrays: their elements in order (row-major), as ArrayValue lists them
       CASE WHEN ia IS NOT NULL THEN ARRAY(SELECT unnest(ia)) END,
       CASE WHEN ta IS NOT NULL THEN ARRAY(SELECT unnest(ta)) END,
       CASE WHEN ia2 IS NOT NULL THEN ARRAY(SELECT unnest(ia2)) END,
       CASE WHEN ua IS NOT NULL THEN ARRAY(SELECT x::text FROM unnest(ua) x) END,
       CASE WHEN tza IS NOT NULL THEN
            ARRAY(SELECT CASE WHEN x = 'infinity' THEN 9223372036854775807
                              WHEN x = '-infinity' THEN -9223372036854775808
                              ELSE (extract(epoch FROM x) * 1000000)::bigint END
                    FROM unnest(tza) x) END,
       CASE WHEN na IS NOT NULL THEN ARRAY(SELECT x::text FROM unnest(na) x) END,
       e::text, dom::bigint, comp::text, rng::text,
       nullif(format('%s', ip), ''),  -- inet's text() adds the mask; the output function does not
       md5(big), length(big),
       array_dims(ia), array_dims(ta), array_dims(ia2), array_dims(ua), array_dims(tza),
       array_dims(na)
  FROM every_type ORDER BY id
"""

ARRAYS = ["ia", "ta", "ia2", "ua", "tza", "na"]
COLUMNS = ["id", "i2", "i4", "i8", "num", "f4", "f8", "b", "t", "vc", "ch", "by", "u", "j", "jb",
           "d", "tm", "ttz", "ts", "tstz", "iv", *ARRAYS, "e", "dom", "comp", "rng", "ip"]
# Each array's element member (NULL elements are is_null).
ELEMENT = {"ia": "int64_value", "ta": "string_value", "ia2": "int64_value", "ua": "uuid",
           "tza": "timestamptz_us", "na": "numeric"}
MEMBER = {"id": "int64_value", "i2": "int64_value", "i4": "int64_value", "i8": "int64_value",
          "num": "numeric", "f4": "double_value", "f8": "double_value", "b": "bool_value",
          "t": "string_value", "vc": "string_value", "ch": "string_value", "by": "bytes_value",
          "u": "uuid", "j": "json", "jb": "json", "d": "date_days", "tm": "string_value",
          "ttz": "string_value", "ts": "timestamp_us", "tstz": "timestamptz_us",
          "iv": "string_value", **{a: "array" for a in ARRAYS}, "e": "string_value",
          "dom": "int64_value", "comp": "string_value", "rng": "string_value",
          "ip": "string_value"}


def split_varint_frames(data: bytes) -> list[bytes]:
    """pg_recvlogical writes each message and then a newline: varint length, event, '\\n'."""
    events, pos = [], 0
    while pos < len(data):
        length, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        events.append(data[pos:pos + length])
        pos += length
        assert data[pos:pos + 1] == b"\n", f"no newline after the event at {pos}"
        pos += 1
    return events


def run_recvlogical(pg, slot: str, out, options: dict[str, str], endpos: str) -> None:
    args = [pg.bin("pg_recvlogical"), "-h", pg.host, "-p", str(pg.port), "-U", pg.user,
            "-d", "postgres", "-S", slot, "--start", "--no-loop", "-E", endpos, "-f", str(out)]
    for k, v in options.items():
        args += ["-o", f"{k}={v}"]
    subprocess.run(args, check=True, timeout=120, capture_output=True)


def create_slot(pg, slot: str) -> None:
    subprocess.run([pg.bin("pg_recvlogical"), "-h", pg.host, "-p", str(pg.port), "-U", pg.user,
                    "-d", "postgres", "-S", slot, "--create-slot", "-P", "walship"],
                   check=True, timeout=60, capture_output=True)


@pytest.fixture(scope="module")
def committed(pg, tmp_path_factory):
    """Create slots, commit the workload once, and keep what PostgreSQL says about it."""
    pg.execute(TYPES_DDL)
    create_slot(pg, "recv_pb")
    create_slot(pg, "recv_json")
    create_slot(pg, "recv_uuid")
    # Snapshot the expected values row by row, between the statements that change them.
    with pg.connect() as conn:
        stmts = [s for s in ROWS.split(";") if s.strip()]
        conn.execute(stmts[0])
        inserted = conn.execute(EXPECTED_SQL).fetchall()
        conn.execute(stmts[1])
        after_update1 = conn.execute(EXPECTED_SQL + "").fetchall()
        conn.execute(stmts[2])
        after_update2 = conn.execute(EXPECTED_SQL).fetchall()
        for s in stmts[3:]:
            conn.execute(s)
        endpos = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    return {"inserted": inserted, "update1": after_update1[0], "update2": after_update2[0],
            "endpos": endpos}


def value_of(column) -> object:
    which = column.value.WhichOneof("kind")
    if which == "is_null":
        return None
    if which == "unchanged_toast":
        return "<unchanged toast>"
    return getattr(column.value, which)


def shape_of(array_dims: str | None) -> tuple[list[int], list[int]]:
    """array_dims()'s "[0:1][-2:-1]" as ArrayValue's dims and lower_bounds (the latter
    empty when every lower bound is 1); NULL (an empty array): no dims."""
    if array_dims is None:
        return [], []
    bounds = [tuple(int(x) for x in part.split(":")) for part in array_dims[1:-1].split("][")]
    dims = [hi - lo + 1 for lo, hi in bounds]
    lower = [lo for lo, _ in bounds]
    return dims, ([] if all(lo == 1 for lo in lower) else lower)


def check_array(name, array, want_elements, want_dims) -> None:
    dims, lower = shape_of(want_dims)
    assert (list(array.dims), list(array.lower_bounds)) == (dims, lower), name
    assert len(array.elements) == len(want_elements), name
    for i, (element, want) in enumerate(zip(array.elements, want_elements)):
        which = element.WhichOneof("kind")
        if want is None:
            assert which == "is_null", f"{name}[{i}]: expected NULL, got {which}"
            continue
        assert which == ELEMENT[name], f"{name}[{i}]: expected {ELEMENT[name]}, got {which}"
        got = getattr(element, which)
        if which == "uuid":
            got = str(uuid.UUID(bytes=got))
        assert got == want, f"{name}[{i}]: {got!r} != {want!r}"


def check_row(columns, expected_row, *, big_unchanged=False) -> None:
    by_name = {c.name: c for c in columns}
    assert [c.name for c in columns] == COLUMNS + ["big"]
    dims = dict(zip(ARRAYS, expected_row[len(COLUMNS) + 2:]))
    for i, name in enumerate(COLUMNS):
        col, want = by_name[name], expected_row[i]
        which = col.value.WhichOneof("kind")
        if want is None:
            assert which == "is_null", f"{name}: expected NULL, got {which}"
            continue
        assert which == MEMBER[name], f"{name}: expected {MEMBER[name]}, got {which}"
        got = getattr(col.value, which)
        if name in ARRAYS:
            check_array(name, got, want, dims[name])
        elif name in ("f4", "f8"):
            assert (math.isnan(got) and math.isnan(want)) or got == want, f"{name}: {got} != {want}"
        elif name == "u":
            assert str(uuid.UUID(bytes=got)) == want
        elif name == "by":
            assert got == bytes(want)
        elif name == "jb":
            assert json.loads(got) == json.loads(want)
        else:
            assert got == want, f"{name}: {got!r} != {want!r}"
    big = by_name["big"]
    if big_unchanged:
        assert big.value.WhichOneof("kind") == "unchanged_toast", "untouched TOAST value must be flagged"
    elif expected_row[len(COLUMNS) + 1] is None:
        assert big.value.WhichOneof("kind") == "is_null"
    else:
        import hashlib
        text = big.value.string_value
        assert (hashlib.md5(text.encode()).hexdigest(), len(text)) == tuple(
            expected_row[len(COLUMNS):len(COLUMNS) + 2])


def test_protobuf_through_pg_recvlogical(pg, committed, event_class, tmp_path):
    out = tmp_path / "events.bin"
    run_recvlogical(pg, "recv_pb", out, {"format": "protobuf", "framing": "varint",
                                         "include-transaction": "on"}, committed["endpos"])
    events = [event_class.FromString(b) for b in split_varint_frames(out.read_bytes())]
    ops = [event_class.DESCRIPTOR.file.enum_types_by_name["Operation"].values_by_number[e.op].name
           for e in events]
    # DDL transactions produce BEGIN/COMMIT only; keep the transactions with changes.
    row_ops = [op for op in ops if op not in ("BEGIN", "COMMIT")]
    assert row_ops == ["INSERT"] * 4 + ["UPDATE", "UPDATE", "DELETE", "TRUNCATE"]
    assert ops.count("BEGIN") == ops.count("COMMIT")

    rows = [e for e in events if e.op in (1, 2, 3, 4)]
    for ev, want in zip(rows[:4], committed["inserted"]):
        assert ev.source.schema == "public" and ev.source.table == "every_type"
        assert ev.source.database == "postgres"
        assert ev.source.commit_lsn >= ev.source.change_lsn > 0
        assert [c.name for c in ev.key] == ["id"] and ev.key[0].value.int64_value == want[0]
        assert not ev.HasField("before")
        check_row(ev.after.columns, want)
    # UPDATE that leaves the TOAST-ed column alone: flagged, never NULL.
    check_row(rows[4].after.columns, committed["update1"], big_unchanged=True)
    check_row(rows[5].after.columns, committed["update2"])
    # DELETE with REPLICA IDENTITY DEFAULT: before holds the key only.
    assert [c.name for c in rows[6].before.columns] == ["id"]
    assert rows[6].before.columns[0].value.int64_value == 2
    assert rows[6].key[0].value.int64_value == 2
    assert list(rows[7].source.truncated_tables) == ["public.every_type"]
    # COMMIT events count the row events of their transaction.
    commits = [e for e in events if e.op == 7]
    assert sum(c.event_count for c in commits) == 8


def test_json_through_pg_recvlogical(pg, committed, tmp_path):
    out = tmp_path / "events.json"
    # truncate=on: JSON leaves TRUNCATE out by default, as Debezium does
    run_recvlogical(pg, "recv_json", out, {"format": "json", "json-schema": "false",
                                           "interval-handling": "string", "truncate": "on",
                                           "source-commit-lsn": "on"},
                    committed["endpos"])
    events = [json.loads(line) for line in out.read_text().splitlines() if line]
    assert [e["op"] for e in events] == ["c"] * 4 + ["u", "u", "d", "t"]
    # source-commit-lsn: the commit's end LSN, one per transaction (the four inserts are
    # one statement), after every change's own LSN, increasing from one to the next
    commits = [e["source"]["commit_lsn"] for e in events]
    assert len(set(commits[:4])) == 1 and len(set(commits)) == 5
    assert commits == sorted(commits)
    assert all(e["source"]["commit_lsn"] > e["source"]["lsn"] for e in events)
    assert list(events[0]["source"])[-2:] == ["xmin", "commit_lsn"]
    first = events[0]
    assert first["source"]["connector"] == "postgresql"
    assert (first["source"]["db"], first["source"]["schema"], first["source"]["table"]) == \
        ("postgres", "public", "every_type")
    after = first["after"]
    want = committed["inserted"][0]
    assert after["id"] == 1 and after["i2"] == 1 and after["i8"] == 3
    assert after["num"] == "12.345"                       # decimal-handling=string (default)
    assert after["f8"] == 2.25 and after["b"] is True and after["t"] == "héllo"
    assert after["ch"] == "ab   "
    assert base64.b64decode(after["by"]) == b"\x00\xff\x00"
    assert after["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert json.loads(after["jb"]) == {"b": {"c": None}}
    assert after["d"] == want[15]                         # io.debezium.time.Date: days
    assert after["ts"] == want[18]                        # MicroTimestamp
    assert after["tstz"] == "2024-01-02T03:04:05.678901Z"  # ZonedTimestamp, UTC
    assert after["tm"] == 45296789000                     # MicroTime
    assert after["ttz"] == "07:04:56Z"                    # ZonedTime in UTC
    assert after["iv"] == "P1Y2M3DT4H5M6.5S"
    assert after["ia"] == [1, None, 3] and after["ta"] == ["a b", None, 'c"d']
    assert after["e"] == "happy" and after["rng"] == "[1,10)"
    assert len(after["big"]) == 1048576
    second = events[1]["after"]
    assert second["num"] == "NAN" and second["f4"] == "Infinity" and second["f8"] == "-Infinity"
    assert second["by"] == "" and second["ta"] == [None] and second["ia"] == []
    assert events[2]["after"]["f4"] == "NaN"
    # UPDATE leaving the TOAST-ed value alone: Debezium's placeholder.
    assert events[4]["after"]["big"] == "__debezium_unavailable_value"
    assert events[4]["after"]["t"] == "changed"
    assert events[6]["before"] == {"id": 2} or events[6]["before"]["id"] == 2
    assert events[7]["before"] is None and events[7]["after"] is None


def test_uuid_as_text_through_pg_recvlogical(pg, committed, event_class, tmp_path):
    """uuid-as-text: uuid columns and uuid[] elements are their canonical text."""
    out = tmp_path / "events.bin"
    run_recvlogical(pg, "recv_uuid", out, {"framing": "varint", "uuid-as-text": "on"},
                    committed["endpos"])
    events = [event_class.FromString(b) for b in split_varint_frames(out.read_bytes())]
    inserts = [e for e in events if e.op == 1]
    assert len(inserts) == 4
    for ev, want in zip(inserts, committed["inserted"]):
        by_name = {c.name: c.value for c in ev.after.columns}
        u = COLUMNS.index("u")
        if want[u] is None:
            assert by_name["u"].WhichOneof("kind") == "is_null"
        else:
            assert by_name["u"].WhichOneof("kind") == "string_value"
            assert by_name["u"].string_value == want[u]
        ua = COLUMNS.index("ua")
        if want[ua] is not None:
            got = [None if e.WhichOneof("kind") == "is_null" else e.string_value
                   for e in by_name["ua"].array.elements]
            assert got == want[ua]
            assert all(e.WhichOneof("kind") in ("string_value", "is_null")
                       for e in by_name["ua"].array.elements)
