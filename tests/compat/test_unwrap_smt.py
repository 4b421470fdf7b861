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

PAIRS = ["string", "precise", "double", "txmeta"]

_TOPIC = re.compile(r"topic=([^,}]*)\}$")


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


def lines_by_topic(path, prefix: str, to_prefix: str) -> dict[str, list[str]]:
    """The sink's lines per topic (Debezium's topic names), normalized as
    allowed_differences.py says (SMT_LINE_RULES, and rule topic-prefix)."""
    rules = [(re.compile(rx), repl) for _id, rx, repl in allowed.SMT_LINE_RULES]
    out: dict[str, list[str]] = collections.OrderedDict()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _TOPIC.search(line)
        topic = m.group(1) if m else "?"
        if topic.startswith(prefix + "."):
            topic = to_prefix + topic[len(prefix):]
            line = line[: m.start(1)] + topic + line[m.end(1):]
        for rx, repl in rules:
            line = rx.sub(repl, line)
        line = line.replace(f",name={prefix},", f",name={to_prefix},")  # source.name
        out.setdefault(topic, []).append(line)
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
        for _n, _e, sink, _p, _t in started:
            try:
                connect.delete(sink)
            except Exception:
                pass


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
        for line in difflib.unified_diff(d, w, "debezium", "walship", lineterm="", n=0):
            if line.startswith(("---", "+++")):
                continue
            out.append("   " + (line if len(line) < 400 else line[:380] + f"…({len(line)} chars)"))
    if out:
        pytest.fail(f"ExtractNewRecordState + FileStreamSink wrote other lines for walship's "
                    f"records than for Debezium's (pair {name}; files {dpath}, {wpath}):\n"
                    + "\n".join(out), pytrace=False)
