"""walship → Kafka → Spark Structured Streaming → Delta Lake and Iceberg tables.

One streaming query per walship stream reads the stream's topics (``startingOffsets``
earliest, headers included) and, in ``foreachBatch``, per table and micro-batch:

1. decodes each message (Debezium JSON payload or ``walship.v1.ChangeEvent``) into a
   change: operation, key, typed values, the columns that hold an unchanged TOAST value,
   and the version ``(commit LSN, change LSN)``; tombstones and non-row events are left
   out, exact duplicates (an at-least-once redelivery) folded;
2. folds the batch's changes per key in version order (so that the result does not
   depend on how partitions interleave): the key's last change wins, an unchanged TOAST
   value takes the newest value the key's current incarnation carried in the batch, else
   (the incarnation began with a key change) the old key's value at that version, else
   the value stored in the target; a TRUNCATE drops what came before it;
3. applies it to each sink (a Delta table and an Iceberg table) with one ``MERGE``: see
   ``merge_sql`` and README.md next to this file for the recipe.

The target tables' schema is generated from PostgreSQL's catalog
(``pipelines/common/workload.table_columns``); each target row also stores its version
(``_commit_lsn``, ``_change_lsn``), which makes the MERGE idempotent and a TRUNCATE exact
("every row older than the truncate").
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import dataclasses
import datetime as dt
import decimal
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "common"))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))

import workload  # noqa: E402  (pipelines/common: the workload, the columns, the comparison)

POM = HERE / "pom.xml"
TOAST_PLACEHOLDER = "__debezium_unavailable_value"
TOAST_PLACEHOLDER_B64 = base64.b64encode(TOAST_PLACEHOLDER.encode()).decode()
EPOCH = dt.datetime(1970, 1, 1)
EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
EPOCH_DATE = dt.date(1970, 1, 1)
VERSION_COLUMNS = ("_commit_lsn", "_change_lsn")


# ---- jars and the session -------------------------------------------------------------------

def _pom_property(name: str) -> str:
    m = re.search(rf"<{re.escape(name)}>(.*?)</{re.escape(name)}>", POM.read_text())
    if not m:
        raise RuntimeError(f"no <{name}> in {POM}")
    return m.group(1).strip()


def jar_dir() -> Path:
    """Where the jars of pom.xml are cached (one directory per set of versions)."""
    base = Path(os.environ.get("WALSHIP_CACHE_DIR", Path.home() / ".cache" / "walship"))
    v = "-".join(_pom_property(p) for p in ("spark.version", "delta.version", "iceberg.version"))
    return base / f"spark-jars-{v}"


def fetch_jars() -> list[Path]:
    """The jars Spark needs besides pyspark's own, resolved once with Maven (offline
    first, then Maven Central) by the harness's resolver; raises RuntimeError if Maven
    cannot."""
    from walship_testlib.connect import resolve_jars

    d = jar_dir()
    resolve_jars(POM, d, "spark-sql-kafka-0-10_2.13-*.jar",
                 "Spark's Kafka source, Delta Lake and Iceberg", work=d.parent)
    jars = sorted(d.glob("*.jar"))
    for must in ("spark-sql-kafka-0-10", "delta-spark", "iceberg-spark-runtime"):
        if not any(j.name.startswith(must) for j in jars):
            raise RuntimeError(f"no {must} jar in {d}: remove the directory and run again")
    return jars


def jvm_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's Spark JVM so far: a figure that
    does not depend on what else the machine runs."""
    import subprocess

    out = subprocess.run(["pgrep", "-P", str(os.getpid()), "java"], capture_output=True, text=True).stdout
    total = 0.0
    for pid in out.split():
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return total


def spark_session(warehouse: str | Path, app: str = "walship-pipeline", master: str = "local[2]",
                  driver_memory: str = "1g"):
    """A SparkSession with the Kafka source, Delta (``spark_catalog``) and an Iceberg
    Hadoop catalog ``ice`` on local files under ``warehouse``."""
    try:
        import pyspark
        from pyspark.sql import SparkSession
    except ImportError as e:  # the test must fail, not skip
        raise RuntimeError("pyspark is not installed: pip install -r pipelines/spark/requirements.txt") from e
    want = _pom_property("spark.version")
    if pyspark.__version__ != want:
        raise RuntimeError(f"pyspark {pyspark.__version__} installed, the jars are for Spark {want} "
                           "(pipelines/spark/requirements.txt)")
    jars = fetch_jars()
    warehouse = Path(warehouse)
    b = (SparkSession.builder.master(master).appName(app)
         .config("spark.driver.memory", driver_memory)
         .config("spark.jars", ",".join(str(j) for j in jars))
         .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension,"
                 "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
         .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
         .config("spark.sql.catalog.ice", "org.apache.iceberg.spark.SparkCatalog")
         .config("spark.sql.catalog.ice.type", "hadoop")
         .config("spark.sql.catalog.ice.warehouse", str(warehouse / "iceberg"))
         # foreachBatch runs in a cloned session: a cached catalog there would not see
         # the commits of the other session
         .config("spark.sql.catalog.ice.cache-enabled", "false")
         .config("spark.sql.warehouse.dir", str(warehouse / "spark-warehouse"))
         .config("spark.sql.session.timeZone", "UTC")
         # the MERGE source is a local, deterministic relation: no need to materialize it
         .config("spark.databricks.delta.merge.materializeSource", "none")
         .config("spark.sql.shuffle.partitions", "2")
         .config("spark.default.parallelism", "2")
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.streaming.forceDeleteTempCheckpointLocation", "true")
         .config("spark.databricks.delta.snapshotPartitions", "2")
         .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse / 'derby'}"))
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


# ---- columns and their Spark types ----------------------------------------------------------

def _numeric_ps(typmod: int) -> tuple[int, int] | None:
    if typmod < 4:
        return None
    return ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF


@dataclasses.dataclass
class Column(workload.PgColumn):
    """A PostgreSQL column (pipelines/common/workload.py) and its Spark SQL type."""

    def scalar_sql(self, typname: str) -> str:
        if typname == "int2":
            return "SMALLINT"
        if typname == "int4":
            return "INT"
        if typname in ("int8", "oid"):
            return "BIGINT"
        if typname == "float4":
            return "FLOAT"
        if typname == "float8":
            return "DOUBLE"
        if typname == "bool":
            return "BOOLEAN"
        if typname == "numeric":
            ps = _numeric_ps(self.typmod)
            if ps and 0 < ps[0] <= 38 and 0 <= ps[1] <= ps[0]:
                return f"DECIMAL({ps[0]},{ps[1]})"
            return "STRING"   # unconstrained, or wider than Spark's 38 digits: the exact text
        if typname == "bytea":
            return "BINARY"
        if typname == "date":
            return "DATE"
        if typname == "timestamp":
            return "TIMESTAMP_NTZ"
        if typname == "timestamptz":
            return "TIMESTAMP"
        return "STRING"       # text, varchar, char, name, json, jsonb, uuid, xml, enums, ...

    @property
    def sql_type(self) -> str:
        if self.is_array:
            return f"ARRAY<{self.scalar_sql(self.elem)}>"
        return self.scalar_sql(self.typname)

    @property
    def is_decimal(self) -> bool:
        return self.scalar_sql(self.elem or self.typname).startswith("DECIMAL")


def qi(name: str) -> str:
    """A Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def table_columns(pg_conn, qualified: str) -> list[Column]:
    return workload.table_columns(pg_conn, qualified, Column)


# ---- decoding: one Kafka message → one Change ------------------------------------------------

@dataclasses.dataclass
class Change:
    op: str                        # c, u, d, r, t
    key: tuple                     # the key columns' values (the old key for d); () for t
    values: dict                   # column → Python value (c, u, r)
    toast: set                     # columns that hold an unchanged TOAST value
    version: tuple                 # (commit LSN, change LSN)
    old_key: tuple | None = None   # on the create of a key change, from __debezium.oldkey
    key_change: bool = False       # on the delete of a key change (__debezium.newkey)


def parse_lsn(text: str) -> int:
    hi, lo = text.strip().split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def _float(x) -> float:
    if isinstance(x, str):
        return float({"Infinity": "inf", "-Infinity": "-inf", "NaN": "nan"}.get(x, x))
    return float(x)


def _from_epoch(epoch, **delta):
    """epoch + delta; None where Python's (and Spark's) range ends: ±infinity, which the
    protobuf form sends as the integer type's extremes."""
    try:
        return epoch + dt.timedelta(**delta)
    except OverflowError:
        return None


_OUT_OF_RANGE = re.compile(r"^\s*[+-]?infinity\s*$|BC\s*$|^\s*[+-]?\d{5,}|^\s*[+-]?0+-", re.I)


def _iso(col: Column, typname: str, s: str):
    """A date, timestamp or timestamptz from its text (ISO 8601 or PostgreSQL's): None
    (NULL) where Python's range (years 1-9999) ends: ±infinity, BC dates, years past 9999,
    the same as the integer forms (``_from_epoch``). Anything else unparsable raises,
    naming the column."""
    try:
        if typname == "date":
            return dt.date.fromisoformat(s)
        d = dt.datetime.fromisoformat(s)
        return d.astimezone(dt.timezone.utc) if typname == "timestamptz" else d
    except OverflowError:      # within range locally, past it in UTC (9999-12-31 23:00-05)
        return None
    except ValueError:
        if _OUT_OF_RANGE.search(s):
            return None
        raise ValueError(f"column {col.name}: not a {typname}: {s[:60]!r}") from None


def _decimal(s: str) -> decimal.Decimal | None:
    """A numeric(p,s) value for a DECIMAL column: NaN and ±Infinity have none (NULL)."""
    d = decimal.Decimal(s)
    return d if d.is_finite() else None


def _text_scalar(col: Column, typname: str, s: str | None):
    """A value from PostgreSQL's text form (array elements of the protobuf form)."""
    if s is None:
        return None
    if typname in ("int2", "int4", "int8", "oid"):
        return int(s)
    if typname in ("float4", "float8"):
        return _float(s)
    if typname == "bool":
        return s in ("t", "true")
    if typname == "numeric":
        return _decimal(s) if col.is_decimal else s
    if typname == "bytea":
        return bytes.fromhex(s[2:]) if s.startswith("\\x") else s.encode()
    if typname in ("date", "timestamp", "timestamptz"):
        return _iso(col, typname, s)
    return s


def parse_pg_array(text: str) -> list[str | None]:
    """PostgreSQL's text of a one-dimensional array (``{1,NULL,"a,b"}``) as its elements'
    texts (None for NULL)."""
    if not (text.startswith("{") and text.endswith("}")):
        if text.startswith("["):   # explicit bounds: [0:2]={...}
            text = text[text.index("=") + 1:]
        else:
            raise ValueError(f"not an array text: {text[:60]!r}")
    out: list[str | None] = []
    i, n = 1, len(text) - 1
    if n == 1:
        return out
    while i <= n:
        if text[i] == '"':
            i += 1
            buf = []
            while text[i] != '"':
                if text[i] == "\\":
                    i += 1
                buf.append(text[i])
                i += 1
            out.append("".join(buf))
            i += 1
        else:
            j = i
            while j < n and text[j] != ",":
                j += 1
            tok = text[i:j].strip()
            if tok.startswith("{"):
                raise ValueError("multi-dimensional arrays are not supported")
            out.append(None if tok == "NULL" else tok)
            i = j
        i += 1   # the comma (or the closing brace)
    return out


class JsonDecoder:
    """Debezium's payload (``json_schema: false``, ``decimal_handling: "string"``)."""

    def __init__(self, columns: list[Column]):
        self.columns = columns
        self.keys = [c for c in columns if c.is_key]

    def _scalar(self, col: Column, typname: str, v):
        if v is None:
            return None
        if typname in ("int2", "int4", "int8", "oid"):
            return int(v)
        if typname in ("float4", "float8"):
            return _float(v)
        if typname == "bool":
            return bool(v)
        if typname == "numeric":
            s = v if isinstance(v, str) else json.dumps(v)
            return _decimal(s) if col.is_decimal else s
        if typname == "bytea":
            return base64.b64decode(v)
        if typname == "date":
            return _from_epoch(EPOCH_DATE, days=int(v))
        if typname == "timestamp":
            us = int(v) * 1000 if 0 <= col.typmod <= 3 else int(v)
            return _from_epoch(EPOCH, microseconds=us)
        if typname == "timestamptz":
            return _iso(col, typname, v)
        if isinstance(v, (dict, list)):
            return json.dumps(v)
        return v

    def _value(self, col: Column, v):
        if col.is_array:
            if v is None:
                return None
            if not isinstance(v, list):    # walship's JSON sends a multi-dimensional array as its text
                raise ValueError(f"column {col.name}: not a one-dimensional array ({str(v)[:60]!r}); "
                                 "the pipeline maps one-dimensional arrays")
            return [self._scalar(col, col.elem, x) for x in v]
        return self._scalar(col, col.typname, v)

    @staticmethod
    def _is_toast(col: Column, v) -> bool:
        if isinstance(v, str):
            return v in (TOAST_PLACEHOLDER, TOAST_PLACEHOLDER_B64)
        if isinstance(v, list) and col.is_array:
            if len(v) == 1 and v[0] in (TOAST_PLACEHOLDER, TOAST_PLACEHOLDER_B64):
                return True
            return v == list(TOAST_PLACEHOLDER.encode())
        return False

    def key_of(self, row: dict) -> tuple:
        return tuple(self._value(c, row.get(c.name)) for c in self.keys)

    def decode(self, value: bytes, headers: dict[str, bytes]) -> Change | None:
        ev = json.loads(value)
        if "payload" in ev and "op" not in ev:   # json_schema: true also works
            ev = ev["payload"]
        op = ev.get("op")
        if op not in ("c", "u", "d", "r", "t"):
            return None
        src = ev.get("source") or {}
        if src.get("commit_lsn") is not None:     # the opt-in source.commit_lsn
            commit = int(src["commit_lsn"])
        elif "walship.lsn" in headers:
            commit = parse_lsn(headers["walship.lsn"].decode())
        else:
            raise ValueError("a JSON event without source.commit_lsn and without a walship.lsn header")
        version = (commit, int(src.get("lsn") or 0))
        if op == "t":
            return Change("t", (), {}, set(), version)
        if op == "d":
            return Change("d", self.key_of(ev["before"]), {}, set(), version,
                          key_change="__debezium.newkey" in headers)
        after = ev["after"]
        values, toast = {}, set()
        for c in self.columns:
            v = after.get(c.name)
            if not c.is_key and self._is_toast(c, v):
                toast.add(c.name)
                values[c.name] = None
            else:
                values[c.name] = self._value(c, v)
        old = None
        if "__debezium.oldkey" in headers and headers["__debezium.oldkey"]:
            old = self.key_of(json.loads(headers["__debezium.oldkey"]))
        return Change(op, tuple(values[c.name] for c in self.keys), values, toast, version, old)


PB_OPS = {1: "c", 2: "u", 3: "d", 4: "t", 8: "r"}


class ProtobufDecoder:
    """``walship.v1.ChangeEvent``, with the message class built at run time from the
    installed descriptor set. Written against both forms of the schema: with and without
    ``Value.timestamptz_us`` (timestamptz) and ``Value.array`` (``ArrayValue`` with
    ``repeated Value elements``); the integer widths of ``Source`` do not matter to Python."""

    def __init__(self, columns: list[Column], descriptor_set: str | Path | None = None):
        from walship_testlib.events import load_event_class

        self.cls = load_event_class(descriptor_set)
        self.columns = columns
        self.keys = [c for c in columns if c.is_key]

    def _scalar(self, col: Column, typname: str, v):
        kind = v.WhichOneof("kind")
        if kind is None or kind == "is_null":
            return None
        x = getattr(v, kind)
        if kind == "array":
            if len(x.dims) > 1:
                raise ValueError(f"column {col.name}: a {len(x.dims)}-dimensional array (the pipeline "
                                 "maps one-dimensional arrays)")
            return [self._scalar(col, col.elem or typname, e) for e in x.elements]
        if col.is_array and typname == col.typname and kind == "string_value":
            return [_text_scalar(col, col.elem, e) for e in parse_pg_array(x)]
        if kind in ("timestamp_us", "timestamptz_us"):
            return _from_epoch(EPOCH_UTC if typname == "timestamptz" else EPOCH, microseconds=x)
        if kind == "date_days":
            return _from_epoch(EPOCH_DATE, days=x)
        if kind == "uuid":
            import uuid
            return str(uuid.UUID(bytes=bytes(x)))
        if kind == "numeric":
            return _decimal(x) if col.is_decimal else x
        if kind == "double_value":
            return float(x)
        if kind in ("int64_value", "bool_value", "json", "bytes_value"):
            return bytes(x) if kind == "bytes_value" else x
        if kind == "string_value":
            return _text_scalar(col, typname, x) if typname not in ("text", "varchar", "bpchar", "name") else x
        return x

    def _value(self, col: Column, v):
        return self._scalar(col, col.typname, v)

    def _key(self, cols) -> tuple:
        byname = {c.name: c.value for c in cols}
        return tuple(self._value(c, byname[c.name]) if c.name in byname else None for c in self.keys)

    def decode(self, value: bytes, headers: dict[str, bytes]) -> Change | None:
        ev = self.cls()
        ev.ParseFromString(value)
        op = PB_OPS.get(int(ev.op))
        if op is None:
            return None
        version = (int(ev.source.commit_lsn), int(ev.source.change_lsn))
        if op == "t":
            return Change("t", (), {}, set(), version)
        if op == "d":
            return Change("d", self._key(ev.key), {}, set(), version,
                          key_change="__debezium.newkey" in headers)
        values, toast = {}, set()
        present = {c.name: c.value for c in ev.after.columns}
        for c in self.columns:
            v = present.get(c.name)
            if v is None:
                values[c.name] = None
            elif v.WhichOneof("kind") == "unchanged_toast" and not c.is_key:
                toast.add(c.name)
                values[c.name] = None
            else:
                values[c.name] = self._value(c, v)
        old = None
        if headers.get("__debezium.oldkey"):
            row = type(ev.after)()
            row.ParseFromString(headers["__debezium.oldkey"])
            old = self._key(row.columns)
        return Change(op, tuple(values[c.name] for c in self.keys), values, toast, version, old)


# ---- the fold: a micro-batch's changes of one table → one row per key -----------------------

@dataclasses.dataclass
class Folded:
    rows: list[dict]               # one per key: the columns, <col>__toast flags, _op, version
    truncate: tuple | None         # the newest TRUNCATE's version in the batch
    refs: set                      # other keys whose stored values some rows need
    # key changes whose create is not in this batch: version → the old key's toastable
    # values (("v", value) or ("t", key)), kept by the sink for a later batch's create
    moves: dict = dataclasses.field(default_factory=dict)
    used: set = dataclasses.field(default_factory=set)   # the kept moves this batch used


# a value in the fold: ("v", value) or ("t", key): the value stored in the target for key
def fold(changes: Iterable[Change], columns: list[Column], after: tuple = (0, 0),
         pending: dict | None = None) -> Folded:
    """Folds one table's changes of a micro-batch in version order (see the module's doc).
    ``after``: changes at or before this version (a TRUNCATE already applied) are dropped;
    ``pending``: the old keys' values of key changes whose delete came in an earlier batch
    than their create (version → column → value)."""
    pending = pending or {}
    toastable = [c.name for c in columns if c.toastable]
    seen = set()
    evs = []
    for ch in changes:
        if ch.version <= after and ch.op != "t":
            continue
        ident = (ch.op, ch.key, ch.version)
        if ident in seen:               # an exact redelivery
            continue
        seen.add(ident)
        evs.append(ch)
    # version order; within one version (a key change) the delete before the create
    evs.sort(key=lambda e: (e.version, 0 if e.op == "d" else 1))
    state: dict[tuple, dict] = {}
    moved: dict[tuple, dict] = {}       # key-change delete's version → the old key's values
    truncate = None
    claimed, used = set(), set()
    splits: dict[tuple, bool] = {}      # key-change deletes in the batch
    for e in evs:
        if e.op == "t":
            state.clear()
            moved.clear()
            splits.clear()
            truncate = e.version
            continue
        prev = state.get(e.key)
        live = prev is not None and prev["op"] != "d"
        if e.op == "d":
            if prev is None and e.version in pending:
                # a redelivered key-change delete whose first delivery was applied: what
                # was kept then (the lookup would find the old key's tombstone now)
                moved[e.version] = {c: ("v", x) for c, x in pending[e.version].items()}
            else:
                moved[e.version] = prev["vals"] if live else \
                    ({c: ("t", e.key) for c in toastable} if prev is None else {})
            state[e.key] = {"op": "d", "ver": e.version}
            if e.key_change:
                splits[e.version] = True
            continue
        vals = {}
        for c in columns:
            if c.is_key:
                continue
            if c.name not in e.toast:
                vals[c.name] = ("v", e.values[c.name])
            elif live:
                vals[c.name] = prev["vals"][c.name]
            elif prev is None and e.op == "u":
                vals[c.name] = ("t", e.key)
            elif c.name in moved.get(e.version, {}):
                vals[c.name] = moved[e.version][c.name]   # a key change: the old key's value
                claimed.add(e.version)
            elif c.name in pending.get(e.version, {}):
                vals[c.name] = ("v", pending[e.version][c.name])   # its delete came earlier
                used.add(e.version)
            elif e.old_key is not None and e.old_key not in state:
                vals[c.name] = ("t", e.old_key)           # its delete comes in a later batch
            elif e.old_key is not None and state[e.old_key]["op"] != "d":
                vals[c.name] = state[e.old_key]["vals"][c.name]   # ... and its changes before it are here
            else:
                vals[c.name] = ("v", None)
        state[e.key] = {"op": "u", "vals": vals, "ver": e.version}
    rows, refs = [], set()
    keys = [c for c in columns if c.is_key]
    for k, st in state.items():
        row: dict[str, Any] = {c.name: v for c, v in zip(keys, k)}
        row["_op"] = st["op"]
        row["_commit_lsn"], row["_change_lsn"] = st["ver"]
        for c in columns:
            if c.is_key:
                continue
            if st["op"] == "d":
                row[c.name] = None
                if c.toastable:
                    row[c.name + "__toast"] = False
                continue
            kind, x = st["vals"][c.name]
            if kind == "t" and x == k:
                row[c.name], row[c.name + "__toast"] = None, True   # MERGE keeps the target's
            elif kind == "t":
                row[c.name], row[c.name + "__toast"] = ("ref", x), False
                refs.add(x)
            else:
                row[c.name] = x
                if c.toastable:
                    row[c.name + "__toast"] = False
        rows.append(row)
    used |= {v for v in claimed if v in pending}   # kept, and its create is in this batch now
    moves = {}
    for v in splits:
        if v not in claimed:
            moves[v] = {c: moved[v][c] for c in toastable if c in moved[v]}
            refs |= {x for kind, x in moves[v].values() if kind == "t"}
    return Folded(rows, truncate, refs, moves, used)


# ---- the sinks -------------------------------------------------------------------------------

class TableSink:
    """One PostgreSQL table's copy in one table format (``delta`` or ``iceberg``)."""

    def __init__(self, spark, fmt: str, name: str, columns: list[Column], location: str | None = None):
        self.spark, self.fmt, self.columns = spark, fmt, columns
        self.name = name                       # ice.<db>.<t> or delta.`<path>`
        self.location = location
        self.keys = [c for c in columns if c.is_key]
        self.truncated: tuple = (0, 0)
        # key changes whose delete came before their create (Folded.moves, resolved):
        # in memory, so a restart between the two loses the value (README, limits)
        self.pending: dict[tuple, dict] = {}
        self.timings: collections.Counter = collections.Counter()   # statement → seconds

    def sql(self, what: str, stmt: str):
        t0 = time.monotonic()
        try:
            return self.spark.sql(stmt).collect()
        finally:
            self.timings[f"{self.fmt} {what}"] += time.monotonic() - t0

    def create(self) -> None:
        cols = ", ".join(f"{qi(c.name)} {c.sql_type}{' NOT NULL' if c.is_key else ''}" for c in self.columns)
        cols += ", _commit_lsn BIGINT NOT NULL, _change_lsn BIGINT NOT NULL, _is_deleted BOOLEAN"
        if self.fmt == "delta":
            self.spark.sql(f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}) USING delta")
        else:
            ns = self.name.rsplit(".", 1)[0]
            self.spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {ns}")
            self.spark.sql(f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}) USING iceberg "
                           "TBLPROPERTIES ('format-version' = '2', 'write.merge.mode' = 'copy-on-write')")
        if "_is_deleted" not in self.spark.sql(f"SELECT * FROM {self.name} LIMIT 0").columns:
            # a table of an earlier version of the job: its rows are live (NULL: not deleted)
            self.spark.sql(f"ALTER TABLE {self.name} ADD COLUMNS (_is_deleted BOOLEAN)")
        props = {r[0]: r[1] for r in self.spark.sql(f"SHOW TBLPROPERTIES {self.name}").collect()}
        if "walship.truncated" in props:
            self.truncated = tuple(int(x) for x in props["walship.truncated"].split("/"))

    def key_match(self, a: str, b: str) -> str:
        return " AND ".join(f"{a}.{qi(c.name)} = {b}.{qi(c.name)}" for c in self.keys)

    def stored(self, keys: set) -> dict[tuple, dict]:
        """The stored values of the toastable columns of these keys: a DataFrame of the keys
        (with their decoded types: dates, timestamps, bytes, NaN) joined with the target,
        each key found again by its index (no SQL text from values, no equality in Python)."""
        if not keys:
            return {}
        from pyspark.sql.types import _parse_datatype_string, StructField, StructType, LongType

        toast = [c for c in self.columns if c.toastable]
        order = list(keys)
        schema = StructType([StructField("_i", LongType(), False)] +
                            [StructField(c.name, _parse_datatype_string(c.sql_type), True) for c in self.keys])
        kdf = self.spark.createDataFrame([(i, *k) for i, k in enumerate(order)], schema, verifySchema=False)
        view = f"walship_keys_{abs(hash(self.name)) % 10**8}"
        kdf.createOrReplaceTempView(view)
        on = " AND ".join(f"t.{qi(c.name)} = k.{qi(c.name)}" for c in self.keys)
        sel = ", ".join(["k._i"] + [f"t.{qi(c.name)}" for c in toast])
        out = {}
        for r in self.sql("lookup", f"SELECT {sel} FROM {self.name} t JOIN {view} k ON {on}"):
            d = r.asDict()
            out[order[d["_i"]]] = {c.name: d[c.name] for c in toast}
        return out

    def apply(self, folded: Folded, source_schema) -> None:
        """The truncate, then the MERGE. The old keys' values of key changes whose create
        comes later are kept before the MERGE (which deletes those rows), and never
        replaced: when Spark runs the batch again (the other sink failed), the lookup finds
        nothing any more, and what was kept stays. The moves this batch used are dropped
        only by ``commit``, once every sink's MERGE of the batch has committed."""
        stored = self.stored(folded.refs)
        for v, vals in folded.moves.items():
            self.pending.setdefault(v, {c: (x if kind == "v" else stored.get(x, {}).get(c))
                                        for c, (kind, x) in vals.items()})
        if folded.truncate is not None and folded.truncate > self.truncated:
            c, ch = folded.truncate
            self.sql("truncate", f"DELETE FROM {self.name} WHERE _commit_lsn < {c} OR "
                     f"(_commit_lsn = {c} AND _change_lsn < {ch})")
            self.sql("truncate", f"ALTER TABLE {self.name} SET TBLPROPERTIES ('walship.truncated' = '{c}/{ch}')")
            self.truncated = folded.truncate
        if not folded.rows:
            return
        rows = []
        for r in folded.rows:
            r = dict(r)
            for c in self.columns:
                v = r.get(c.name)
                if isinstance(v, tuple) and len(v) == 2 and v[0] == "ref":
                    r[c.name] = stored.get(v[1], {}).get(c.name)
            rows.append(tuple(r.get(f.name) for f in source_schema.fields))
        t0 = time.monotonic()
        src = self.spark.createDataFrame(rows, source_schema, verifySchema=False)
        view = f"walship_src_{abs(hash(self.name)) % 10**8}"
        src.createOrReplaceTempView(view)
        self.timings[f"{self.fmt} source"] += time.monotonic() - t0
        self.sql("merge", merge_sql(self.name, view, self.columns))

    def commit(self, folded: Folded) -> None:
        """After every sink's MERGE of the micro-batch committed: the kept moves it used
        are done with."""
        for v in folded.used:
            self.pending.pop(v, None)


def merge_sql(target: str, source: str, columns: list[Column]) -> str:
    """The MERGE of a folded micro-batch (one row per key) into a target table:

    - a source row applies only when it is newer than the target's row (the version
      guard: a redelivered batch changes nothing);
    - ``_op = 'd'`` soft-deletes: the row stays, ``_is_deleted = true`` with the delete's
      version and the values it held before the batch (what a later create of a key change
      reads as the old key's row), and a
      delete of a key the target lacks inserts such a tombstone: a redelivered older
      create in a later batch finds it and changes nothing (readers filter
      ``_is_deleted IS NOT TRUE``);
    - otherwise the row is updated or inserted (``_is_deleted = false``), each toastable
      column as ``CASE WHEN s.<col>__toast THEN t.<col> ELSE s.<col> END``: an unchanged
      TOAST value keeps what the target stores.
    """
    keys = [c for c in columns if c.is_key]
    on = " AND ".join(f"t.{qi(c.name)} = s.{qi(c.name)}" for c in keys)
    newer = ("(t._commit_lsn < s._commit_lsn OR "
             "(t._commit_lsn = s._commit_lsn AND t._change_lsn < s._change_lsn))")
    sets = []
    for c in columns:
        if c.is_key:
            continue
        n = qi(c.name)
        if c.toastable:
            sets.append(f"{n} = CASE WHEN s.{qi(c.name + '__toast')} THEN t.{n} ELSE s.{n} END")
        else:
            sets.append(f"{n} = s.{n}")
    version = "_commit_lsn = s._commit_lsn, _change_lsn = s._change_lsn"
    sets += [version, "_is_deleted = false"]
    names = ", ".join(qi(n) for n in [c.name for c in columns] + list(VERSION_COLUMNS) + ["_is_deleted"])
    ins = ", ".join(f"CASE WHEN s.{qi(c.name + '__toast')} THEN NULL ELSE s.{qi(c.name)} END"
                    if c.toastable else f"s.{qi(c.name)}" for c in columns)
    ins += ", s._commit_lsn, s._change_lsn, false"
    tomb = ", ".join(f"s.{qi(c.name)}" if c.is_key else "NULL" for c in columns)
    tomb += ", s._commit_lsn, s._change_lsn, true"
    return (f"MERGE INTO {target} t USING {source} s ON {on}\n"
            f"WHEN MATCHED AND s._op = 'd' AND {newer} THEN UPDATE SET {version}, _is_deleted = true\n"
            f"WHEN MATCHED AND s._op <> 'd' AND {newer} THEN UPDATE SET {', '.join(sets)}\n"
            f"WHEN NOT MATCHED AND s._op = 'd' THEN INSERT ({names}) VALUES ({tomb})\n"
            f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({ins})")


def source_schema(columns: list[Column]):
    """The Spark schema of a folded batch: the columns, a flag per toastable column, the
    operation and the version."""
    from pyspark.sql.types import _parse_datatype_string, StructField, StructType, BooleanType, \
        StringType, LongType

    fields = []
    for c in columns:
        fields.append(StructField(c.name, _parse_datatype_string(c.sql_type), not c.is_key))
        if c.toastable:
            fields.append(StructField(c.name + "__toast", BooleanType(), False))
    fields += [StructField("_op", StringType(), False), StructField("_commit_lsn", LongType(), False),
               StructField("_change_lsn", LongType(), False)]
    return StructType(fields)


@dataclasses.dataclass
class TableJob:
    schema: str
    table: str
    topic: str
    columns: list[Column]
    decoder: Any
    sinks: list[TableSink]
    source_schema: Any = None


class StreamJob:
    """The Spark side of one walship stream: one streaming query over its topics that
    keeps a Delta table and an Iceberg table per PostgreSQL table."""

    def __init__(self, spark, pg, fmt: str, schema: str, tables: Iterable[str], topic: Callable[[str], str],
                 bootstrap: str, workdir: str | Path, name: str, sinks: Iterable[str] = ("delta", "iceberg"),
                 parallel: int = 4, max_offsets: int = 200000):
        self.parallel = parallel
        self.max_offsets = max_offsets        # maxOffsetsPerTrigger: the cap of a micro-batch
        self.drained: list[int] = []          # the last drain's numInputRows per micro-batch
        self.spark, self.fmt, self.schema, self.bootstrap = spark, fmt, schema, bootstrap
        self.workdir = Path(workdir)
        self.name = name
        self.checkpoint = str(self.workdir / "checkpoints" / name)
        self.tables: dict[str, TableJob] = {}
        self.batches = 0
        self.changes = 0
        # (table, op) → changes; (table, op, column) → unchanged TOAST values
        self.stats: collections.Counter = collections.Counter()
        self.timings: collections.Counter = collections.Counter()   # step → seconds, summed
        self.query = None
        self.error: BaseException | None = None
        with pg.connect() as conn:
            for t in tables:
                cols = table_columns(conn, f'"{schema}"."{t}"')
                dec = JsonDecoder(cols) if fmt == "json" else ProtobufDecoder(cols)
                sks = []
                for s in sinks:
                    if s == "delta":
                        loc = self.workdir / "delta" / name / t
                        sks.append(TableSink(spark, "delta", f"delta.`{loc}`", cols, str(loc)))
                    else:
                        sks.append(TableSink(spark, "iceberg", f"ice.{name}.{t}", cols))
                tj = TableJob(schema, t, topic(t), cols, dec, sks, source_schema(cols))
                for sk in sks:
                    sk.create()
                self.tables[tj.topic] = tj

    def timing(self) -> str:
        """Where the micro-batches' time went, summed: Kafka read, decode, per sink statement."""
        t = collections.Counter(self.timings)
        for tj in self.tables.values():
            for sk in tj.sinks:
                t.update(sk.timings)
        return ", ".join(f"{k} {v:.1f} s" for k, v in sorted(t.items()))

    def sink(self, table: str, fmt: str) -> TableSink:
        for tj in self.tables.values():
            if tj.table == table:
                return next(s for s in tj.sinks if s.fmt == fmt)
        raise KeyError(table)

    def _reader(self):
        return (self.spark.readStream.format("kafka")
                .option("kafka.bootstrap.servers", self.bootstrap)
                .option("subscribe", ",".join(self.tables))
                .option("startingOffsets", "earliest")
                .option("includeHeaders", "true")
                .option("failOnDataLoss", "true")
                .option("maxOffsetsPerTrigger", self.max_offsets)
                .load())

    def batch(self, df, batch_id: int) -> None:
        """foreachBatch: decode, fold and MERGE, table by table."""
        try:
            t0 = time.monotonic()
            rows = df.select("topic", "value", "headers").collect()
            t1 = time.monotonic()
            self.timings["collect"] += t1 - t0
            per_topic: dict[str, list[Change]] = {}
            for r in rows:
                if r["value"] is None or len(r["value"]) == 0:
                    continue                                   # a tombstone
                tj = self.tables.get(r["topic"])
                if tj is None:
                    continue
                headers = {h["key"]: bytes(h["value"]) if h["value"] is not None else b""
                           for h in (r["headers"] or [])}
                ch = tj.decoder.decode(bytes(r["value"]), headers)
                if ch is not None:
                    per_topic.setdefault(r["topic"], []).append(ch)
                    self.stats[(tj.table, ch.op)] += 1
                    for c in ch.toast:
                        self.stats[(tj.table, ch.op, c)] += 1
            t2 = time.monotonic()
            self.timings["decode"] += t2 - t1
            work = []
            for topic, changes in per_topic.items():
                tj = self.tables[topic]
                self.changes += len(changes)
                work += [(tj, sk, changes) for sk in tj.sinks]

            def apply(w) -> tuple:
                tj, sk, changes = w
                folded = fold(changes, tj.columns, sk.truncated, sk.pending)
                sk.apply(folded, tj.source_schema)
                return sk, folded

            # every (table, sink) is its own commit: run them side by side (a MERGE is
            # mostly small stages and driver work, which leaves the cores idle)
            with concurrent.futures.ThreadPoolExecutor(max_workers=self.parallel) as pool:
                done = [f.result() for f in [pool.submit(apply, w) for w in work]]
            for sk, folded in done:       # all committed: Spark will not run this batch again
                sk.commit(folded)
            self.timings["apply"] += time.monotonic() - t2
            self.batches += 1
        except BaseException as e:  # noqa: BLE001  kept for the caller: Spark's own message hides it
            self.error = e
            raise

    def _writer(self):
        return (self._reader().writeStream.foreachBatch(self.batch)
                .option("checkpointLocation", self.checkpoint).queryName(self.name))

    def drain(self, timeout: float = 300) -> float:
        """Runs the query once over everything Kafka holds now (``availableNow``), from where
        the checkpoint left off; returns the seconds it took."""
        t0 = time.monotonic()
        self.error = None                 # a timeout must not report an earlier run's error
        q = self._writer().trigger(availableNow=True).start()
        try:
            if not q.awaitTermination(timeout):
                q.stop()
                raise TimeoutError(f"the Spark query {self.name} did not finish in {timeout} s")
        except Exception:
            if self.error is not None:
                raise RuntimeError(f"the Spark query {self.name} failed: {self.error!r}") from self.error
            raise
        self.drained = [int(p["numInputRows"]) for p in q.recentProgress if p.get("numInputRows")]
        return time.monotonic() - t0

    def start(self, interval: str = "0 seconds") -> None:
        """Starts the long-running query (micro-batches as fast as they come)."""
        self.query = self._writer().trigger(processingTime=interval).start()

    def stop(self) -> None:
        if self.query is not None:
            self.query.stop()
            self.query = None

    def check(self) -> None:
        """Raises if the long-running query failed."""
        if self.query is not None and self.query.exception() is not None:
            raise RuntimeError(f"the Spark query {self.name} failed: {self.error or self.query.exception()}")


# ---- the comparison with PostgreSQL -----------------------------------------------------------

SPARK_EXPR = {
    "timestamp": "date_format({c}, 'yyyy-MM-dd HH:mm:ss.SSSSSS')",
    "timestamptz": "date_format({c}, 'yyyy-MM-dd HH:mm:ss.SSSSSS')",
    "bytea": "lower(hex({c}))",
    "array": "to_json({c})",
}


def target_rows(sink: TableSink) -> list[tuple]:
    """Every row of a target table, each column rendered as workload.compare_rows wants."""
    sel = []
    for i, c in enumerate(sink.columns):
        k = workload.kind(c)
        e = SPARK_EXPR.get(k, "CAST({c} AS STRING)").format(c=qi(c.name))
        sel.append(f"{e} AS c{i}")
    return [tuple(r) for r in sink.spark.sql(f"SELECT {', '.join(sel)} FROM {sink.name} "
                                             "WHERE _is_deleted IS NOT TRUE").collect()]


def compare(pg, schema: str, sink: TableSink, table: str) -> tuple[int, int, list[str]]:
    """(rows compared, values compared, differences) of one table in one sink."""
    return workload.compare_rows(table, sink.columns, workload.pg_rows(pg, schema, table, sink.columns),
                                 target_rows(sink), f"{sink.fmt.capitalize()}")


def side_by_side(pg, schema: str, sink: TableSink, table: str, limit: int = 10) -> str:
    """The first rows of both sides, for people (long values cut)."""
    keys = ", ".join(qi(c.name) for c in sink.keys)
    sel = ", ".join(f"concat('<', length({qi(c.name)}), ' bytes>')" if c.typname == "bytea"
                    else f"CAST({qi(c.name)} AS STRING)" for c in sink.columns)
    rows = sink.spark.sql(f"SELECT {sel} FROM {sink.name} WHERE _is_deleted IS NOT TRUE "
                          f"ORDER BY {keys} LIMIT {limit}").collect()
    out = workload.pg_side(pg, schema, table, sink.columns, limit)
    out.append(f"-- {sink.fmt.capitalize()} {sink.name}")
    out += [" | ".join(workload.cut(v) for v in r) for r in rows]
    return "\n".join(out)
