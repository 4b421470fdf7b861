"""walship → Kafka → OpenSearch: the OpenSearch node, the index mapping, the sink, the comparison.

- ``OpenSearchServer``: one OpenSearch 2.19.6 node from Maven Central jars (pom.xml next to
  this file, resolved once into ``$WALSHIP_CACHE/opensearch-<version>`` by
  walship_testlib's ``resolve_jars``), started by ``OpenSearchMain.java`` (compiled at run
  time into the cache), loopback only, free ports, data in a temp dir, 512 MB heap.
- ``index_body``: the explicit mapping of a table's index, from PostgreSQL's catalog.
- ``Sink``: a Kafka consumer that keeps one index per topic equal to the table, with the
  semantics of Confluent's Elasticsearch sink behind Debezium's ExtractNewRecordState
  (``_id`` = the key; upsert on c/u/r; delete on delete and tombstone; truncate removes
  the table's documents), versioned by (commit LSN, change LSN) so that the result does
  not depend on how partitions interleave; unchanged TOAST values leave the stored value
  alone, also through key changes. README.md next to this file has the recipe.
- ``compare``: every document against PostgreSQL's row, column by column
  (pipelines/common/workload.py).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid as uuidlib
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "common"))
sys.path.insert(0, str(REPO / "tests" / "lib"))

import workload  # noqa: E402  (pipelines/common: the workload, the columns, the comparison)
from walship_testlib.common import Resource  # noqa: E402  (stopped at exit and on SIGTERM)

POM = HERE / "pom.xml"
MAIN_JAVA = HERE / "OpenSearchMain.java"
TOAST_PLACEHOLDER = "__debezium_unavailable_value"
TOAST_PLACEHOLDER_B64 = base64.b64encode(TOAST_PLACEHOLDER.encode()).decode()
META = "__walship"          # the document's version fields: {"commit_lsn", "change_lsn", "op"}
STATE_INDEX = "walship-sink-state"   # key-change carries and truncate floors (see Sink)


class Unchanged:
    """An unchanged TOAST value: not in the event, the stored value stays."""
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged()


# ---- the OpenSearch node --------------------------------------------------------------------

def opensearch_version() -> str:
    m = re.search(r"<opensearch.version>(.*?)</opensearch.version>", POM.read_text())
    if not m:
        raise RuntimeError(f"no <opensearch.version> in {POM}")
    return m.group(1).strip()


def _cache_root() -> Path:
    return Path(os.environ.get("WALSHIP_CACHE") or Path(os.environ.get("HOME") or "/root") / ".cache" / "walship")


def _java(tool: str = "java") -> str:
    if os.environ.get("JAVA_HOME"):
        return f"{os.environ['JAVA_HOME']}/bin/{tool}"
    found = shutil.which(tool)
    if not found:
        raise RuntimeError(f"{tool} not found (Java 17 is needed for OpenSearch; scripts/install-deps.sh installs it)")
    return found


def fetch_jars() -> tuple[Path, Path]:
    """(jars dir, classes dir): the jars resolved by Maven and OpenSearchMain compiled, both
    cached (once per pom / per source)."""
    import fcntl

    from walship_testlib.connect import resolve_jars

    root = _cache_root()
    jars = root / f"opensearch-{opensearch_version()}"
    root.mkdir(parents=True, exist_ok=True)
    with open(f"{jars}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        resolve_jars(POM, jars, f"opensearch-{opensearch_version()}.jar", f"OpenSearch {opensearch_version()}")
        stamp = hashlib.sha256(MAIN_JAVA.read_bytes() + POM.read_bytes()).hexdigest()[:12]
        classes = root / f"opensearch-main-{stamp}"
        if not (classes / "OpenSearchMain.class").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=".opensearch-main-", dir=root))
            r = subprocess.run([_java("javac"), "-d", str(tmp), "-cp", f"{jars}/*", str(MAIN_JAVA)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise RuntimeError(f"javac {MAIN_JAVA} failed:\n{r.stdout}{r.stderr}")
            shutil.rmtree(classes, ignore_errors=True)
            tmp.rename(classes)
    return jars, classes


class OpenSearchServer(Resource):
    """One OpenSearch node (a child JVM) on free loopback ports, home in a temp dir.
    ``with OpenSearchServer() as os_: os_.client.request(...)``. If it does not answer
    within ``timeout`` it raises with the end of its log: a test that needs it fails.
    Stopped at interpreter exit and on SIGTERM if still running (walship_testlib's
    Resource)."""

    def __init__(self, heap: str | None = None, timeout: float = 120):
        self.heap = heap or os.environ.get("WALSHIP_OPENSEARCH_HEAP", "512m")
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.home: Path | None = None
        self.port = 0
        self.client: OpenSearchClient | None = None
        self.started_in = 0.0
        self._register(start=False)

    def _started(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        self.stop()
        self._unregister()

    def __enter__(self) -> "OpenSearchServer":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def start(self) -> None:
        from walship_testlib import free_ports

        jars, classes = fetch_jars()
        self.home = Path(tempfile.mkdtemp(prefix="walship-opensearch-"))
        self.port, tport = free_ports(2)
        log = open(self.home / "node.log", "w")
        # serial GC and C1 only: a short-lived node on 2 shared cores starts faster
        jvm = os.environ.get("WALSHIP_OPENSEARCH_JVM_OPTS", "-XX:+UseSerialGC -XX:TieredStopAtLevel=1").split()
        cmd = [_java(), f"-Xms{self.heap}", f"-Xmx{self.heap}", *jvm, "-Xshare:auto", "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8",
               "-Dopensearch.networkaddress.cache.ttl=60", "-Dlog4j2.formatMsgNoLookups=true",
               "-cp", f"{jars}/*:{classes}", "OpenSearchMain", str(self.home), str(self.port), str(tport)]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        self.client = OpenSearchClient(f"http://127.0.0.1:{self.port}")
        deadline = t0 + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"OpenSearch exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                h = self.client.request("GET", "/_cluster/health?wait_for_status=yellow&timeout=1s")
                if h.get("status") in ("green", "yellow"):
                    break
            except (OSError, OpenSearchError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"OpenSearch did not answer on port {self.port} within {self.timeout:.0f} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.2)
        self.started_in = time.monotonic() - t0

    def version(self) -> str:
        return self.client.request("GET", "/")["version"]["number"]

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join((self.home / "node.log").read_text(errors="replace").splitlines()[-n:])
        except (OSError, TypeError):
            return "(no log)"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self.home and not os.environ.get("WALSHIP_KEEP_TMP"):
            shutil.rmtree(self.home, ignore_errors=True)


class OpenSearchError(RuntimeError):
    def __init__(self, status: int, body: Any, what: str):
        super().__init__(f"OpenSearch {what}: HTTP {status}: {json.dumps(body)[:2000]}")
        self.status, self.body = status, body


class OpenSearchClient:
    """JSON over HTTP, the standard library only."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def request(self, method: str, path: str, body: Any = None, ndjson: str | None = None,
                ok: Iterable[int] = ()) -> Any:
        data, ctype = None, "application/json"
        if ndjson is not None:
            data, ctype = ndjson.encode(), "application/x-ndjson"
        elif body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                parsed = json.loads(raw or b"{}")
            except ValueError:
                parsed = raw.decode(errors="replace")
            if e.code in ok:
                return parsed
            raise OpenSearchError(e.code, parsed, f"{method} {path}") from None
        return json.loads(raw or b"{}")

    def all_docs(self, index: str) -> list[dict]:
        """Every document of ``index`` (``_id`` and ``_source``), after a refresh."""
        self.request("POST", f"/{index}/_refresh")
        out = []
        r = self.request("POST", f"/{index}/_search?scroll=1m", {"size": 1000, "sort": ["_doc"]})
        while r["hits"]["hits"]:
            out += r["hits"]["hits"]
            r = self.request("POST", "/_search/scroll", {"scroll": "1m", "scroll_id": r["_scroll_id"]})
        self.request("DELETE", "/_search/scroll", {"scroll_id": r["_scroll_id"]}, ok=(404,))
        return out


# ---- the mapping ------------------------------------------------------------------------------

INT_TYPES = {"int2": "short", "int4": "integer", "int8": "long", "oid": "long"}
TEXT_TYPES = ("text", "varchar", "bpchar", "name", "xml", "citext")
MAX_KEYWORD = 8191   # characters: a keyword term must stay under Lucene's 32,766 bytes


@dataclasses.dataclass
class Column(workload.PgColumn):
    """A PostgreSQL column (pipelines/common/workload.py) and its OpenSearch field."""

    def field_mapping(self) -> dict:
        t = self.elem if self.is_array else self.typname   # OpenSearch fields are multi-valued: an array
        if t in INT_TYPES:                                  # maps like its element
            return {"type": INT_TYPES[t]}
        if t in ("float4", "float8"):
            # NaN and ±Infinity are stored as the strings "NaN", "Infinity", "-Infinity" in
            # _source; the double field refuses non-finite values, so they are "malformed":
            # not indexed (listed in _ignored), the document is kept, _source exact.
            return {"type": "float" if t == "float4" else "double", "ignore_malformed": True}
        if t == "bool":
            return {"type": "boolean"}
        if t == "numeric":
            return {"type": "keyword", "ignore_above": MAX_KEYWORD}   # the exact decimal text
        if t in ("uuid",):
            return {"type": "keyword"}
        if t in ("json", "jsonb"):
            return {"type": "keyword", "ignore_above": MAX_KEYWORD}   # the JSON text (jsonb: canonical)
        if t == "bytea":
            return {"type": "binary"}                                 # base64, stored in _source
        if t == "date":
            return {"type": "date", "format": "strict_date", "ignore_malformed": True}
        if t in ("timestamp", "timestamptz"):
            # indexed to the millisecond (date_nanos stops at 1970 and 2262), _source keeps
            # the microseconds: 2030-05-06T07:08:09.123456 (timestamptz in UTC, with Z)
            return {"type": "date", "format": "strict_date_optional_time", "ignore_malformed": True}
        if t in TEXT_TYPES:
            return {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 256}}}
        return {"type": "keyword", "ignore_above": MAX_KEYWORD}        # other types: their text


def table_columns(pg_conn, qualified: str) -> list[Column]:
    cols = workload.table_columns(pg_conn, qualified, Column)
    if any(c.name == META for c in cols):
        raise ValueError(f"{qualified} has a column named {META}, which the sink uses for versions")
    return cols


def index_body(columns: list[Column]) -> dict:
    props = {c.name: c.field_mapping() for c in columns}
    props[META] = {"properties": {"commit_lsn": {"type": "long"}, "change_lsn": {"type": "long"},
                                  "op": {"type": "keyword"}}}
    return {"settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
            "mappings": {"dynamic": "strict", "properties": props}}


def index_name(topic: str) -> str:
    return re.sub(r'[\\/*?"<>| ,#:]', "_", topic.lower()).lstrip("_-+")


# ---- decoding: events of both formats to one form ----------------------------------------------

@dataclasses.dataclass
class Change:
    op: str                         # c, u, d, r, t; "tombstone"
    key: tuple | None               # the key columns' values (documents' values), in column order
    after: dict | None              # c/u/r: column → document value, or UNCHANGED
    version: tuple[int, int]        # (commit LSN, change LSN)
    key_change: str = ""            # "old" (the delete of a key change), "new" (its create)


def parse_lsn(s: str) -> int:
    hi, lo = s.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


# PostgreSQL's infinities as protobuf (timestamp_us/timestamptz_us, date_days) and walship's
# JSON send them (timestamp: Debezium's JDBC-driver sentinels, in µs or ms by typmod; date:
# INT32_MAX/MIN; timestamptz: the strings)
TS_INFINITY = {2**63 - 1: "infinity", -2**63: "-infinity"}
JSON_TS_INFINITY_US = {9223372036825200000: "infinity", -9223372036832400000: "-infinity"}
JSON_TS_INFINITY_MS = {9223372036825200: "infinity", -9223372036832400: "-infinity"}
DATE_INFINITY = {2**31 - 1: "infinity", -2**31: "-infinity"}
US_PER_DAY = 86_400_000_000


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number (days since 1970-01-01), proleptic Gregorian,
    astronomical years (0 is 1 BC), any range (H. Hinnant's civil_from_days)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def _days(y: int, m: int, d: int) -> int:
    """The inverse of _civil (days_from_civil)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _date_text(days: int) -> str:
    """``YYYY-MM-DD``; outside years 1-9999 ISO 8601's expanded years as walship's JSON writes
    them (``+10000-01-01``; ``-0043-03-15`` is 44 BC, year 0 is 1 BC): exact for every date
    PostgreSQL has (OpenSearch's date field does not index those: ``ignore_malformed``)."""
    y, m, d = _civil(days)
    ys = f"{y:04d}" if 0 < y <= 9999 else f"+{y:04d}" if y > 9999 else f"-{-y:04d}"
    return f"{ys}-{m:02d}-{d:02d}"


def _date_doc(days: int) -> str:
    return DATE_INFINITY.get(days) or _date_text(days)


def _ts_text(us: int, tz: bool) -> str:
    """``2030-05-06T07:08:09.123456`` (timestamptz: in UTC, with ``Z``); PostgreSQL's
    ``infinity`` / ``-infinity`` as its text; years outside 1-9999 as in _date_text."""
    if us in TS_INFINITY:
        return TS_INFINITY[us]
    days, t = divmod(us, US_PER_DAY)
    s, frac = divmod(t, 1_000_000)
    return (f"{_date_text(days)}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{frac:06d}"
            + ("Z" if tz else ""))


_ISO_TS = re.compile(r"([+-]?\d{4,})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
                     r"(Z|[+-]\d\d(?::?\d\d(?::?\d\d)?)?)?")


def _zoned_us(text: str) -> int:
    """Microseconds since the epoch, UTC, of an ISO 8601 timestamp with a zone (JSON's
    timestamptz), expanded years included (which datetime.fromisoformat refuses)."""
    m = _ISO_TS.fullmatch(text)
    if not m:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    us = (_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1_000_000 + int((m.group(7) or "0").ljust(6, "0"))
    z = m.group(8) or "Z"
    if z != "Z":
        parts = [int(p) for p in re.findall(r"\d\d", z)] + [0, 0]
        off = parts[0] * 3600 + parts[1] * 60 + parts[2]
        us -= (off if z[0] == "+" else -off) * 1_000_000
    return us


def _float_doc(x: float):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


class JsonDecoder:
    """Debezium's JSON payload (stream options json_schema false, decimal_handling string)."""

    def __init__(self, columns: list[Column]):
        self.columns = columns
        self.by_name = {c.name: c for c in columns}
        self.keys = [c for c in columns if c.is_key]

    def value(self, c: Column, v):
        if v is None:
            return None
        if c.toastable and (v == TOAST_PLACEHOLDER or (c.typname == "bytea" and v == TOAST_PLACEHOLDER_B64)
                            or (c.is_array and v in ([TOAST_PLACEHOLDER], list(TOAST_PLACEHOLDER.encode())))):
            return UNCHANGED
        if c.is_array:
            if not isinstance(v, list):     # walship's JSON: a multi-dimensional array as its text
                raise ValueError(f"column {c.name} ({c.pg_type}): a multi-dimensional array "
                                 f"({str(v)[:80]!r}) is not supported in JSON (protobuf nests it)")
            return [self.scalar(c, c.elem, x) for x in v]
        return self.scalar(c, c.typname, v)

    @staticmethod
    def scalar(c: Column, t: str, v):
        if v is None:
            return None
        if t in ("float4", "float8"):
            return _float_doc(float({"Infinity": "inf", "-Infinity": "-inf"}.get(v, v)) if isinstance(v, str)
                              else float(v))
        if t == "date":
            return _date_doc(v)
        if t == "timestamp":
            if isinstance(v, str):
                return v
            if 0 <= c.typmod <= 3:          # Debezium's Timestamp: milliseconds
                return JSON_TS_INFINITY_MS.get(v) or _ts_text(v * 1000, False)
            return JSON_TS_INFINITY_US.get(v) or _ts_text(v, False)
        if t == "timestamptz":
            if v in ("infinity", "-infinity"):
                return v
            return _ts_text(_zoned_us(v), True)
        if t == "numeric" and not isinstance(v, str):
            return str(v)
        return v

    def row(self, obj: dict) -> dict:
        return {name: self.value(self.by_name[name], v) for name, v in obj.items() if name in self.by_name}

    def decode(self, value: bytes | None, key: bytes | None, headers: dict) -> Change | None:
        commit = parse_lsn(headers["walship.lsn"]) if "walship.lsn" in headers else 0
        if not value:
            if not key:
                return None
            k = json.loads(key)
            k = k.get("payload", k) if isinstance(k, dict) and "schema" in k else k
            return Change("tombstone", tuple(self.value(c, k[c.name]) for c in self.keys), None, (commit, 0))
        ev = json.loads(value)
        ev = ev.get("payload", ev) if "schema" in ev and "payload" in ev else ev
        op, src = ev.get("op"), ev.get("source") or {}
        commit = int(src.get("commit_lsn") or commit)   # the opt-in source.commit_lsn, else the header
        version = (commit, int(src.get("lsn") or 0))
        if op == "t":
            return Change("t", None, None, version)
        if op not in ("c", "u", "d", "r"):
            return None
        row = self.row(ev["before"] if op == "d" else ev["after"])
        kc = "old" if "__debezium.newkey" in headers else "new" if "__debezium.oldkey" in headers else ""
        return Change(op, tuple(row[c.name] for c in self.keys), None if op == "d" else row, version, kc)


class ProtobufDecoder:
    """walship.v1.ChangeEvent, read by member name (``WhichOneof``): timestamps in
    ``timestamp_us`` / ``timestamptz_us``, arrays in ``ArrayValue array`` (elements as
    Values, row-major, and ``dims``): a multi-dimensional array becomes nested JSON lists."""

    OPS = {"INSERT": "c", "UPDATE": "u", "DELETE": "d", "READ": "r", "TRUNCATE": "t"}

    def __init__(self, columns: list[Column], event_class=None, row_class=None):
        from walship_testlib import load_event_class

        self.cls = event_class or load_event_class()
        self.row_cls = row_class or load_event_class(message="walship.v1.Row")
        self.by_name = {c.name: c for c in columns}
        self.keys = [c for c in columns if c.is_key]
        self.op_names = {v.number: v.name for v in self.cls.DESCRIPTOR.fields_by_name["op"].enum_type.values}

    def value(self, c: Column, v):
        kind = v.WhichOneof("kind")
        if kind is None or kind == "is_null":
            return None
        if kind == "unchanged_toast":
            return UNCHANGED
        if c.is_array:
            if kind != "array":
                raise ValueError(f"column {c.name} ({c.pg_type}): an array as {kind}, not Value.array "
                                 f"(walship before protobuf schema 0.x sent arrays as text; not supported)")
            return self.array(c, v.array)
        return self.scalar(c, c.typname, v, kind)

    def array(self, c: Column, a) -> list:
        """ArrayValue → a JSON list; several dimensions: nested lists, outermost first (as
        array_to_json). Lower bounds other than 1 are not kept (nor by array_to_json)."""
        flat = [self.scalar(c, c.elem, e, e.WhichOneof("kind")) for e in a.elements]
        dims = list(a.dims)
        if len(dims) <= 1:
            if dims and dims[0] != len(flat):
                raise ValueError(f"column {c.name}: ArrayValue with dims {dims} and {len(flat)} elements")
            return flat
        if math.prod(dims) != len(flat):
            raise ValueError(f"column {c.name}: ArrayValue with dims {dims} and {len(flat)} elements")
        for n in reversed(dims[1:]):        # group the innermost dimension first
            flat = [flat[i:i + n] for i in range(0, len(flat), n)]
        return flat

    @staticmethod
    def scalar(c: Column, t: str, v, kind: str):
        if kind is None or kind == "is_null":
            return None
        x = getattr(v, kind)
        if kind == "double_value":
            return _float_doc(x)
        if kind == "bytes_value":
            return base64.b64encode(x).decode()
        if kind in ("timestamp_us", "timestamptz_us"):
            return _ts_text(x, t == "timestamptz")
        if kind == "date_days":
            return _date_doc(x)
        if kind == "uuid":
            return str(uuidlib.UUID(bytes=bytes(x)))
        return x            # int64_value, bool_value, string_value, numeric, json

    def row(self, columns) -> dict:
        return {col.name: self.value(self.by_name[col.name], col.value) for col in columns if col.name in self.by_name}

    def decode(self, value: bytes | None, key: bytes | None, headers: dict) -> Change | None:
        if not value:
            if not key:
                return None
            k = self.row(self.row_cls.FromString(key).columns)
            commit = parse_lsn(headers["walship.lsn"]) if "walship.lsn" in headers else 0
            return Change("tombstone", tuple(k[c.name] for c in self.keys), None, (commit, 0))
        ev = self.cls.FromString(value)
        op = self.OPS.get(self.op_names.get(ev.op, ""))
        if op is None:
            return None
        version = (int(ev.source.commit_lsn), int(ev.source.change_lsn))
        if op == "t":
            return Change("t", None, None, version)
        k = self.row(ev.key)
        kc = "old" if "__debezium.newkey" in headers else "new" if "__debezium.oldkey" in headers else ""
        return Change(op, tuple(k[c.name] for c in self.keys), None if op == "d" else self.row(ev.after.columns),
                      version, kc)


# ---- the sink -----------------------------------------------------------------------------------

def doc_version(doc: dict) -> tuple[int, int]:
    """A stored document's (commit LSN, change LSN), from its ``__walship`` field."""
    m = doc.get(META) or {}
    return int(m.get("commit_lsn") or 0), int(m.get("change_lsn") or 0)


def doc_id(key: tuple) -> str:
    """The document id: the key's value as text (one column), else a JSON array of them."""
    if len(key) == 1:
        v = key[0]
        return v if isinstance(v, str) else json.dumps(v)
    return json.dumps(list(key), ensure_ascii=False, separators=(",", ":"))


@dataclasses.dataclass
class TableSink:
    topic: str
    index: str
    columns: list[Column]
    decoder: Any

    @property
    def toastable(self) -> list[str]:
        return [c.name for c in self.columns if c.toastable]


class Sink:
    """Kafka → OpenSearch, one index per topic (see README.md, "The sink").

    - ``_id`` = the key (``doc_id``); c/u/r: the row is indexed, ``version_type=external_gte``
      with version = commit LSN (the newest transaction wins whatever the order of arrival;
      several changes of one row in one transaction arrive in order in its partition);
      d and tombstones: the document is deleted, with the same versioning; each document
      carries its (commit LSN, change LSN) in ``__walship``.
    - An unchanged TOAST value keeps the stored value: the sink reads the document (real-time
      GET, or its own pending writes) and writes it whole with the new values.
    - A key change (delete of the old key with header ``__debezium.newkey``, create of the
      new key with ``__debezium.oldkey``, same version, two partitions): the delete stores the
      old document's TOAST-able values under the version in the state index before deleting,
      once (a redelivered delete keeps the stored carry; see ``_store_carry``); the create
      whose values are unchanged is skipped if the new key's document is at or above its
      version (a redelivery), else takes them from there. If the create comes first, its
      partition waits (head of line) until the delete has been applied.
    - TRUNCATE: the documents with a lower version are deleted (found by a search after a refresh, deleted
      in one bulk versioned by the truncate's commit LSN), and the version is remembered (state index) as the index's floor: changes
      below it that other partitions bring later are dropped.
    - One sink consumes every partition of its topics (assigned, not a group member: no
      rebalances); it commits to its consumer group and resumes from there.
    - Offsets are committed after the bulk request that holds a message's writes succeeded
      (at-least-once; replays are idempotent by ``_id`` and version).

    ``order="kafka"`` applies messages in the order they are polled; ``order="adversarial"``
    (for the test) drains everything available, then applies one partition after another
    in reverse partition order, a worst case for cross-partition effects.
    """

    def __init__(self, bootstrap: str, client: OpenSearchClient, tables: list[TableSink], group: str,
                 order: str = "kafka", batch: int = 2000):
        from confluent_kafka import Consumer

        self.client, self.order, self.batch = client, order, batch
        self.tables = {t.topic: t for t in tables}
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                  "enable.partition.eof": False, "fetch.wait.max.ms": 50})
        self.queues: dict[tuple[str, int], collections.deque] = collections.defaultdict(collections.deque)
        self.processed: dict[tuple[str, int], int] = {}     # next offset to commit
        self.committed: dict[tuple[str, int], int] = {}
        self.ops: list[str] = []                            # the pending bulk request's lines
        self.pending: dict[tuple[str, str], dict | None] = {}   # (index, _id) → doc written in this bulk (None: deleted)
        self.fetched: dict[tuple[str, str], dict | None] = {}   # (index, _id) → doc read before this bulk
        self.carries: dict[tuple[str, tuple], dict] = {}    # (index, version) → the old key's TOAST values
        self.floors: dict[str, tuple[int, int]] = {}
        self.stats = collections.Counter()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._close_at_end = False       # stop() timed out: the thread closes the consumer
        self._closed = False
        self._ended = False              # the thread is past its loop (under lock)
        self.lock = threading.Lock()

    # -- setup
    def create_indexes(self, exist_ok: bool = False) -> None:
        """Creates the state index and the tables' indexes (``exist_ok``: those that exist
        are kept, e.g. for a sink that takes over), and reads the truncate floors."""
        for index, body in [(STATE_INDEX, {
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {"dynamic": False, "properties": {"kind": {"type": "keyword"}}}})] + \
                [(t.index, index_body(t.columns)) for t in self.tables.values()]:
            r = self.client.request("PUT", f"/{index}", body, ok=(400,))
            if r.get("error") and not ((exist_ok or index == STATE_INDEX) and
                                       r["error"].get("type") == "resource_already_exists_exception"):
                raise OpenSearchError(400, r, f"PUT /{index}")
        for t in self.tables.values():
            r = self.client.request("GET", f"/{STATE_INDEX}/_doc/floor|{t.index}", ok=(404,))
            if r.get("found"):
                self.floors[t.index] = tuple(r["_source"]["version"])

    # -- running
    def start(self) -> "Sink":
        # every partition assigned to this one sink (no group rebalance to wait for),
        # from the group's committed offsets, else from the beginning
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        md = self.consumer.list_topics(timeout=30)
        tps = []
        for topic in self.tables:
            if topic not in md.topics or md.topics[topic].error is not None:
                raise RuntimeError(f"topic {topic} does not exist")
            tps += [TopicPartition(topic, p) for p in sorted(md.topics[topic].partitions)]
        committed = self.consumer.committed(tps, timeout=30)
        for tp in committed:
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
            else:
                self.committed[(tp.topic, tp.partition)] = tp.offset
        self.consumer.assign(committed)
        self._thread = threading.Thread(target=self._run, name="opensearch-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 60) -> bool:
        """Stops the thread; returns whether it ended within ``timeout``. The consumer is
        closed only once the thread has ended (librdkafka's handle must not be closed under
        a running consume() or commit()): if it is still running, the thread closes it
        itself when it ends."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        with self.lock:
            if self._thread is not None and not self._ended:
                self._close_at_end = True
                return False
        self._close_consumer()
        return True

    def _close_consumer(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.consumer.close()
        except Exception:  # noqa: BLE001
            pass

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.step()
        except BaseException as e:  # noqa: BLE001  (reported by wait_consumed / check)
            self.error = e
        finally:
            with self.lock:
                self._ended, close = True, self._close_at_end
            if close:
                self._close_consumer()

    def check(self) -> None:
        if self.error:
            raise RuntimeError(f"the OpenSearch sink failed: {self.error!r}") from self.error

    def step(self) -> None:
        msgs = self.consumer.consume(num_messages=self.batch, timeout=0.2)
        if self.order == "adversarial" and msgs:
            while True:   # everything there is, then partition by partition
                more = self.consumer.consume(num_messages=self.batch, timeout=0.5)
                if not more:
                    break
                msgs += more
        for m in msgs:
            if m.error():
                from confluent_kafka import KafkaError
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"Kafka: {m.error()}")
            t = self.tables[m.topic()]
            headers = {k: v.decode("utf-8", "replace") if k == "walship.lsn" and v is not None else v
                       for k, v in (m.headers() or [])}
            try:
                ch = t.decoder.decode(m.value(), m.key(), headers)
            except ValueError as e:         # names the column; this names the table and message
                raise ValueError(f"{m.topic()} [{m.partition()}] at offset {m.offset()}: {e}") from e
            self.queues[(m.topic(), m.partition())].append((m.offset(), ch))
        self._prefetch()
        self._apply_queues()
        self.flush()

    def _apply_queues(self) -> None:
        order = sorted(self.queues, key=lambda tp: (tp[0], -tp[1]) if self.order == "adversarial" else tp)
        progress = True
        while progress:
            progress = False
            for tp in order:
                q = self.queues[tp]
                while q:
                    if not self._apply(self.tables[tp[0]], q[0][1]):
                        self.stats["waits"] += 1
                        break          # head of line: a key-change create waits for its delete
                    offset, _ = q.popleft()
                    self.processed[tp] = offset + 1
                    progress = True
                    if len(self.ops) >= 2 * self.batch:
                        self.flush()

    # -- one message
    def _prefetch(self) -> None:
        """One multi-get for the documents that the queued changes will read (updates with
        unchanged TOAST values, deletes of key changes), instead of one GET each."""
        want = set()
        for (topic, _), q in self.queues.items():
            t = self.tables[topic]
            for _, ch in q:
                if ch is None or ch.key is None:
                    continue
                if (ch.op in ("u", "r", "c") and any(v is UNCHANGED for v in ch.after.values())) or \
                        (ch.op == "d" and ch.key_change == "old" and t.toastable):
                    k = (t.index, doc_id(ch.key))
                    if k not in self.pending and k not in self.fetched:
                        want.add(k)
        if not want:
            return
        want = sorted(want)
        r = self.client.request("POST", "/_mget", {"docs": [{"_index": i, "_id": d} for i, d in want]})
        self.stats["prefetched"] += len(want)
        for (i, d), doc in zip(want, r["docs"]):
            if "error" in doc:
                raise RuntimeError(f"mget {i}/{d}: {doc['error']}")
            self.fetched[(i, d)] = doc["_source"] if doc.get("found") else None

    def _apply(self, t: TableSink, ch: Change | None) -> bool:
        if ch is None:
            return True
        if ch.op == "t":
            self.truncate(t, ch.version)
            return True
        floor = self.floors.get(t.index)
        if floor and ch.version < floor and ch.op != "tombstone":
            self.stats["below_truncate"] += 1
            return True
        _id = doc_id(ch.key)
        if ch.op in ("d", "tombstone"):
            if ch.op == "d" and ch.key_change == "old" and t.toastable:
                self._store_carry(t, _id, ch.version)
            if ch.op == "d":
                self.stats["d"] += 1
                self._op({"delete": {"_index": t.index, "_id": _id, "version": ch.version[0],
                                     "version_type": "external_gte"}})
                self.pending[(t.index, _id)] = None
            else:
                self.stats["tombstone"] += 1
                # the delete before it did the work; a tombstone alone (a compacted topic)
                # deletes, versioned by its walship.lsn header when it has one
                if (t.index, _id) not in self.pending:
                    d = {"_index": t.index, "_id": _id}
                    if ch.version[0]:
                        d |= {"version": ch.version[0], "version_type": "external_gte"}
                    self._op({"delete": d})
                    self.pending[(t.index, _id)] = None
            return True
        unchanged = [f for f, v in ch.after.items() if v is UNCHANGED]
        doc = {f: v for f, v in ch.after.items() if v is not UNCHANGED}
        if unchanged:
            if ch.op == "c" and ch.key_change == "new":
                cur = self._doc(t.index, _id)
                if cur is not None and doc_version(cur) >= ch.version:
                    # a redelivery of what is in the index already (or something newer is):
                    # writing it again could only lose values (a carry of a redelivered
                    # delete may be empty, and external_gte takes the same commit LSN)
                    self.stats["already_applied"] += 1
                    return True
                carry = self._carry(t.index, ch.version)
                if carry is None:
                    return False           # wait for the delete of the old key
                src = carry
                self.stats["key_change_carries"] += 1
            else:
                src = self._doc(t.index, _id) or {}
                self.stats["unchanged_toast_updates"] += 1
            for f in unchanged:
                self.stats["unchanged_toast_values"] += 1
                if f in src:
                    doc[f] = src[f]
                else:
                    self.stats["unresolved_toast"] += 1
        self.stats[ch.op] += 1
        if ch.key_change == "new":
            self.stats["key_change_creates"] += 1
        doc[META] = {"commit_lsn": ch.version[0], "change_lsn": ch.version[1], "op": ch.op}
        self._op({"index": {"_index": t.index, "_id": _id, "version": ch.version[0],
                            "version_type": "external_gte"}}, doc)
        self.pending[(t.index, _id)] = doc
        return True

    def _store_carry(self, t: TableSink, _id: str, version: tuple) -> None:
        """The delete half of a key change: keeps the old key's TOAST-able values for the
        create, under the version they share. Written once: a carry that exists (in memory
        or in the state index) is kept, since on a redelivery the old document is gone (or
        newer) and would give an empty carry. Built only from a document older than the
        delete, and written with ``create`` (409: a concurrent or earlier write was first,
        which is the same carry)."""
        if self._carry(t.index, version) is not None:
            self.stats["carry_kept"] += 1
            return
        old = self._doc(t.index, _id)
        if old is None or doc_version(old) >= version:
            old = {}               # nothing older to carry: the create's unchanged values stay unresolved
        carry = {f: old[f] for f in t.toastable if f in old}
        self.carries[(t.index, version)] = carry
        self._op({"create": {"_index": STATE_INDEX, "_id": self._carry_id(t.index, version)}},
                 {"kind": "carry", "values": carry})

    @staticmethod
    def _carry_id(index: str, version: tuple) -> str:
        return f"carry|{index}|{version[0]}/{version[1]}"

    def _carry(self, index: str, version: tuple) -> dict | None:
        if (index, version) in self.carries:
            return self.carries[(index, version)]
        r = self.client.request("GET", f"/{STATE_INDEX}/_doc/{urlq(self._carry_id(index, version))}", ok=(404,))
        if r.get("found"):
            self.carries[(index, version)] = r["_source"]["values"]
            return r["_source"]["values"]
        return None

    def _doc(self, index: str, _id: str) -> dict | None:
        """The document as it stands: this bulk's pending write, else OpenSearch's (real time)."""
        if (index, _id) in self.pending:
            return self.pending[(index, _id)]
        if (index, _id) in self.fetched:
            return self.fetched[(index, _id)]
        r = self.client.request("GET", f"/{index}/_doc/{urlq(_id)}", ok=(404,))
        self.stats["reads"] += 1
        return r["_source"] if r.get("found") else None

    def _op(self, action: dict, source: dict | None = None) -> None:
        self.ops.append(json.dumps(action, ensure_ascii=False))
        if source is not None:
            self.ops.append(json.dumps(source, ensure_ascii=False, allow_nan=False))

    def truncate(self, t: TableSink, version: tuple) -> None:
        self.flush()
        c, ch = version
        self.client.request("POST", f"/{t.index}/_refresh")
        older = {"bool": {"should": [
            {"range": {f"{META}.commit_lsn": {"lt": c}}},
            {"bool": {"filter": [{"term": {f"{META}.commit_lsn": c}}, {"range": {f"{META}.change_lsn": {"lt": ch}}}]}}],
            "minimum_should_match": 1}}
        # the ids of the older documents, then one bulk of deletes, each versioned by the
        # truncate's commit LSN (external_gte: a document written since is left alone)
        ids, body = [], {"size": 1000, "query": older, "_source": False, "sort": ["_doc"]}
        r = self.client.request("POST", f"/{t.index}/_search?scroll=1m", body)
        while r["hits"]["hits"]:
            ids += [h["_id"] for h in r["hits"]["hits"]]
            r = self.client.request("POST", "/_search/scroll", {"scroll": "1m", "scroll_id": r["_scroll_id"]})
        self.client.request("DELETE", "/_search/scroll", {"scroll_id": r["_scroll_id"]}, ok=(404,))
        for _id in ids:
            self._op({"delete": {"_index": t.index, "_id": _id, "version": c, "version_type": "external_gte"}})
        self.stats["truncated_docs"] += len(ids)
        self.flush()
        self.stats["t"] += 1
        if version > self.floors.get(t.index, (0, 0)):
            self.floors[t.index] = version
            self.client.request("PUT", f"/{STATE_INDEX}/_doc/floor|{urlq(t.index)}?refresh=false",
                                {"kind": "floor", "version": list(version)})

    def flush(self) -> None:
        """Sends the pending bulk request; on success commits the offsets of what it held."""
        if self.ops:
            body = "\n".join(self.ops) + "\n"
            for attempt in range(5):
                try:
                    r = self.client.request("POST", "/_bulk", ndjson=body)
                    break
                except (OSError, OpenSearchError):
                    if attempt == 4:
                        raise
                    time.sleep(0.5 * (attempt + 1))
            for item in r["items"]:
                (what, res), = item.items()
                st = res.get("status", 500)
                if st < 300:
                    continue
                if st == 409 and what == "create":  # a key change's carry, stored already
                    self.stats["carry_exists"] += 1
                elif st == 409:                     # a newer version is there: stale or replayed
                    self.stats["stale"] += 1
                elif st == 404 and what == "delete":
                    pass
                else:
                    raise RuntimeError(f"bulk {what} of {res.get('_index')}/{res.get('_id')}: {res}")
            self.stats["bulks"] += 1
            self.ops = []
        self.pending.clear()
        self.fetched.clear()
        self._commit()

    def _commit(self) -> None:
        from confluent_kafka import TopicPartition

        todo = [TopicPartition(t, p, o) for (t, p), o in self.processed.items() if self.committed.get((t, p)) != o]
        if todo:
            self.consumer.commit(offsets=todo, asynchronous=False)
            with self.lock:
                for tp in todo:
                    self.committed[(tp.topic, tp.partition)] = tp.offset

    def wait_consumed(self, bootstrap: str, timeout: float = 120) -> float:
        """Until the sink has committed every partition of its topics up to the end."""
        from confluent_kafka import Consumer, TopicPartition

        t0 = time.monotonic()
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "walship-opensearch-peek"})
        try:
            md = c.list_topics(timeout=10)
            ends = {}
            for topic in self.tables:
                for p in md.topics[topic].partitions:
                    ends[(topic, p)] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        finally:
            c.close()
        while True:
            self.check()
            with self.lock:
                behind = {tp: (self.committed.get(tp, 0), e) for tp, e in ends.items() if e > 0
                          and self.committed.get(tp, 0) < e}
            if not behind:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"the OpenSearch sink did not consume everything: {behind}; "
                                   f"waiting heads: {self.stats['waits']}")
            time.sleep(0.1)


def urlq(s: str) -> str:
    import urllib.parse
    return urllib.parse.quote(s, safe="")


# ---- the comparison with PostgreSQL ---------------------------------------------------------------

def render(c: Column, v):
    """A document value in the text forms of workload.PG_EXPR (see compare_rows)."""
    if v is None:
        return None
    k = workload.kind(c)
    if k == "array":
        return json.dumps([_render_elem(c.elem, x) for x in v])
    if k == "timestamp":
        return v.replace("T", " ")
    if k == "timestamptz":
        return v.rstrip("Z").replace("T", " ")
    if k == "bytea":
        return base64.b64decode(v).hex()
    if k == "float":
        return v if isinstance(v, str) else repr(float(v))
    if k == "bool":
        return "true" if v else "false"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _render_elem(t: str, x):
    # array_to_json's element forms: numbers, strings, booleans, hex for bytea
    if x is None:
        return None
    if t == "bytea":
        return "\\x" + base64.b64decode(x).hex()
    if isinstance(x, list):          # a multi-dimensional array: nested lists
        return [_render_elem(t, y) for y in x]
    if t in ("timestamp", "timestamptz"):
        return x.rstrip("Z")
    return x


def os_rows(client: OpenSearchClient, t: TableSink) -> list[tuple]:
    rows = []
    for h in client.all_docs(t.index):
        s = h["_source"]
        rows.append(tuple(render(c, s.get(c.name)) for c in t.columns))
    return rows


def compare(pg, client: OpenSearchClient, schema: str, t: TableSink, table: str) -> tuple[int, int, list[str]]:
    """(rows, values compared, differences) of one table: OpenSearch's index against
    PostgreSQL's table; also every document's _id must be its key's."""
    diffs = []
    keys = [i for i, c in enumerate(t.columns) if c.is_key]
    docs = client.all_docs(t.index)
    for h in docs:
        s = h["_source"]
        want = doc_id(tuple(s.get(t.columns[i].name) for i in keys))
        if h["_id"] != want:
            diffs.append(f"{table}: document _id {h['_id']!r} holds key {want!r}")
    rows = [tuple(render(c, h["_source"].get(c.name)) for c in t.columns) for h in docs]
    r, v, d = workload.compare_rows(table, t.columns, workload.pg_rows(pg, schema, table, t.columns), rows,
                                    "OpenSearch")
    return r, v, diffs + d


def side_by_side(pg, client: OpenSearchClient, schema: str, t: TableSink, table: str, limit: int = 10) -> str:
    """The first rows of PostgreSQL's table and the documents of the same keys, for people."""
    out = workload.pg_side(pg, schema, table, t.columns, limit)
    keys = [c for c in t.columns if c.is_key]
    sel = ", ".join(f'"{c.name}"::text' for c in keys)
    with pg.connect() as conn:   # the keys of the rows pg_side shows, in its order
        shown = conn.execute(f'SELECT {sel} FROM "{schema}"."{table}" ORDER BY '
                             f'{", ".join(str(i + 1) for i in range(len(keys)))} LIMIT {limit}').fetchall()
    ids = [doc_id(tuple(int(v) if c.typname in INT_TYPES else v for c, v in zip(keys, r))) for r in shown]
    docs = client.request("POST", f"/{t.index}/_mget", {"ids": ids})["docs"] if ids else []
    out.append(f"-- OpenSearch index {t.index}, the same keys (_id | columns)")
    for h in docs:
        s = h.get("_source")
        if s is None:
            out.append(f"{h['_id']} | (no document)")
            continue
        vals = [f"<{len(base64.b64decode(s[c.name]))} bytes>" if c.typname == "bytea" and s.get(c.name)
                else workload.cut(json.dumps(s[c.name]) if isinstance(s.get(c.name), bool) else s.get(c.name))
                for c in t.columns]
        out.append(f"{h['_id']} | " + " | ".join(vals))
    return "\n".join(out)


if __name__ == "__main__":
    # python3 pipelines/opensearch/walship_opensearch.py fetch: warm the cache (jars, the
    # compiled main class), as scripts/install-deps.sh does
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: walship_opensearch.py fetch")
    jars, classes = fetch_jars()
    print(f"opensearch: {len(list(jars.glob('*.jar')))} jars in {jars}, main class in {classes}")
