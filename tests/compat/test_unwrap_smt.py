"""Issue 13 (b): Debezium's own consumers take walship's records. A Kafka Connect sink
(FileStreamSink) with JsonConverter (schemas on) and Debezium's
``io.debezium.transforms.ExtractNewRecordState`` SMT (``transforms=unwrap``, its
defaults) reads every topic of a pair: once Debezium's, once walship's. It must
process every walship record without error (the task stays RUNNING and commits the
end of every partition) and write the same lines for walship's records as for
Debezium's records of the same changes.

FileStreamSink writes each record's value (``Struct.toString()``) and nothing else; to
tell the topics apart in one file, two stock SMTs run after ``unwrap``: ``HoistField``
wraps the value (also a null one) in a field ``value`` and ``InsertField`` adds the
topic. They treat both engines' records alike; the topics' prefixes are mapped as in
the record comparison (allowed_differences.py, ``topic-prefix``).
"""

from __future__ import annotations

import collections
import difflib
import re

import pytest

import allowed_differences as allowed
from walship_testlib.connect import FILE_SINK

PAIRS = ["string", "precise", "double", "txmeta", "control"]  # control: Debezium twice

_TOPIC = re.compile(r"topic=([^,}]*)\}$")
_DATA_COLLECTIONS = re.compile(r"data_collections=\[(Struct\{[^\]]*\})\]")


def _sorted_collections(m: re.Match) -> str:
    """allowed_differences.py, transaction-data-collections-order."""
    items = re.findall(r"Struct\{[^}]*\}", m.group(1))
    return "data_collections=[" + ", ".join(sorted(items)) + "]"


def sink_config(path, topics: list[str]) -> dict:
    return {
        "connector.class": FILE_SINK,
        "tasks.max": "1",
        "file": str(path),
        "topics": ",".join(topics),
        "transforms": "unwrap,hoist,topic",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
        "transforms.hoist.type": "org.apache.kafka.connect.transforms.HoistField$Value",
        "transforms.hoist.field": "value",
        "transforms.topic.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.topic.topic.field": "topic",
        "errors.tolerance": "none",
        "consumer.override.auto.offset.reset": "earliest",
    }


def records_of(path) -> list[str]:
    """The sink's file, a record a line; a line that does not start like a record
    continues the one before (FileStreamSink writes a newline in a value as it is)."""
    out: list[str] = []
    text = path.read_text(encoding="utf-8")
    if not text:
        return out
    for line in text.removesuffix("\n").split("\n"):
        if line.startswith(("Struct{", "{")) or not out:
            out.append(line)
        else:
            out[-1] += "\n" + line
    return out


def lines_by_topic(path, prefix: str, to_prefix: str) -> dict[str, list[str]]:
    """The sink's lines per topic (Debezium's topic names), normalized as
    allowed_differences.py says (SMT_LINE_RULES, and rule topic-prefix)."""
    rules = [(re.compile(rx), repl) for _id, rx, repl in allowed.SMT_LINE_RULES]
    out: dict[str, list[str]] = collections.OrderedDict()
    for line in records_of(path):
        m = _TOPIC.search(line)
        topic = m.group(1) if m else "?"
        if topic.startswith(prefix + "."):
            topic = to_prefix + topic[len(prefix):]
            line = line[: m.start(1)] + topic + line[m.end(1):]
        for rx, repl in rules:
            line = rx.sub(repl, line)
        line = _DATA_COLLECTIONS.sub(_sorted_collections, line)
        line = line.replace(f",name={prefix},", f",name={to_prefix},")  # source.name
        out.setdefault(topic, []).append(line)
    return out


def shorten(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else line[: limit - 40] + f"…({len(line)} chars)…" + line[-30:]


def line_difference(a: str, b: str, context: int = 40) -> str:
    """Where two lines differ: their common start and end cut, each field that
    differs shown once per side (fields split at ',' outside brackets)."""
    fa, fb = _fields(a), _fields(b)
    da = [f for f in fa if f not in fb]
    db = [f for f in fb if f not in fa]
    if da or db:
        return ("debezium " + (", ".join(shorten(f, 200) for f in da) or "-")
                + "  |  walship " + (", ".join(shorten(f, 200) for f in db) or "-"))
    return f"(same fields, other order) debezium {shorten(a)} | walship {shorten(b)}"


def _fields(line: str) -> list[str]:
    """path=value of every leaf of a Struct.toString() text (nested structs flattened:
    value.source.lsn=...); the whole line if it does not parse."""
    out: list[str] = []
    line = line.replace("[B@", "byte[]@")  # Java's text of a byte[] opens a bracket

    def struct(i: int, path: str) -> int:
        i += len("Struct{")
        while i < len(line) and line[i] != "}":
            eq = line.index("=", i)
            name = line[i:eq]
            i = eq + 1
            if line.startswith("Struct{", i):
                i = struct(i, f"{path}{name}.")
            else:
                depth, k = 0, i
                while k < len(line) and not (depth == 0 and line[k] in ",}"):
                    depth += line[k] in "[{("
                    depth -= line[k] in "]})"
                    k += 1
                out.append(f"{path}{name}={line[i:k]}")
                i = k
            if i < len(line) and line[i] == ",":
                i += 1
        return i + 1

    try:
        if not line.startswith("Struct{") or struct(0, "") != len(line):
            return [line]
    except ValueError:
        return [line]
    return out


@pytest.fixture(scope="module")
def sinks(compat_run, connect, kafka, report_dir):
    """Two sinks per pair (Debezium's topics, walship's), all running at once; each
    waited for until it consumed its topics to their end."""
    started = []
    try:
        for name in PAIRS:
            pr = compat_run[name]
            for engine, prefix, msgs in (("debezium", pr.pair.dbz_prefix, pr.debezium),
                                         ("walship", pr.pair.wsh_prefix, pr.walship)):
                topics = sorted({m.topic for m in msgs})
                sink = f"unwrap_{engine}_{name}"
                path = report_dir / f"unwrap-{name}-{engine}.txt"
                path.unlink(missing_ok=True)
                connect.add(sink, sink_config(path, topics), wait=False)
                started.append((name, engine, sink, path, topics))
        outcome = {}
        for name, engine, sink, path, topics in started:
            error = None
            try:
                connect.wait_running(sink)
                connect.wait_sink_caught_up(sink, topics)
            except Exception as e:  # reported by the test of that pair
                error = str(e)
            outcome[(name, engine)] = (path, error)
        yield outcome
    finally:
        if started:
            connect.delete(*[sink for _n, _e, sink, _p, _t in started])


@pytest.mark.parametrize("name", PAIRS)
def test_unwrap_takes_walship_records_as_debeziums(compat_run, connect, sinks, name):
    pr = compat_run[name]
    dpath, derror = sinks[(name, "debezium")]
    wpath, werror = sinks[(name, "walship")]
    problems = []
    if werror:
        problems.append(f"the sink of walship's records failed:\n{werror}")
    if derror:
        problems.append(f"(harness) the sink of Debezium's records failed:\n{derror}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
    dlines = lines_by_topic(dpath, pr.pair.dbz_prefix, pr.pair.dbz_prefix)
    wlines = lines_by_topic(wpath, pr.pair.wsh_prefix, pr.pair.dbz_prefix)
    out = []
    for topic in sorted(set(dlines) | set(wlines)):
        d, w = dlines.get(topic, []), wlines.get(topic, [])
        if d == w:
            continue
        out.append(f"== {topic}: Debezium {len(d)} line(s), walship {len(w)}")
        sm = difflib.SequenceMatcher(None, d, w, autojunk=False)
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag == "equal":
                continue
            if tag == "replace" and i2 - i1 == j2 - j1:
                for k, (a, b) in enumerate(zip(d[i1:i2], w[j1:j2])):
                    out.append(f"   line {i1 + k + 1}/{j1 + k + 1}: {line_difference(a, b)}")
                continue
            for k, a in enumerate(d[i1:i2]):
                out.append(f"   line {i1 + k + 1}/-: only Debezium's: {shorten(a)}")
            for k, b in enumerate(w[j1:j2]):
                out.append(f"   line -/{j1 + k + 1}: only walship's: {shorten(b)}")
    if out:
        pytest.fail(f"ExtractNewRecordState + FileStreamSink wrote other lines for walship's "
                    f"records than for Debezium's (pair {name}; files {dpath}, {wpath}):\n"
                    + "\n".join(out), pytrace=False)
