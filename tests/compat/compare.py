"""Record-by-record comparison of Debezium's and walship's Kafka records.

- **Parsing** keeps what a byte comparison would see: numbers keep their text (``1.0``
  is not ``1``, ``1.0E21`` is not ``1e21``), object keys keep their order (reported as a
  difference of its own when it differs), duplicate keys are reported.
- **Normalization** is allowed_differences.py, nothing else.
- **Pairing**: per topic (walship's prefix mapped to Debezium's) and partition, the
  records of each engine in offset order, aligned by what identifies a record: the
  change's LSN and ``op`` (``source.lsn``: both engines read the same WAL, so the same
  change has the same LSN); a tombstone by the LSN of the record before it; a
  transaction event by its status and xid. Records that align are compared field by
  field; the others are reported as present in one engine only.
- **Bytes**: JsonConverter writes compact JSON (Jackson's escapes). If Debezium's bytes
  are exactly that form of their own content and walship's are not, that is reported
  too, so that equal content plus no byte report means byte-identical records (up to
  the allow-list).

``compare_pair(records, focus=None)`` → ``Comparison`` with ``.differences`` and a
``.report()`` grouped by kind.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import json
import re
from typing import Any, Callable, Iterable

import allowed_differences as allowed

_MESSAGE_COLLECTION = re.compile(allowed.MESSAGE_COLLECTION)


# --- JSON with number texts and key order --------------------------------------------
class Num:
    """A JSON number, kept as its text."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __eq__(self, other):
        return isinstance(other, Num) and other.text == self.text

    def __hash__(self):
        return hash(self.text)

    def __repr__(self):
        return self.text

    def value(self):
        try:
            return int(self.text)
        except ValueError:
            return float(self.text)

    def is_integer(self) -> bool:
        return self.text.lstrip("-").isdigit()


class Placeholder:
    """What an allowed difference is replaced with (on both sides)."""

    __slots__ = ("label",)

    def __init__(self, label: str):
        self.label = label

    def __eq__(self, other):
        return isinstance(other, Placeholder) and other.label == self.label

    def __hash__(self):
        return hash(self.label)

    def __repr__(self):
        return f"<{self.label}>"


class Text(str):
    """Text a report shows as it is (not as a JSON string)."""


class _Absent:
    def __repr__(self):
        return "<absent>"


ABSENT = _Absent()
DUPLICATE_KEYS = "<duplicate keys>"


def _object(pairs):
    d = {}
    dups = []
    for k, v in pairs:
        if k in d:
            dups.append(k)
        d[k] = v
    if dups:
        d[DUPLICATE_KEYS] = dups
    return d


def parse_json(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"), parse_int=Num, parse_float=Num,
                      parse_constant=Num, object_pairs_hook=_object)


_JACKSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                    "\r": "\\r", "\t": "\\t"}


def _jstr(s: str) -> str:
    out = ['"']
    for ch in s:
        e = _JACKSON_ESCAPES.get(ch)
        if e is not None:
            out.append(e)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical(tree: Any) -> str:
    """``tree`` written the way JsonConverter (Jackson) writes it: compact, UTF-8,
    Jackson's escapes, numbers as parsed."""
    if tree is None:
        return "null"
    if tree is True:
        return "true"
    if tree is False:
        return "false"
    if isinstance(tree, Num):
        return tree.text
    if isinstance(tree, str):
        return _jstr(tree)
    if isinstance(tree, list):
        return "[" + ",".join(canonical(x) for x in tree) + "]"
    if isinstance(tree, dict):
        return "{" + ",".join(f"{_jstr(k)}:{canonical(v)}" for k, v in tree.items()
                              if k != DUPLICATE_KEYS) + "}"
    raise TypeError(f"not JSON: {tree!r}")


def render(v: Any, limit: int = 160) -> str:
    """A value, compactly, for a report line."""
    if v is ABSENT or isinstance(v, Placeholder):
        s = repr(v)
    elif isinstance(v, Text):
        s = str(v)
    elif isinstance(v, bytes):
        try:
            s = "b" + json.dumps(v.decode("utf-8"), ensure_ascii=False)
        except UnicodeDecodeError:
            s = repr(v)
    else:
        try:
            s = canonical(v)
        except TypeError:
            s = repr(v)
    if len(s) > limit:
        s = s[: limit - 25] + f"…({len(s)} chars)…" + s[-10:]
    return s


def _copy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_copy(v) for v in tree]
    return tree


# --- tree diff ---------------------------------------------------------------------------
def _is_field_list(v: Any) -> bool:
    return (isinstance(v, list) and v and all(isinstance(x, dict) and isinstance(x.get("field"), str)
                                              for x in v)
            and len({x["field"] for x in v}) == len(v))


def diff_trees(a: Any, b: Any, path: str) -> Iterable[tuple[str, Any, Any]]:
    """(path, a's value, b's value) for every place where ``a`` and ``b`` differ.
    Struct schemas' ``fields`` lists are matched by field name (``fields[after]``),
    their order compared separately (``... (order)``), as is the key order of objects."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(a.keys()) + [k for k in b.keys() if k not in a]
        for k in keys:
            yield from diff_trees(a.get(k, ABSENT), b.get(k, ABSENT), f"{path}.{k}")
        common_a = [k for k in a if k in b]
        common_b = [k for k in b if k in a]
        if common_a != common_b:
            yield f"{path} (key order)", list(a.keys()), list(b.keys())
        return
    if _is_field_list(a) and _is_field_list(b):
        da = {x["field"]: x for x in a}
        db = {x["field"]: x for x in b}
        names = [x["field"] for x in a] + [x["field"] for x in b if x["field"] not in da]
        for n in names:
            yield from diff_trees(da.get(n, ABSENT), db.get(n, ABSENT), f"{path}[{n}]")
        oa = [n for n in da if n in db]
        ob = [n for n in db if n in da]
        if oa != ob:
            yield f"{path} (order)", [x["field"] for x in a], [x["field"] for x in b]
        return
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b) or any(isinstance(x, (dict, list)) for x in a + b):
            if len(a) != len(b):
                yield path, a, b
                return
            for i, (x, y) in enumerate(zip(a, b)):
                yield from diff_trees(x, y, f"{path}[{i}]")
            return
        if a != b:
            yield path, a, b
        return
    if type(a) is not type(b) or a != b:
        yield path, a, b


# --- records ------------------------------------------------------------------------------
@dataclasses.dataclass
class Record:
    engine: str                  # "debezium" | "walship"
    topic: str                   # Debezium's topic name (walship's prefix mapped)
    raw_topic: str
    partition: int
    offset: int
    key_raw: bytes | None
    value_raw: bytes | None
    headers: list[tuple[str, bytes | None]]
    key: Any = None              # normalized trees (None for a null key/value)
    value: Any = None
    key_parsed: Any = None       # as parsed, before normalization
    value_parsed: Any = None
    errors: list[str] = dataclasses.field(default_factory=list)
    align: tuple = ()

    @property
    def where(self) -> str:
        return f"{self.raw_topic}#{self.offset}"

    @property
    def payload(self) -> Any:
        v = self.value
        if isinstance(v, dict) and "payload" in v and "schema" in v:
            return v["payload"]
        return v

    def describe(self) -> str:
        """op, key and LSN in a few words."""
        p = self.payload
        key = self.key.get("payload") if isinstance(self.key, dict) else self.key
        if self.value_raw is None:
            what = "tombstone"
        elif isinstance(p, dict) and "op" in p:
            what = f"op={render(p.get('op'))}"
        elif isinstance(p, dict) and "status" in p:
            what = f"{p.get('status')} id={render(p.get('id'))}"
        else:
            what = "value"
        lsn = ""
        if isinstance(p, dict) and isinstance(p.get("source"), dict):
            lsn = f" lsn={render(p['source'].get('lsn'))}"
        return Text(f"{self.where} {what} key={render(key, 60)}{lsn}")


def _lsn_of(rec: Record) -> str | None:
    p = rec.payload
    if isinstance(p, dict) and isinstance(p.get("source"), dict):
        lsn = p["source"].get("lsn")
        return render(lsn)
    return None


def _map_prefix_in_schema(tree: Any, old: str, new: str) -> None:
    if isinstance(tree, dict):
        name = tree.get("name")
        if isinstance(name, str) and (name == old or name.startswith(old + ".")):
            tree["name"] = new + name[len(old):]
        for v in tree.values():
            _map_prefix_in_schema(v, old, new)
    elif isinstance(tree, list):
        for v in tree:
            _map_prefix_in_schema(v, old, new)


def _intended(rec: Record) -> None:
    """The intended differences of allowed_differences.py, by table and column."""
    table = rec.topic.rsplit(".", 1)[-1]
    tree = rec.value
    if not isinstance(tree, dict):
        return
    payload = tree.get("payload") if "schema" in tree else tree
    rows = [payload.get(r) for r in ("before", "after")] if isinstance(payload, dict) else []
    rows = [r for r in rows if isinstance(r, dict)]
    schema = tree.get("schema") if "schema" in tree else None
    structs = []
    if isinstance(schema, dict):
        structs = [f for f in schema.get("fields", []) if isinstance(f, dict)
                   and f.get("field") in ("before", "after")]
    for (t, column), rule in allowed.DROPPED_COLUMNS.items():
        if t != table or rec.engine != "walship":
            continue
        for row in rows:
            row.pop(column, None)
        for st in structs:
            st["fields"] = [f for f in st.get("fields", []) if f.get("field") != column]
    for (t, column), rule in allowed.KEPT_COLUMNS.items():
        if t == table:
            for row in rows:
                if column in row:
                    row[column] = Placeholder(rule)
    for (t, column), values in allowed.DATE_INFINITIES.items():
        if t == table:
            for row in rows:
                v = row.get(column)
                if isinstance(v, Num) and v.text in values:
                    row[column] = Placeholder(f"date-infinity {values[v.text]}")
    for row in rows:
        for column, v in row.items():
            if isinstance(v, Num) and v.text.upper() in ("4.9E-324", "5.0E-324"):
                row[column] = Placeholder("double-min-subnormal")


def normalize(rec: Record, prefix_from: str | None, prefix_to: str | None) -> None:
    """Apply allowed_differences.py to ``rec.key``/``rec.value``/``rec.headers``."""
    for part in ("key", "value"):
        tree = getattr(rec, part)
        if prefix_from and isinstance(tree, dict):
            if "schema" in tree:
                _map_prefix_in_schema(tree["schema"], prefix_from, prefix_to)
            payload = tree.get("payload") if "schema" in tree else tree
            src = payload.get("source") if isinstance(payload, dict) else None
            if isinstance(src, dict) and src.get("name") == prefix_from:
                src["name"] = prefix_to
    p = rec.payload
    if isinstance(p, dict) and "op" in p:
        for f in allowed.ENVELOPE_TIME_FIELDS:  # rule envelope-processing-time
            v = p.get(f, ABSENT)
            if isinstance(v, Num) and v.is_integer():
                p[f] = Placeholder("envelope-processing-time")
        src = p.get("source")
        if isinstance(src, dict) and isinstance(src.get("version"), str):  # rule source-version
            src["version"] = Placeholder("source-version")
    if isinstance(p, dict) and isinstance(p.get("data_collections"), list):
        for dc in p["data_collections"]:  # rule debezium-message-collection-hash
            name = dc.get("data_collection") if isinstance(dc, dict) else None
            if isinstance(name, str) and _MESSAGE_COLLECTION.fullmatch(name):
                dc["data_collection"] = _MESSAGE_COLLECTION.sub(r"\1@<hash>", name)
        # rule transaction-data-collections-order
        p["data_collections"].sort(key=lambda dc: render(dc.get("data_collection"))
                                   if isinstance(dc, dict) else render(dc))
    _intended(rec)
    headers = []
    for name, value in rec.headers:
        if rec.engine == "walship" and name in allowed.WALSHIP_ONLY_HEADERS:
            continue  # rule walship-headers
        if name in allowed.MASKED_HEADERS and value is not None:
            value = b"<debezium-run-id>"  # rule debezium-run-id
        if (prefix_from and name == allowed.LOGICAL_NAME_HEADER
                and value == prefix_from.encode()):
            value = prefix_to.encode()  # rule topic-prefix
        headers.append((name, value))
    rec.headers = headers


def make_record(msg, engine: str, prefix_from: str | None = None,
                prefix_to: str | None = None) -> Record:
    topic = msg.topic
    if prefix_from and topic.startswith(prefix_from + "."):
        topic = prefix_to + topic[len(prefix_from):]  # rule topic-prefix
    rec = Record(engine, topic, msg.topic, msg.partition, msg.offset, msg.key, msg.value,
                 list(msg.headers))
    for part in ("key", "value"):
        raw = getattr(rec, f"{part}_raw")
        if raw is None:
            continue
        try:
            tree = parse_json(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            rec.errors.append(f"{part} is not JSON ({e}): {render(raw)}")
            tree = Placeholder(f"unparseable {part}")
        setattr(rec, f"{part}_parsed", tree)
        setattr(rec, part, _copy(tree))
    normalize(rec, prefix_from, prefix_to)
    return rec


def _align_keys(records: list[Record]) -> None:
    prev_lsn: dict[int, str | None] = {}
    for r in records:
        p = r.payload
        if r.value_raw is None:
            r.align = ("tombstone", prev_lsn.get(r.partition))
        elif r.topic.endswith(".transaction") and isinstance(p, dict) and "status" in p:
            xid = str(p.get("id", "")).split(":")[0]
            r.align = ("transaction", render(p.get("status")), xid)
        elif isinstance(p, dict):
            lsn = _lsn_of(r)
            r.align = ("change", lsn, render(p.get("op")))
            prev_lsn[r.partition] = lsn
        else:
            r.align = ("other", r.offset)


# --- differences ------------------------------------------------------------------------------
CATEGORIES = [
    ("records", "records present in one engine only"),
    ("topics", "topics present in one engine only"),
    ("key", "keys"),
    ("value.schema", "value schemas"),
    ("value.payload", "value payloads"),
    ("value", "values (null vs not null)"),
    ("headers", "headers"),
    ("bytes", "JSON bytes (same content, other bytes)"),
    ("partition", "partitions"),
]


@dataclasses.dataclass
class Difference:
    category: str
    path: str
    debezium: Any
    walship: Any
    where: str   # Debezium's record (or walship's, when only walship has one)


@dataclasses.dataclass
class Comparison:
    pair_name: str
    description: str
    differences: list[Difference]
    debezium_count: int
    walship_count: int
    paired: int
    topics: list[str]

    def kinds(self) -> dict[tuple[str, str], list[Difference]]:
        """Differences by (category, path). A row schema is the same struct under
        "before" and "after": its differences count once, as fields[before|after]."""
        groups: dict[tuple[str, str], list[Difference]] = {}
        seen = set()
        for d in self.differences:
            path = d.path
            if path.startswith(("value.schema.fields[before]", "value.schema.fields[after]")):
                path = "value.schema.fields[before|after]" + path.split("]", 1)[1]
                sig = (path, d.where, render(d.debezium), render(d.walship))
                if sig in seen:
                    continue
                seen.add(sig)
            groups.setdefault((d.category, path), []).append(d)
        return groups

    def report(self, examples: int = 3) -> str:
        """Every kind of difference, grouped by category and path, with its distinct
        (Debezium, walship) values and where they were seen."""
        kinds = self.kinds()
        lines = [f"pair {self.pair_name} ({self.description}): "
                 f"{sum(len(v) for v in kinds.values())} difference(s) of {len(kinds)} kind(s); "
                 f"{self.paired} records paired "
                 f"(Debezium {self.debezium_count} records, walship {self.walship_count}) "
                 f"over {len(self.topics)} topics. Normalized, as allowed: "
                 f"{allowed.describe()} (tests/compat/allowed_differences.py)."]
        for cat, title in CATEGORIES:
            cat_kinds = [(k, v) for k, v in kinds.items() if k[0] == cat]
            if not cat_kinds:
                continue
            lines.append(f"== {title} ({len(cat_kinds)} kind(s))")
            for (c, path), diffs in sorted(cat_kinds, key=lambda kv: kv[0][1]):
                if cat in ("records", "topics"):
                    lines.append(f"  {path}  [{len(diffs)}]")
                    for d in diffs[: max(examples, 8)]:
                        side = "debezium" if d.walship is ABSENT else "walship "
                        lines.append(f"      {side} {render(d.debezium if d.walship is ABSENT else d.walship)}")
                    if len(diffs) > max(examples, 8):
                        lines.append(f"      ... {len(diffs) - max(examples, 8)} more")
                    continue
                by_value = collections.OrderedDict()
                for d in diffs:
                    by_value.setdefault((render(d.debezium), render(d.walship)), []).append(d.where)
                lines.append(f"  {path}  [{len(diffs)} record(s), {len(by_value)} distinct]")
                for (dv, wv), wheres in list(by_value.items())[:examples]:
                    at = ", ".join(wheres[:2]) + (f" +{len(wheres) - 2}" if len(wheres) > 2 else "")
                    lines.append(f"      debezium {dv}")
                    lines.append(f"      walship  {wv}    ({at})")
                if len(by_value) > examples:
                    lines.append(f"      ... {len(by_value) - examples} more distinct value(s)")
        return "\n".join(lines)

    def as_json(self) -> list[dict]:
        return [{"category": d.category, "path": d.path, "debezium": render(d.debezium, 2000),
                 "walship": render(d.walship, 2000), "where": d.where} for d in self.differences]


def _short(topic: str) -> str:
    """A topic without its prefix: public.types."""
    return topic.split(".", 1)[1] if "." in topic else topic


def _compare_records(d: Record, w: Record, out: list[Difference]) -> None:
    where = f"{_short(d.topic)}#{d.offset}/#{w.offset}"
    for r in (d, w):
        for e in r.errors:
            out.append(Difference("bytes", f"{r.engine} record not JSON", e if r is d else None,
                                  e if r is w else None, where))
    if d.partition != w.partition:
        out.append(Difference("partition", "partition", d.partition, w.partition, where))
    # key
    if (d.key_raw is None) != (w.key_raw is None):
        out.append(Difference("key", "key", d.key if d.key_raw is not None else None,
                              w.key if w.key_raw is not None else None, where))
    elif d.key_raw is not None:
        for path, a, b in diff_trees(d.key, w.key, "key"):
            out.append(Difference("key", path, a, b, where))
    # value
    if (d.value_raw is None) != (w.value_raw is None):
        out.append(Difference("value", "value", d.value if d.value_raw is not None else None,
                              w.value if w.value_raw is not None else None, where))
    elif d.value_raw is not None:
        for path, a, b in diff_trees(d.value, w.value, "value"):
            cat = ("value.schema" if path.startswith("value.schema") else
                   "value.payload" if path.startswith("value.payload") else "value")
            out.append(Difference(cat, path, a, b, where))
    # headers: by name (all values of a name, in order), then their order
    dh: dict[str, list] = collections.OrderedDict()
    wh: dict[str, list] = collections.OrderedDict()
    for n, v in d.headers:
        dh.setdefault(n, []).append(v)
    for n, v in w.headers:
        wh.setdefault(n, []).append(v)
    for n in list(dh) + [n for n in wh if n not in dh]:
        a = dh.get(n, ABSENT)
        b = wh.get(n, ABSENT)
        if a != b:
            a1 = a[0] if isinstance(a, list) and len(a) == 1 else a
            b1 = b[0] if isinstance(b, list) and len(b) == 1 else b
            out.append(Difference("headers", f"headers[{n}]", a1, b1, where))
    common_d = [n for n in dh if n in wh]
    common_w = [n for n in wh if n in dh]
    if common_d != common_w:
        out.append(Difference("headers", "headers (order)", list(dh), list(wh), where))
    # bytes: Debezium's are JsonConverter's form of their content; are walship's?
    for part in ("key", "value"):
        draw, wraw = getattr(d, f"{part}_raw"), getattr(w, f"{part}_raw")
        dp, wp = getattr(d, f"{part}_parsed"), getattr(w, f"{part}_parsed")
        if draw is None or wraw is None or isinstance(dp, Placeholder) or isinstance(wp, Placeholder):
            continue
        try:
            d_canon = canonical(dp).encode() == draw
            w_canon = canonical(wp).encode()
        except TypeError:
            continue
        if d_canon and w_canon != wraw:
            i = next((k for k in range(min(len(w_canon), len(wraw))) if w_canon[k] != wraw[k]),
                     min(len(w_canon), len(wraw)))
            out.append(Difference("bytes", f"{part} bytes",
                                  "JsonConverter's form: " + w_canon[max(0, i - 30): i + 40].decode(errors="replace"),
                                  "walship's bytes:      " + wraw[max(0, i - 30): i + 40].decode(errors="replace"),
                                  where))


def compare_pair(pair_name: str, description: str, debezium_msgs, walship_msgs, *,
                 dbz_prefix: str, wsh_prefix: str,
                 focus: Callable[[str, str], bool] | None = None) -> Comparison:
    """Compare every record. ``focus(topic, path)``, if given, keeps only the
    differences it accepts (path "records" for a record present in one engine only)."""
    drecs = [make_record(m, "debezium") for m in debezium_msgs]
    wrecs = [make_record(m, "walship", wsh_prefix, dbz_prefix) for m in walship_msgs]
    by_topic: dict[tuple[str, int], tuple[list, list]] = collections.OrderedDict()
    for r in sorted(drecs, key=lambda r: (r.topic, r.partition, r.offset)):
        by_topic.setdefault((r.topic, r.partition), ([], []))[0].append(r)
    for r in sorted(wrecs, key=lambda r: (r.topic, r.partition, r.offset)):
        by_topic.setdefault((r.topic, r.partition), ([], []))[1].append(r)
    diffs: list[Difference] = []
    paired = 0
    dtopics = {r.topic for r in drecs}
    wtopics = {r.topic for r in wrecs}
    for t in sorted(dtopics - wtopics):
        diffs.append(Difference("topics", "topic only in Debezium", t, ABSENT, t))
    for t in sorted(wtopics - dtopics):
        diffs.append(Difference("topics", "topic only in walship", ABSENT, t, t))
    for (topic, _part), (ds, ws) in sorted(by_topic.items()):
        if not ds or not ws:
            continue  # reported as a topic of one engine
        _align_keys(ds)
        _align_keys(ws)
        sm = difflib.SequenceMatcher(None, [r.align for r in ds], [r.align for r in ws],
                                     autojunk=False)
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag == "equal":
                for d, w in zip(ds[i1:i2], ws[j1:j2]):
                    paired += 1
                    found: list[Difference] = []
                    _compare_records(d, w, found)
                    diffs.extend(x for x in found if focus is None or focus(topic, x.path))
                continue
            if focus is not None and not focus(topic, "records"):
                continue
            for d in ds[i1:i2]:
                diffs.append(Difference("records", f"only in Debezium: {_what(d)}",
                                        d.describe(), ABSENT, f"{_short(d.topic)}#{d.offset}/-"))
            for w in ws[j1:j2]:
                diffs.append(Difference("records", f"only in walship: {_what(w)}",
                                        ABSENT, w.describe(), f"{_short(w.topic)}#-/{w.offset}"))
    if focus is not None:
        diffs = [x for x in diffs if x.category != "topics" or focus(x.where, "records")]
    return Comparison(pair_name, description, diffs, len(drecs), len(wrecs), paired,
                      sorted(dtopics | wtopics))


def _what(r: Record) -> str:
    if r.value_raw is None:
        return "tombstone"
    p = r.payload
    if isinstance(p, dict) and "op" in p:
        return f"op {render(p.get('op'))}"
    if isinstance(p, dict) and "status" in p:
        return f"transaction {render(p.get('status'))}"
    return "record"
