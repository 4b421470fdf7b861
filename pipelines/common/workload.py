"""The pipelines' workload, and the row-by-row, column-by-column comparison of a target's
tables with PostgreSQL's. Shared by every pipeline (pipelines/<target>/run.py, the one
command) and their integration tests.

Two tables in one schema:

- ``items``: every type the pipeline maps (integers, ``numeric(20,6)`` and unconstrained
  ``numeric``, ``double precision`` with NaN and infinities, boolean, varchar, a large
  ``text`` and a large ``bytea`` that PostgreSQL TOASTs, ``jsonb``, ``uuid``, ``date``,
  ``timestamp``, ``timestamptz``, ``text[]``, ``integer[]``), NULLs in every nullable
  column; rows before the stream (its snapshot), inserts, updates that leave the TOAST
  columns alone, updates that set them, deletes, key changes (chains of them, without
  touching the TOAST columns in between), several changes of one row in one transaction;
- ``kv``: a composite text key, TRUNCATEd and refilled every round.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import math
import random
import uuid

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE {s}.items (
    id       bigint PRIMARY KEY,
    qty      integer,
    small    smallint,
    price    numeric(20,6),
    amount   numeric,
    ratio    double precision,
    flag     boolean,
    name     varchar(40),
    note     text,
    blob     bytea,
    doc      jsonb,
    uid      uuid,
    born     date,
    created  timestamp,
    updated  timestamptz,
    tags     text[],
    nums     integer[]
);
ALTER TABLE {s}.items ALTER COLUMN note SET STORAGE EXTERNAL;
ALTER TABLE {s}.items ALTER COLUMN blob SET STORAGE EXTERNAL;
CREATE TABLE {s}.kv (ns text, k text, v bigint, PRIMARY KEY (ns, k));
"""

TABLES = ("items", "kv")
COLUMNS = ("id", "qty", "small", "price", "amount", "ratio", "flag", "name", "note", "blob", "doc",
           "uid", "born", "created", "updated", "tags", "nums")


def _big_text(rng: random.Random, n: int = 3000) -> str:
    # random words: TOASTed (storage EXTERNAL: out of line, uncompressed, above ~2 kB)
    return " ".join(rng.choice(["alpha", "beta", "gamma", "é", "ß", "'q'", '"dq"', "\\bs", "日本"])
                    + str(rng.randrange(10**6)) for _ in range(n // 6))


def _row(rng: random.Random, id_: int, nulls: bool = False) -> dict:
    if nulls:
        return {c: None for c in COLUMNS} | {"id": id_}
    amounts = ["3.14159265358979323846264338327950288", "-0.000001", "0.00000000000000000001",
               "123456789012345678901234567890.5", "0", "-42", "1.500"]
    ratios = [0.1, 1e300, -2.5e-308, 5e-324, float("nan"), float("inf"), float("-inf"), -0.0, 1 / 3]
    tags = [["a", "with,comma", None, "", 'quote"d', "back\\slash", "{brace}", "NULL", " sp "],
            [], ["日本", "é"], [None, "z"]]
    return {
        "id": id_,
        "qty": rng.randrange(-2**31, 2**31),
        "small": rng.randrange(-2**15, 2**15),
        "price": decimal.Decimal(rng.randrange(-10**20, 10**20)) / 10**6,
        "amount": decimal.Decimal(rng.choice(amounts)),
        "ratio": rng.choice(ratios) if rng.random() < 0.4 else rng.uniform(-1e6, 1e6),
        "flag": rng.random() < 0.5,
        "name": f"item {id_} ü",
        "note": _big_text(rng) if rng.random() < 0.8 else "short",
        "blob": rng.randbytes(4000) if rng.random() < 0.7 else b"\x00\x01\xff",
        "doc": json.dumps({"a": [1, "x", None], "n": id_, "s": "é\"\\", "f": 1.5}),
        "uid": uuid.UUID(int=rng.getrandbits(128)),
        "born": dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(55000)),
        "created": dt.datetime(1901, 1, 1) + dt.timedelta(microseconds=rng.randrange(10**16)),
        "updated": dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
        + dt.timedelta(microseconds=rng.randrange(-10**15, 10**15)),
        "tags": rng.choice(tags + [[_big_text(rng, 60), "x"], None]),
        "nums": rng.choice([[1, None, -3], [], [2**31 - 1, -2**31], None]),
    }


def _insert(cur, s: str, rows: list[dict]) -> None:
    cols = ", ".join(COLUMNS)
    ph = ", ".join(["%s"] * len(COLUMNS))
    cur.executemany(f"INSERT INTO {s}.items ({cols}) VALUES ({ph})",
                    [[r[c] for c in COLUMNS] for r in rows])


def initial(pg, s: str, n: int = 300) -> None:
    """The schema and the rows the stream's snapshot sends."""
    from psycopg.types.json import Jsonb  # noqa: F401  (jsonb as text is fine)

    pg.execute(SCHEMA.format(s=s))
    rng = random.Random(f"{s}-initial")
    with pg.connect() as conn, conn.cursor() as cur:
        _insert(cur, s, [_row(rng, i, nulls=(i % 37 == 0)) for i in range(1, n + 1)])
        cur.executemany(f"INSERT INTO {s}.kv VALUES (%s, %s, %s)",
                        [(f"ns{i % 3}", f"k{i}", i) for i in range(50)])


def round_(pg, s: str, r: int) -> int:
    """One round of changes (r = 1, 2, ...); returns the number of statements run."""
    rng = random.Random(f"{s}-round-{r}")
    base = 1000 * r
    stmts = 0
    with pg.connect() as conn:
        ids = [x[0] for x in conn.execute(f"SELECT id FROM {s}.items ORDER BY id")]
        with conn.cursor() as cur:
            # inserts (some all-NULL)
            _insert(cur, s, [_row(rng, base + i, nulls=(i % 11 == 0)) for i in range(100)])
            stmts += 100
        # updates that leave note, blob and tags (TOASTed) alone
        for i in rng.sample(ids, 60):
            conn.execute(f"UPDATE {s}.items SET qty = %s, price = %s, updated = %s, ratio = %s WHERE id = %s",
                         [rng.randrange(1000), decimal.Decimal(rng.randrange(10**9)) / 1000,
                          dt.datetime(2030, 5, 6, 7, 8, 9, rng.randrange(10**6), tzinfo=dt.timezone.utc),
                          rng.uniform(-1, 1), i])
            stmts += 1
        # updates to NULL and back, and updates that set a TOASTed value
        for i in rng.sample(ids, 20):
            conn.execute(f"UPDATE {s}.items SET name = NULL, doc = NULL, uid = NULL, nums = NULL, "
                         "born = NULL, created = NULL WHERE id = %s", [i])
            stmts += 1
        for i in rng.sample(ids, 15):
            conn.execute(f"UPDATE {s}.items SET note = %s, blob = %s WHERE id = %s",
                         [_big_text(rng), rng.randbytes(3000), i])
            stmts += 1
        for i in rng.sample(ids, 5):
            conn.execute(f"UPDATE {s}.items SET note = NULL, tags = '{{}}' WHERE id = %s", [i])
            stmts += 1
        # deletes
        left = sorted(set(ids))
        gone = set(rng.sample(left, 20))
        conn.execute(f"DELETE FROM {s}.items WHERE id = ANY(%s)", [sorted(gone)])
        stmts += 1
        left = [i for i in left if i not in gone]
        # key changes that leave the TOAST columns alone, alone and in chains
        movers = rng.sample(left, 15)
        off = 10**7 * r   # new keys of this round: unique whatever earlier rounds did
        for i in movers:
            conn.execute(f"UPDATE {s}.items SET id = id + %s WHERE id = %s", [off, i])
            stmts += 1
        # an update between two key changes, and a second key change (a chain)
        for i in movers[:6]:
            conn.execute(f"UPDATE {s}.items SET small = 7 WHERE id = %s", [i + off])
            conn.execute(f"UPDATE {s}.items SET id = id + %s WHERE id = %s", [off // 10, i + off])
            stmts += 2
        # one transaction: a key change, an update of the new key, an insert, a delete
        with conn.transaction():
            a, b = movers[6] + off, movers[7] + off
            conn.execute(f"UPDATE {s}.items SET id = -id WHERE id = %s", [a])
            conn.execute(f"UPDATE {s}.items SET flag = NOT coalesce(flag, false) WHERE id = %s", [-a])
            conn.execute(f"DELETE FROM {s}.items WHERE id = %s", [b])
            _insert(conn.cursor(), s, [_row(rng, b)])   # same key again, other values
            stmts += 4
        # a key change and a change of the TOASTed value in one UPDATE
        c = movers[8] + off
        conn.execute(f"UPDATE {s}.items SET id = id + %s, note = 'moved ' || id WHERE id = %s", [off // 100, c])
        stmts += 1
        # key changes onto keys deleted above: the new incarnation must not see the old one's values
        dead_keys = sorted(gone)[:3]
        toasted = [x[0] for x in conn.execute(   # rows whose note and blob are out of line
            f"SELECT id FROM {s}.items WHERE id = ANY(%s) AND length(note) > 2000 AND length(blob) > 2000 "
            "ORDER BY id LIMIT 3", [[i + off for i in movers[9:]]])]
        assert len(toasted) == 3, toasted
        for dead, i in zip(dead_keys, toasted):
            conn.execute(f"UPDATE {s}.items SET id = %s WHERE id = %s", [dead, i])
            stmts += 1
        # ... and on again from there: the value is two key changes back, behind a delete
        conn.execute(f"UPDATE {s}.items SET id = id + %s WHERE id = %s", [7 * off, dead_keys[0]])
        stmts += 1
        # kv: truncate and refill
        conn.execute(f"INSERT INTO {s}.kv VALUES ('r{r}', 'before-truncate', 1)")
        conn.execute(f"TRUNCATE {s}.kv")
        conn.execute(f"INSERT INTO {s}.kv SELECT 'ns' || (g % 4), 'k' || g, g * {r} FROM generate_series(1, 40) g")
        conn.execute(f"DELETE FROM {s}.kv WHERE k IN ('k1', 'k2')")
        conn.execute(f"UPDATE {s}.kv SET v = -v WHERE k = 'k3'")
        conn.execute(f"UPDATE {s}.kv SET ns = 'moved' WHERE k = 'k4'")  # a key change
        stmts += 6
    return stmts


# ---- the tables' columns -------------------------------------------------------------------

COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, a.atttypmod,
       t.typlen, a.attnotnull, coalesce(et.typname, ''), t.typcategory,
       coalesce(a.attnum = ANY(i.indkey), false)
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
  LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
 WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""


@dataclasses.dataclass
class PgColumn:
    """A column as PostgreSQL's catalog describes it."""
    name: str
    pg_type: str          # format_type()
    typname: str          # pg_type.typname (for arrays: _int4, ...)
    typmod: int
    typlen: int
    not_null: bool
    elem: str             # element typname for arrays, else ''
    is_key: bool

    @property
    def is_array(self) -> bool:
        return bool(self.elem)

    @property
    def toastable(self) -> bool:
        """Can hold an unchanged TOAST value (any varlena column, key columns aside)."""
        return self.typlen == -1 and not self.is_key


def table_columns(pg_conn, qualified: str, cls=PgColumn) -> list:
    """The columns of a table (``cls``: PgColumn or a subclass with a target's types);
    the table must have a primary key, which the pipelines key rows by."""
    rows = pg_conn.execute(COLUMNS_SQL, [qualified]).fetchall()
    if not rows:
        raise ValueError(f"table {qualified} has no columns")
    cols = [cls(name=r[0], pg_type=r[1], typname=r[2], typmod=r[3], typlen=r[4],
                not_null=r[5], elem=r[6] if r[7] == "A" else "", is_key=r[8]) for r in rows]
    if not any(c.is_key for c in cols):
        raise ValueError(f"table {qualified} has no primary key: the pipeline keys rows by it")
    return cols


# ---- the comparison ------------------------------------------------------------------------
#
# Both sides are rendered as text (PostgreSQL in its SQL, PG_EXPR; a target in its own SQL
# or in Python), then compared per column in Python with the type's equality (kind()):
# numerics as decimal.Decimal (exact; an unconstrained numeric as its text, scale
# included), floats as IEEE doubles (NaN equal to NaN, -0 apart from 0, the shortest texts
# of both sides read back), booleans, timestamps as text to the microsecond
# ('YYYY-MM-DD HH:MM:SS.ffffff', timestamptz in UTC), bytea as lower-case hex, arrays as
# JSON lists, everything else (jsonb, uuid, text, dates, ...) as PostgreSQL's text.

PG_EXPR = {
    "timestamp": "to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')",
    "timestamptz": "to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
    "bytea": "encode({c}, 'hex')",
    "array": "array_to_json({c})::text",
}


def kind(col) -> str:
    """How a column's values are compared (see above)."""
    if col.is_array:
        return "array"
    t = col.typname
    if t in ("float4", "float8"):
        return "float"
    if t == "numeric":
        return "numeric" if col.typmod >= 0 else "text"   # unconstrained: the exact text
    if t in ("timestamp", "timestamptz", "bytea", "bool"):
        return t
    return "text"


def _float(x: str) -> float:
    return float({"Infinity": "inf", "-Infinity": "-inf", "NaN": "nan"}.get(x, x))


_BOOL = {"t": True, "f": False, "true": True, "false": False, "True": True, "False": False, "1": True, "0": False}


def equal(k: str, a, b) -> bool:
    """Whether two rendered values of kind ``k`` are the same value."""
    if a is None or b is None:
        return a is None and b is None
    if k == "numeric":
        return decimal.Decimal(a) == decimal.Decimal(b)
    if k == "float":
        x, y = _float(a), _float(b)
        return (math.isnan(x) and math.isnan(y)) or (x == y and math.copysign(1, x) == math.copysign(1, y))
    if k == "bool":
        return _BOOL[str(a)] == _BOOL[str(b)]
    if k == "array":
        return json.loads(a) == json.loads(b)
    return a == b


def pg_rows(pg, schema: str, table: str, columns) -> list[tuple]:
    """Every row of a PostgreSQL table, each column rendered for the comparison."""
    sel = ", ".join(PG_EXPR.get(kind(c), "{c}::text").format(c=f'"{c.name}"') for c in columns)
    order = ", ".join(f'"{c.name}"' for c in columns if c.is_key)
    with pg.connect() as conn:
        return [tuple(r) for r in conn.execute(f'SELECT {sel} FROM "{schema}"."{table}" ORDER BY {order}')]


def compare_rows(table: str, columns, pg: list[tuple], target: list[tuple],
                 target_name: str = "the target") -> tuple[int, int, list[str]]:
    """(rows compared, values compared, differences) of one table: ``pg`` and ``target``
    hold the rows with the columns in ``columns``' order, rendered as described above
    (key columns as PostgreSQL's text on both sides: their matching is their comparison)."""
    kinds = [kind(c) for c in columns]
    idx = [i for i, c in enumerate(columns) if c.is_key]

    def key(row):
        return tuple(row[i] for i in idx)

    pk = {key(r): r for r in pg}
    tk = {key(r): r for r in target}
    diffs = []
    for k in sorted(set(pk) - set(tk), key=str):
        diffs.append(f"{table} {k}: in PostgreSQL, not in {target_name}")
    for k in sorted(set(tk) - set(pk), key=str):
        diffs.append(f"{table} {k}: in {target_name}, not in PostgreSQL")
    if len(target) != len(tk):
        diffs.append(f"{table}: {target_name} has {len(target) - len(tk)} duplicate keys")
    values = 0
    for k in sorted(set(pk) & set(tk), key=str):
        a, b = pk[k], tk[k]
        for i, c in enumerate(columns):
            values += 1
            if not equal(kinds[i], a[i], b[i]):
                diffs.append(f"{table} {k} {c.name}: PostgreSQL {str(a[i])[:80]!r} "
                             f"{target_name} {str(b[i])[:80]!r}")
    return len(pk), values, diffs


def cut(v) -> str:
    """A value for people: NULL, bytes as their length, long texts cut."""
    if v is None:
        return "NULL"
    if isinstance(v, (bytes, memoryview)):
        return f"<{len(bytes(v))} bytes>"
    v = str(v)
    return v if len(v) <= 24 else v[:20] + f"…({len(v)})"


def pg_side(pg, schema: str, table: str, columns, limit: int = 10) -> list[str]:
    """The first rows of a PostgreSQL table, for people (long values cut)."""
    keys = ", ".join(f'"{c.name}"' for c in columns if c.is_key)
    sel = ", ".join(f"'<' || length(\"{c.name}\") || ' bytes>'" if c.typname == "bytea" else f'"{c.name}"::text'
                    for c in columns)
    with pg.connect() as conn:
        pr = conn.execute(f'SELECT {sel} FROM "{schema}"."{table}" ORDER BY {keys} LIMIT {limit}').fetchall()
    out = [f"-- PostgreSQL {schema}.{table}: " + " | ".join(c.name for c in columns)]
    return out + [" | ".join(cut(v) for v in r) for r in pr]
