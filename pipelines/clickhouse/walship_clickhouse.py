"""walship → Kafka → ClickHouse (embedded: chDB), in SQL that ClickHouse runs itself.

For each PostgreSQL table this generates, from the table's catalog entry, four objects
in a ClickHouse database:

- ``<t>__queue``: a Kafka engine table over the table's topic, in the stream's format
  (``JSONAsString`` over Debezium's payload, or ``ProtobufSingle`` with walship's
  ``change_event.proto``, message ``ChangeEvent``);
- ``<t>__changes``: every change, append-only (``ReplacingMergeTree`` only to fold the
  exact duplicates an at-least-once redelivery can bring): the key, each column typed,
  a flag per column that can hold an unchanged TOAST value, the operation
  (c, u, d, r, t) and the version ``(_commit_lsn, _change_lsn)``;
- ``<t>__mv``: the materialized view that decodes each Kafka message into a change row;
- ``<t>``: the current state, a view: per key the newest version, deletes and truncates
  honoured, unchanged TOAST values taken from the newest version that carried them,
  through key changes (recursively: a key changed several times without touching the
  value still finds it).

See README.md next to this file for the recipe and its limits.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "common"))

import workload  # noqa: E402  (pipelines/common: the workload, the columns, the comparison)

TOAST_PLACEHOLDER = "__debezium_unavailable_value"
TOAST_PLACEHOLDER_B64 = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="

# The members of walship.v1.Value the Kafka table reads (protobuf).
PB_VALUE_MEMBERS = {
    "is_null": "UInt8", "unchanged_toast": "UInt8", "int64_value": "Int64",
    "double_value": "Float64", "bool_value": "UInt8", "string_value": "String",
    "bytes_value": "String", "timestamp_us": "Int64", "date_days": "Int32",
    "uuid": "String", "numeric": "String", "json": "String", "timestamptz_us": "Int64",
}
PB_BYTES_MEMBERS = ("bytes_value", "uuid")
# The members of an array's elements (Value.array.elements): ProtobufSingle reads the
# repeated elements of each column's ArrayValue as one array per column, so each member is
# an Array(Array(..)) aligned with the row's column names.
PB_ELEMENT_MEMBERS = {m: ty for m, ty in PB_VALUE_MEMBERS.items() if m != "unchanged_toast"}
OPERATIONS = ("OPERATION_UNSPECIFIED", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "MESSAGE",
              "BEGIN", "COMMIT", "READ")

def q(name: str) -> str:
    """A ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def lit(s: str) -> str:
    """A ClickHouse string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclasses.dataclass
class Column(workload.PgColumn):
    """A PostgreSQL column (pipelines/common/workload.py) and its ClickHouse types."""

    # ---- ClickHouse types -------------------------------------------------------

    def scalar_type(self, typname: str) -> str:
        mod = self.typmod
        if typname in ("int2",):
            return "Int16"
        if typname in ("int4",):
            return "Int32"
        if typname in ("int8",):
            return "Int64"
        if typname == "oid":
            return "UInt32"
        if typname == "float4":
            return "Float32"
        if typname == "float8":
            return "Float64"
        if typname == "bool":
            return "Bool"
        if typname == "numeric":
            if mod >= 4:
                p, s = ((mod - 4) >> 16) & 0xFFFF, (mod - 4) & 0xFFFF
                if 0 < p <= 76 and 0 <= s <= p:
                    return f"Decimal({p}, {s})"
            return "String"   # unconstrained numeric: its exact decimal text
        if typname == "uuid":
            return "UUID"
        if typname == "date":
            return "Date32"
        if typname in ("timestamp", "timestamptz"):
            return "DateTime64(6, 'UTC')"
        return "String"       # text, varchar, bpchar, name, bytea, json, jsonb, xml, enums, ...

    @property
    def ch_type(self) -> str:
        """The column's type in __changes and in the view (not Nullable)."""
        if self.is_array:
            return f"Array(Nullable({self.scalar_type(self.elem)}))"
        return self.scalar_type(self.typname)

    @property
    def ch_stored(self) -> str:
        """The type of the column in the changes table (arrays cannot be Nullable: they get
        a separate null flag)."""
        if self.is_array or self.is_key:
            return self.ch_type
        return f"Nullable({self.ch_type})"

    # ---- JSON (Debezium payload) ----------------------------------------------------

    def json_value(self, obj: str) -> str:
        """Expression: the value of this column in the JSON object text ``obj``."""
        n = lit(self.name)
        t = self.typname
        if self.is_array:
            return self._json_array(obj)
        if t in ("int2", "int4", "int8", "oid"):
            return f"CAST(JSONExtract({obj}, {n}, 'Nullable(Int64)') AS Nullable({self.ch_type}))"
        if t in ("float4", "float8"):
            # NaN and the infinities arrive as strings ("NaN", "Infinity", "-Infinity")
            return (f"if(JSONType({obj}, {n}) = 'String', CAST(toFloat64(JSONExtractString({obj}, {n})) "
                    f"AS Nullable({self.ch_type})), CAST(JSONExtract({obj}, {n}, 'Nullable(Float64)') AS "
                    f"Nullable({self.ch_type})))")
        if t == "bool":
            return f"JSONExtract({obj}, {n}, 'Nullable(Bool)')"
        s = f"JSONExtract({obj}, {n}, 'Nullable(String)')"
        if t == "numeric" and self.ch_type != "String":
            # not evaluated on the placeholder (an unchanged TOAST value), which is no number
            return f"CAST(nullIf({s}, {lit(TOAST_PLACEHOLDER)}) AS Nullable({self.ch_type}))"
        if t == "bytea":
            return f"if(isNull({s}), NULL, base64Decode(assumeNotNull({s})))"
        if t == "uuid":
            return f"toUUIDOrNull({s})"
        if t == "date":
            return (f"if(JSONType({obj}, {n}) = 'Null', NULL, "
                    f"addDays(toDate32('1970-01-01'), JSONExtractInt({obj}, {n})))")
        if t == "timestamp":
            fn = "fromUnixTimestamp64Milli" if 0 <= self.typmod <= 3 else "fromUnixTimestamp64Micro"
            return (f"if(JSONType({obj}, {n}) = 'Null', NULL, CAST({fn}(JSONExtractInt({obj}, {n}), 'UTC') "
                    f"AS Nullable(DateTime64(6, 'UTC'))))")
        if t == "timestamptz":
            return f"if(isNull({s}), NULL, parseDateTime64BestEffort(assumeNotNull({s}), 6, 'UTC'))"
        return s

    def _json_array(self, obj: str) -> str:
        n = lit(self.name)
        e = self.elem
        et = self.scalar_type(e)
        if e in ("int2", "int4", "int8", "oid", "bool", "float4", "float8", "text", "varchar",
                 "bpchar", "name", "json", "jsonb", "xml") or (e == "numeric" and et == "String"):
            if e in ("float4", "float8"):
                raw = f"JSONExtract({obj}, {n}, 'Array(Nullable(String))')"
                return f"arrayMap(x -> CAST(toFloat64OrNull(x) AS Nullable({et})), {raw})"
            return f"JSONExtract({obj}, {n}, 'Array(Nullable({et}))')"
        raw = f"JSONExtract({obj}, {n}, 'Array(Nullable(String))')"
        if e == "bytea":
            return f"arrayMap(x -> if(isNull(x), NULL, base64Decode(assumeNotNull(x))), {raw})"
        return f"arrayMap(x -> CAST(x AS Nullable({et})), {raw})"

    def json_null(self, obj: str) -> str:
        return f"JSONType({obj}, {lit(self.name)}) = 'Null'"

    def json_toast(self, obj: str) -> str:
        """Expression: the column holds Debezium's unchanged-TOAST placeholder."""
        n = lit(self.name)
        if self.is_array:
            raw = f"JSONExtractRaw({obj}, {n})"
            ph = [TOAST_PLACEHOLDER]
            num = "[" + ",".join(str(b) for b in TOAST_PLACEHOLDER.encode()) + "]"
            return f"({raw} IN ({lit(repr_json(ph))}, {lit(num)}))"
        ph = TOAST_PLACEHOLDER_B64 if self.typname == "bytea" else TOAST_PLACEHOLDER
        return f"(JSONType({obj}, {n}) = 'String' AND JSONExtractString({obj}, {n}) = {lit(ph)})"

    # ---- protobuf (walship.v1.ChangeEvent) ----------------------------------------------

    def pb_idx(self, row: str) -> str:
        names = "`key.name`" if row == "key" else f"`{row}.columns.name`"
        return f"indexOf({names}, {lit(self.name)})"

    @staticmethod
    def pb_member(row: str, member: str, idx: str) -> str:
        col = f"`key.value.{member}`" if row == "key" else f"`{row}.columns.value.{member}`"
        return f"arrayElement({col}, {idx})"

    def pb_value(self, row: str) -> str:
        i = self.pb_idx(row)
        m = lambda member: self.pb_member(row, member, i)  # noqa: E731
        t = self.typname
        if self.is_array:
            return self._pb_array(row, i)
        if t in ("int2", "int4", "int8", "oid"):
            v = f"CAST({m('int64_value')} AS {self.ch_type})"
        elif t in ("float4", "float8"):
            v = f"CAST({m('double_value')} AS {self.ch_type})"
        elif t == "bool":
            v = f"CAST({m('bool_value')} AS Bool)"
        elif t == "numeric":
            # '' (NULL, unchanged, absent) is no number: NULL before the cast
            v = m("numeric") if self.ch_type == "String" else \
                f"CAST(nullIf({m('numeric')}, '') AS Nullable({self.ch_type}))"
        elif t == "bytea":
            v = m("bytes_value")
        elif t == "uuid":
            v = f"toUUID(UUIDNumToString(toFixedString({m('uuid')}, 16)))"
        elif t in ("json", "jsonb"):
            v = m("json")
        elif t == "date":
            v = f"addDays(toDate32('1970-01-01'), {m('date_days')})"
        elif t == "timestamp":
            v = f"fromUnixTimestamp64Micro({m('timestamp_us')}, 'UTC')"
        elif t == "timestamptz":
            v = f"fromUnixTimestamp64Micro({m('timestamptz_us')}, 'UTC')"
        else:
            v = m("string_value")
        if self.is_key:
            return f"ifNull({v}, defaultValueOfTypeName({lit(self.ch_type)}))"
        return f"if({self.pb_null(row)} OR {self.pb_toast(row)}, NULL, {v})"

    def _pb_array(self, row: str, idx: str) -> str:
        """Expression: the column's ArrayValue elements as an Array(Nullable(elem)): each
        element's member for the element type, NULL where the element is is_null. (The
        pipeline maps one-dimensional arrays: a multi-dimensional one fails the insert, loudly;
        lower bounds are not kept.)"""
        e = self.elem
        et = self.scalar_type(e)
        base = "key.value.array.elements" if row == "key" else f"{row}.columns.value.array.elements"
        member = lambda name: f"arrayElement(`{base}.{name}`, {idx})"  # noqa: E731
        if e in ("int2", "int4", "int8", "oid"):
            vals, conv = member("int64_value"), "x"
        elif e in ("float4", "float8"):
            vals, conv = member("double_value"), "x"
        elif e == "bool":
            vals, conv = member("bool_value"), "x = 1"
        elif e == "numeric":
            vals, conv = member("numeric"), "x" if et == "String" else "nullIf(x, '')"
        elif e == "bytea":
            vals, conv = member("bytes_value"), "x"
        elif e == "uuid":
            vals, conv = member("uuid"), "toUUID(UUIDNumToString(toFixedString(x, 16)))"
        elif e in ("json", "jsonb"):
            vals, conv = member("json"), "x"
        elif e == "date":
            vals, conv = member("date_days"), "addDays(toDate32('1970-01-01'), x)"
        elif e == "timestamp":
            vals, conv = member("timestamp_us"), "fromUnixTimestamp64Micro(x, 'UTC')"
        elif e == "timestamptz":
            vals, conv = member("timestamptz_us"), "fromUnixTimestamp64Micro(x, 'UTC')"
        else:
            vals, conv = member("string_value"), "x"
        dims = "key.value.array.dims" if row == "key" else f"{row}.columns.value.array.dims"
        many = (f"throwIf(length(arrayElement(`{dims}`, {idx})) > 1, "
                f"{lit(f'column {self.name}: a multi-dimensional array (the pipeline maps one-dimensional arrays)')})")
        return (f"if({many}, [], arrayMap((x, n) -> if(n = 1, CAST(NULL AS Nullable({et})), CAST({conv} AS "
                f"Nullable({et}))), {vals}, {member('is_null')}))")

    def pb_null(self, row: str) -> str:
        i = self.pb_idx(row)
        return f"({i} = 0 OR {self.pb_member(row, 'is_null', i)} = 1)"

    def pb_toast(self, row: str) -> str:
        i = self.pb_idx(row)
        return f"({i} > 0 AND {self.pb_member(row, 'unchanged_toast', i)} = 1)"


def repr_json(v) -> str:
    import json
    return json.dumps(v, separators=(",", ":"))


def table_columns(pg_conn, qualified: str) -> list[Column]:
    return workload.table_columns(pg_conn, qualified, Column)


@dataclasses.dataclass
class TableSpec:
    schema: str
    table: str
    topic: str
    columns: list[Column]

    @property
    def keys(self) -> list[Column]:
        return [c for c in self.columns if c.is_key]

    @property
    def data(self) -> list[Column]:
        return [c for c in self.columns if not c.is_key]

    @property
    def toasts(self) -> list[Column]:
        return [c for c in self.data if c.toastable]


def _kafka_settings(bootstrap: str, topic: str, group: str, fmt: str, schema_file: str | None) -> str:
    s = [f"kafka_broker_list = {lit(bootstrap)}", f"kafka_topic_list = {lit(topic)}",
         f"kafka_group_name = {lit(group)}", "kafka_num_consumers = 1",
         "kafka_flush_interval_ms = 500", "kafka_poll_timeout_ms = 200",
         "kafka_max_block_size = 65536"]
    if fmt == "json":
        s.append("kafka_format = 'JSONAsString'")
    else:
        s += ["kafka_format = 'ProtobufSingle'", f"kafka_schema = {lit(schema_file + ':ChangeEvent')}"]
    return ",\n  ".join(s)


def message_columns(fmt: str) -> list[tuple[str, str]]:
    """The columns a message is read into (name, ClickHouse type), as the Kafka engine
    reads it: JSON one string; protobuf the ChangeEvent's fields by path, each
    ``Value`` member of a row's columns as an array (ProtobufSingle's flattening)."""
    if fmt == "json":
        return [("message", "String")]
    cols = [("op", f"Enum8({', '.join(f'{lit(o)} = {i}' for i, o in enumerate(OPERATIONS))})"),
            # int64 in walship.v1 (never negative)
            ("source.commit_lsn", "Int64"), ("source.change_lsn", "Int64"),
            ("source.table", "String"), ("key.name", "Array(String)")]
    for row in ("key", "before.columns", "after.columns"):
        if row != "key":
            cols.append((f"{row}.name", "Array(String)"))
        cols += [(f"{row}.value.{m}", f"Array({ty})") for m, ty in PB_VALUE_MEMBERS.items()]
        cols += [(f"{row}.value.array.elements.{m}", f"Array(Array({ty}))") for m, ty in PB_ELEMENT_MEMBERS.items()]
        cols.append((f"{row}.value.array.dims", "Array(Array(Int32))"))
    return cols


def ddl(spec: TableSpec, db: str, fmt: str, bootstrap: str, group: str,
        proto_file: str | None = None, engine: bool = True) -> list[str]:
    """The statements that create the pipeline of one table in ClickHouse database ``db``:
    with ``engine``, the Kafka engine table and the materialized view that feed the
    changes table; without, only the changes table and the current-state view (a
    consumer outside ClickHouse inserts with change_insert_sql)."""
    t = spec.table
    queue, changes, mv, view = (f"{q(db)}.{q(t + s)}" for s in ("__queue", "__changes", "__mv", ""))
    stmts = [f"CREATE DATABASE IF NOT EXISTS {q(db)}"]

    # -- the Kafka engine table
    if engine:
        cols = ",\n  ".join(f"{q(n)} {ty}" for n, ty in message_columns(fmt))
        stmts.append(f"CREATE TABLE {queue} (\n  {cols}\n) ENGINE = Kafka SETTINGS\n  "
                     f"{_kafka_settings(bootstrap, spec.topic, group, fmt, proto_file)}")

    # -- the changes table
    parts = [f"{q(c.name)} {c.ch_stored}" for c in spec.keys]
    for c in spec.data:
        parts.append(f"{q(c.name)} {c.ch_stored}")
        if c.is_array:
            parts.append(f"{q(c.name + '__null')} UInt8")
        if c.toastable:
            parts.append(f"{q(c.name + '__toast')} UInt8")
    parts += ["_op Enum8('c' = 1, 'u' = 2, 'd' = 3, 'r' = 4, 't' = 5)", "_commit_lsn UInt64",
              "_change_lsn UInt64", "_partition UInt64", "_offset UInt64",
              "_ingested DateTime64(6) DEFAULT now64(6)"]
    order = ", ".join([q(c.name) for c in spec.keys] + ["_commit_lsn", "_change_lsn", "_op"])
    stmts.append(f"CREATE TABLE {changes} (\n  " + ",\n  ".join(parts) +
                 f"\n) ENGINE = ReplacingMergeTree ORDER BY ({order})")

    # -- the materialized view: one change row per Kafka message
    if engine:
        stmts.append(f"CREATE MATERIALIZED VIEW {mv} TO {changes} AS\n{change_select(spec, fmt, queue)}")
    stmts.append(current_view_sql(spec, db))
    return stmts


def change_select(spec: TableSpec, fmt: str, source: str) -> str:
    """The SELECT that turns messages (``source``: a table with message_columns(fmt) and
    the Kafka engine's virtual columns ``_partition`` and ``_offset``) into rows of the
    changes table; tombstones and non-row events are left out."""
    sel = []
    if fmt == "json":
        op = "JSONExtractString(message, 'op')"
        pre = f"WITH {op} AS op_"
        # Values are read by path from the message itself: JSONExtractRaw(message, 'after')
        # would print the object again, and print -0.0 as -0, which then reads as an integer.
        a_ = "message, 'after'"
        row_ = "message, if(op_ = 'd', 'before', 'after')"
        for c in spec.keys:
            sel.append(f"ifNull({c.json_value(row_)}, defaultValueOfTypeName({lit(c.ch_type)})) AS {q(c.name)}")
        for c in spec.data:
            toast = c.json_toast(a_) if c.toastable else "0"
            if c.is_array:
                sel.append(f"if(op_ = 'd' OR {toast} OR {c.json_null(a_)}, [], {c.json_value(a_)}) AS {q(c.name)}")
                sel.append(f"if(op_ != 'd' AND {c.json_null(a_)}, 1, 0) AS {q(c.name + '__null')}")
            else:
                sel.append(f"if(op_ = 'd' OR {toast}, NULL, {c.json_value(a_)}) AS {q(c.name)}")
            if c.toastable:
                sel.append(f"if(op_ != 'd' AND {toast}, 1, 0) AS {q(c.name + '__toast')}")
        sel += ["CAST(op_ AS Enum8('c' = 1, 'u' = 2, 'd' = 3, 'r' = 4, 't' = 5)) AS _op",
                # the commit LSN: source.commit_lsn (the stream's option source_commit_lsn)
                "if(throwIf(NOT JSONHas(message, 'source', 'commit_lsn'), 'a walship event without "
                "source.commit_lsn: create the stream with source_commit_lsn: true'), 0, "
                "JSONExtract(message, 'source', 'commit_lsn', 'UInt64')) AS _commit_lsn",
                "JSONExtract(message, 'source', 'lsn', 'UInt64') AS _change_lsn"]
        where = "WHERE message != '' AND op_ IN ('c', 'u', 'd', 'r', 't')"
    else:
        pre = ("WITH multiIf(op = 'INSERT', 'c', op = 'UPDATE', 'u', op = 'DELETE', 'd', op = 'READ', 'r', "
               "op = 'TRUNCATE', 't', '') AS op_")
        for c in spec.keys:
            sel.append(f"if(op_ = 't', defaultValueOfTypeName({lit(c.ch_type)}), {c.pb_value('key')}) AS {q(c.name)}")
        for c in spec.data:
            toast = c.pb_toast("after") if c.toastable else "0"
            if c.is_array:
                sel.append(f"if(op_ = 'd' OR {c.pb_null('after')} OR {toast}, [], {c.pb_value('after')}) AS {q(c.name)}")
                sel.append(f"if(op_ != 'd' AND {c.pb_null('after')}, 1, 0) AS {q(c.name + '__null')}")
            else:
                sel.append(f"if(op_ = 'd', NULL, {c.pb_value('after')}) AS {q(c.name)}")
            if c.toastable:
                sel.append(f"if(op_ != 'd' AND {toast}, 1, 0) AS {q(c.name + '__toast')}")
        sel += ["CAST(op_ AS Enum8('c' = 1, 'u' = 2, 'd' = 3, 'r' = 4, 't' = 5)) AS _op",
                "CAST(`source.commit_lsn` AS UInt64) AS _commit_lsn",
                "CAST(`source.change_lsn` AS UInt64) AS _change_lsn"]
        where = "WHERE op_ != ''"
    sel += ["_partition AS _partition", "_offset AS _offset"]
    return f"{pre}\nSELECT\n  " + ",\n  ".join(sel) + f"\nFROM {source}\n{where}"


def current_view_sql(spec: TableSpec, db: str) -> str:
    """The current state of the table, as a view over its changes.

    Per key, the events since the last TRUNCATE, in version order; the row exists when the
    newest is not a delete. Its columns are the newest event's, except that a column the
    newest event left as an unchanged TOAST value takes the newest value its current
    incarnation (the events since the key's last delete) carried. An incarnation that
    began with a key change (the create of a delete + create pair that share a version:
    one UPDATE) and never carried the value takes it from the old key's incarnation as it
    was just before the key change, recursively."""
    changes = f"{q(db)}.{q(spec.table + '__changes')}"
    keycols = ", ".join(q(c.name) for c in spec.keys)
    vals = []   # the payload tuple of an event (everything but the key)
    for c in spec.data:
        vals.append(q(c.name))
        if c.is_array:
            vals.append(q(c.name + "__null"))
    flags = [q(c.name + "__toast") for c in spec.toasts] or ["0"]
    # positions inside the payload tuple
    pos, i = {}, 1
    for c in spec.data:
        pos[c.name] = i
        i += 1
        if c.is_array:
            pos[c.name + "__null"] = i
            i += 1
    toasts = spec.toasts
    ev = lambda x, n: f"tupleElement({x}, {n})"  # noqa: E731  1 version, 2 op, 3 values, 4 flags
    val = lambda x, name: f"tupleElement({ev(x, 3)}, {pos[name]})"  # noqa: E731
    flag = lambda x, j: f"tupleElement({ev(x, 4)}, {j + 1})"  # noqa: E731

    def found_cols(inc: str) -> list[str]:
        out = []
        for j, c in enumerate(toasts):
            out.append(f"arrayExists(x -> {flag('x', j)} = 0, {inc}) AS f{j}")
            last = f"arrayLast(x -> {flag('x', j)} = 0, {inc})"
            out.append(f"{val(last, c.name)} AS v{j}")
        return out

    trunc = (f"(SELECT max((_commit_lsn, _change_lsn)) FROM {changes} WHERE _op = 't')")
    hist = (f"SELECT tuple({keycols}) AS key, arraySort(e -> tupleElement(e, 1), groupArray(("
            f"(_commit_lsn, _change_lsn), _op, tuple({', '.join(vals)}), tuple({', '.join(flags)})))) AS evs "
            f"FROM {changes} WHERE _op != 't' AND (_commit_lsn, _change_lsn) > {trunc} GROUP BY {keycols}")
    out_cols = [f"tupleElement(cur.key, {k + 1}) AS {q(c.name)}" for k, c in enumerate(spec.keys)]
    toast_idx = {c.name: j for j, c in enumerate(toasts)}
    for c in spec.data:
        if c.name in toast_idx:
            j = toast_idx[c.name]
            out_cols.append(f"if(cur.f{j}, cur.v{j}, r.v{j}) AS {q(c.name)}")
        else:
            out_cols.append(f"{val('cur.last', c.name)} AS {q(c.name)}")
        if c.is_array and not c.not_null:
            out_cols.append(f"{val('cur.last', c.name + '__null')} AS {q(c.name + '__null')}")
    if not toasts:
        return (f"CREATE VIEW {q(db)}.{q(spec.table)} AS\nWITH hist AS ({hist})\nSELECT " +
                ", ".join(out_cols) +
                f" FROM (SELECT key, evs[-1] AS last FROM hist WHERE {ev('last', 2)} != 'd') AS cur")
    all_found = " AND ".join(f"f{j}" for j in range(len(toasts)))
    # key changes: the create and the delete of one UPDATE share the version
    kc = (f"SELECT c.key AS new_key, d.key AS old_key, c.v AS v FROM "
          f"(SELECT tuple({keycols}) AS key, (_commit_lsn, _change_lsn) AS v FROM {changes} "
          f"WHERE _op = 'c' AND ({' OR '.join(f'{f} = 1' for f in flags)})) AS c INNER JOIN "
          f"(SELECT tuple({keycols}) AS key, (_commit_lsn, _change_lsn) AS v FROM {changes} WHERE _op = 'd') AS d "
          f"ON c.v = d.v")
    # per key change: what the old key's incarnation carried just before it
    edge = (f"SELECT new_key, v, old_key, inc, tupleElement(inc[1], 1) AS start_v, " +
            ", ".join(found_cols("inc")) +
            f" FROM (SELECT kc.new_key AS new_key, kc.v AS v, kc.old_key AS old_key, "
            f"arrayFilter(x -> tupleElement(x, 1) < kc.v, hist.evs) AS bef, "
            f"arraySlice(bef, arrayLastIndex(x -> tupleElement(x, 2) = 'd', bef) + 1) AS inc "
            f"FROM kc INNER JOIN hist ON hist.key = kc.old_key)")
    res_base = ("SELECT new_key, v, " + ", ".join(f"v{j}" for j in range(len(toasts))) +
                f" FROM edge WHERE {all_found}")
    res_step = ("SELECT e.new_key AS new_key, e.v AS v, " +
                ", ".join(f"if(e.f{j}, e.v{j}, res.v{j}) AS v{j}" for j in range(len(toasts))) +
                f" FROM edge AS e INNER JOIN res ON res.new_key = e.old_key AND res.v = e.start_v "
                f"WHERE NOT ({' AND '.join(f'e.f{j}' for j in range(len(toasts)))})")
    cur = (f"SELECT key, last, tupleElement(inc[1], 1) AS start_v, " + ", ".join(found_cols("inc")) +
           f" FROM (SELECT key, evs[-1] AS last, arraySlice(evs, arrayLastIndex(x -> tupleElement(x, 2) = 'd', evs) + 1) "
           f"AS inc FROM hist WHERE {ev('evs[-1]', 2)} != 'd')")
    return (f"CREATE VIEW {q(db)}.{q(spec.table)} AS\nWITH RECURSIVE\n"
            f"hist AS ({hist}),\nkc AS ({kc}),\nedge AS ({edge}),\n"
            f"res AS ({res_base}\n  UNION ALL\n  {res_step}),\ncur AS ({cur})\n"
            "SELECT " + ", ".join(out_cols) +
            " FROM cur LEFT JOIN res AS r ON r.new_key = cur.key AND r.v = cur.start_v")


class ClickHousePipeline:
    """The ClickHouse side of the pipeline in one chDB session (one per process)."""

    def __init__(self, path: str | Path):
        try:
            from chdb import session
        except ImportError as e:  # the test must fail, not skip
            raise RuntimeError("chdb is not installed: pip install chdb==4.4.0") from e
        self.path = Path(path)
        self.session = session.Session(str(self.path))
        self.lock = threading.RLock()   # one query at a time (the Python consumer has a thread)
        self.specs: dict[tuple[str, str], TableSpec] = {}

    def query(self, sql: str, fmt: str = "TabSeparated") -> str:
        with self.lock:
            # (chDB's Python() table function finds its table in the calling frames)
            return str(self.session.query(sql, fmt))

    def execute(self, stmt: str) -> None:
        """Runs a DDL statement. chDB 4.4 answers the creation of a Kafka engine table with
        "Shutdown was called" (LOGICAL_ERROR) although the table is created and consumes:
        that answer is accepted when the table then exists, any other error is raised."""
        try:
            self.query(stmt)
        except Exception as e:
            m = re.match(r"CREATE TABLE (`(?:[^`]|\\`)*`)\.(`(?:[^`]|\\`)*`) \(.*ENGINE = Kafka", stmt, re.S)
            if not (m and "Shutdown was called" in str(e)):
                raise
            db, table = (x[1:-1].replace("\\`", "`") for x in m.groups())
            n = self.query(f"SELECT count() FROM system.tables WHERE database = {lit(db)} "
                           f"AND name = {lit(table)} AND engine = 'Kafka'").strip()
            if n != "1":
                raise RuntimeError(f"chDB could not create Kafka table {db}.{table}: {e}") from e

    def rows(self, sql: str) -> list[dict]:
        import json
        with self.lock:
            out = self.session.query(sql, "JSONCompact")
        data = json.loads(out.bytes().decode("utf-8", "replace") or "{}")
        names = [m["name"] for m in data.get("meta", [])]
        return [dict(zip(names, r)) for r in data.get("data", [])]

    def add_table(self, pg_conn, db: str, schema: str, table: str, topic: str, fmt: str,
                  bootstrap: str, group: str, proto_file: str | None = None, engine: bool = True) -> TableSpec:
        spec = TableSpec(schema, table, topic, table_columns(pg_conn, f'"{schema}"."{table}"'))
        for stmt in ddl(spec, db, fmt, bootstrap, group, proto_file, engine):
            self.execute(stmt)
        self.specs[(db, table)] = spec
        return spec

    def consumer_errors(self, db: str) -> str:
        """The Kafka engine's latest exceptions (system.kafka_consumers), for a failure's message."""
        try:
            return "\n" + self.query(
                "SELECT table, arrayStringConcat(arraySlice(exceptions.text, -3), ' | ') FROM system.kafka_consumers "
                f"WHERE database = {lit(db)} AND length(exceptions.text) > 0")
        except Exception as e:  # noqa: BLE001
            return f"\n(system.kafka_consumers: {e})"

    def close(self) -> None:
        """Drops the Kafka engine tables first (their consumers stop with them: a closed
        chDB session does not stop them), then closes the session."""
        for db, table in self.specs:
            try:
                self.query(f"DROP TABLE IF EXISTS {q(db)}.{q(table + '__queue')} SYNC")
            except Exception:  # noqa: BLE001
                pass
        try:
            self.session.close()
        except Exception:  # noqa: BLE001
            pass


def wait_consumed(bootstrap: str, group: str, topics: Iterable[str], timeout: float = 120,
                  progress: Callable[[], None] | None = None,
                  diagnose: Callable[[], str] | None = None) -> None:
    """Until ClickHouse's consumer group has committed every partition of ``topics`` up to
    its end offset (ClickHouse commits after the block is written)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout
        md = c.list_topics(timeout=10)
        tps = []
        for t in topics:
            if t not in md.topics:
                raise RuntimeError(f"topic {t} does not exist")
            tps += [TopicPartition(t, p) for p in md.topics[t].partitions]
        ends = {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        while True:
            committed = c.committed(tps, timeout=10)
            behind = [(tp.topic, tp.partition, tp.offset, ends[(tp.topic, tp.partition)])
                      for tp in committed if ends[(tp.topic, tp.partition)] > 0
                      and tp.offset < ends[(tp.topic, tp.partition)]]
            # The Kafka engine skips empty messages (tombstones) and commits only up to the
            # last message it inserted: tombstones at the end of a partition stay behind
            # until a later event comes.
            behind = [b for b in behind if not _only_tombstones(bootstrap, *b)]
            if not behind:
                return
            if time.monotonic() > deadline:
                why = diagnose() if diagnose else ""
                raise TimeoutError(f"ClickHouse did not consume everything: {behind}{why}")
            if progress:
                progress()
            time.sleep(0.2)
    finally:
        c.close()


def _only_tombstones(bootstrap: str, topic: str, partition: int, start: int, end: int) -> bool:
    """Every message of topic/partition in [start, end) has no value (a tombstone)."""
    from confluent_kafka import Consumer, TopicPartition

    if start < 0:
        return False
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "walship-clickhouse-peek",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, partition, start)])
        seen = start
        deadline = time.monotonic() + 10
        while seen < end and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            if m.value() is not None and len(m.value()) > 0:
                return False
            seen = m.offset() + 1
        return seen >= end
    finally:
        c.close()


def proto_file() -> Path:
    """walship's .proto, installed with the module (or from this checkout)."""
    import os
    import subprocess

    try:
        share = subprocess.run([os.environ.get("PG_CONFIG", "pg_config"), "--sharedir"], check=True,
                               capture_output=True, text=True).stdout.strip()
        p = Path(share) / "walship" / "proto" / "walship" / "v1" / "change_event.proto"
        if p.is_file():
            return p
    except (OSError, subprocess.SubprocessError):
        pass
    return HERE.parents[1] / "plugin" / "proto" / "walship" / "v1" / "change_event.proto"


# ---- the comparison with PostgreSQL (pipelines/common/workload.py renders PostgreSQL's side) --

CH_EXPR = {
    "timestamp": "formatDateTime({c}, '%Y-%m-%d %H:%i:%S.%f', 'UTC')",
    "timestamptz": "formatDateTime({c}, '%Y-%m-%d %H:%i:%S.%f', 'UTC')",
    "bytea": "lower(hex({c}))",
    "array": "if({n}, NULL, toJSONString({c}))",
    "float": "toString({c})",
}


def compare(pg, ch: "ClickHousePipeline", db: str, schema: str, spec: TableSpec) -> tuple[int, int, list[str]]:
    """(rows compared, values compared, differences) of one table: ClickHouse's current
    state against PostgreSQL's."""
    sel = []
    for c in spec.columns:
        k, cc = workload.kind(c), q(c.name)
        null = q(c.name + "__null") if c.is_array and not c.not_null else "0"
        sel.append(CH_EXPR.get(k, "toString({c})").format(c=cc, n=null))
    order = ", ".join(q(c.name) for c in spec.keys)
    rows = [tuple(r.values()) for r in ch.rows(
        f"SELECT {', '.join(f'{e} AS c{i}' for i, e in enumerate(sel))} FROM {q(db)}.{q(spec.table)} "
        f"ORDER BY {order}")]
    return workload.compare_rows(spec.table, spec.columns, workload.pg_rows(pg, schema, spec.table, spec.columns),
                                 rows, "ClickHouse")


def side_by_side(pg, ch: "ClickHousePipeline", db: str, schema: str, spec: TableSpec, limit: int = 10) -> str:
    """The first rows of both sides, for people (long values cut)."""
    cols = [c.name for c in spec.columns]
    sel = ", ".join(f"concat('<', toString(length({q(c.name)})), ' bytes>') AS {q(c.name)}"
                    if c.typname == "bytea" else q(c.name) for c in spec.columns)
    keys = ", ".join(q(c.name) for c in spec.keys)
    cr = ch.rows(f"SELECT {sel} FROM {q(db)}.{q(spec.table)} ORDER BY {keys} LIMIT {limit} "
                 "SETTINGS output_format_json_quote_decimals = 1")
    out = workload.pg_side(pg, schema, spec.table, spec.columns, limit)
    out.append(f"-- ClickHouse {db}.{spec.table}")
    out += [" | ".join(workload.cut(r.get(c)) for c in cols) for r in cr]
    return "\n".join(out)


__all__ = ["ClickHousePipeline", "TableSpec", "Column", "ddl", "wait_consumed", "proto_file",
           "table_columns", "compare", "side_by_side", "re"]
