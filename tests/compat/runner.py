"""One run of the compatibility suite: start every pair of streams (scenarios.py) over
the tables of scripts/schema.sql, run scripts/changes.sql once, wait until both engines
of every pair have all of it in Kafka, and read every topic of both back.

``run_pairs(pg, kafka, connect, pairs)`` → ``{pair name: PairRecords}``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import walship_testlib as wt
from walship_testlib.connect import KafkaConnect, debezium_postgres_config

from scenarios import END_TABLE, Pair

HERE = Path(__file__).resolve().parent
SCHEMA_SQL = HERE / "scripts" / "schema.sql"
CHANGES_SQL = HERE / "scripts" / "changes.sql"


@dataclasses.dataclass
class PairRecords:
    pair: Pair
    debezium: list[wt.KafkaMessage]
    walship: list[wt.KafkaMessage]
    seconds: float = 0.0


def topic_name(prefix: str, schema: str, table: str) -> str:
    """Debezium's topic for a table: characters Kafka forbids become '_' (as UTF-16
    code units count them)."""
    import re

    raw = f"{prefix}.{schema}.{table}"
    out = []
    for ch in raw:
        if re.fullmatch(r"[A-Za-z0-9._-]", ch):
            out.append(ch)
        else:
            out.append("_" * (2 if ord(ch) > 0xFFFF else 1))
    return "".join(out)


def create_schema(pg) -> None:
    pg.psql(SCHEMA_SQL.read_text())
    pg.execute("CREATE EXTENSION IF NOT EXISTS walship")


def start_pair(pg, kafka, connect: KafkaConnect, pair: Pair) -> None:
    """The walship stream and the Debezium connector of ``pair`` (not waited for)."""
    if pair.control:
        _add_debezium(pg, connect, pair, pair.control_connector, pair.wsh_prefix)
    else:
        pg.execute("SELECT walship.create_stream(%s, %s, %s, %s::jsonb)",
                   [pair.stream, kafka.bootstrap, pair.walship_tables(),
                    json.dumps(pair.walship_options())])
    _add_debezium(pg, connect, pair, pair.connector, pair.dbz_prefix)


def _add_debezium(pg, connect: KafkaConnect, pair: Pair, name: str, prefix: str) -> None:
    config = debezium_postgres_config(
        pg, prefix, slot=name, tables=[f"{s}.{t}" for s, t in pair.tables()],
        **pair.debezium_overrides())
    connect.add(name, config, wait=False)


def wait_pair_streaming(pg, connect: KafkaConnect, pair: Pair, timeout: float = 120) -> None:
    connect.wait_debezium_streaming(pair.connector, pg, pair.dbz_slot, timeout)
    if pair.control:
        connect.wait_debezium_streaming(pair.control_connector, pg, pair.control_connector,
                                        timeout)
        return

    def walship_running():
        st = wt.stream_status(pg, pair.stream) or {}
        if st.get("state") == "error":
            raise RuntimeError(f"walship stream {pair.stream}: {st.get('last_error')}")
        return st.get("state") == "running"

    wt.wait_for(walship_running, timeout, 0.2, f"walship stream {pair.stream} to run")


def wait_all_delivered(pg, kafka, pair: Pair, timeout: float = 120) -> None:
    """Both engines of ``pair`` have the whole script in Kafka: walship's slot confirms
    the current WAL position (its watermark: every event acknowledged); Debezium has the
    end marker in its topic and its slot confirms it (Connect commits a source offset
    only when it and every record before it is acknowledged; Debezium confirms to its
    slot what Connect committed)."""
    t0 = time.monotonic()
    if pair.control:
        _wait_debezium_delivered(pg, kafka, pair.wsh_prefix, pair.control_connector, timeout)
    else:
        wt.wait_caught_up(pg, pair.stream, timeout)
        wt.common.log(f"compat: walship stream {pair.stream} caught up in "
                      f"{time.monotonic() - t0:.1f}s")
    _wait_debezium_delivered(pg, kafka, pair.dbz_prefix, pair.dbz_slot, timeout)
    wt.common.log(f"compat: Debezium ({pair.dbz_slot}) confirmed the end marker after "
                  f"{time.monotonic() - t0:.1f}s")


def _wait_debezium_delivered(pg, kafka, prefix: str, slot: str, timeout: float) -> None:
    end_topic = topic_name(prefix, *END_TABLE)
    msgs = wt.consume_all(kafka.bootstrap, [end_topic], expected_count=1, timeout=timeout)
    payload = json.loads(msgs[-1].value)["payload"]
    marker_lsn = int(payload["source"]["lsn"])

    def confirmed():
        lsn = pg.scalar("SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots "
                        "WHERE slot_name = %s", [slot])
        return lsn is not None and int(lsn) >= marker_lsn

    wt.wait_for(confirmed, timeout, 0.25,
                f"Debezium slot {slot} to confirm the end marker (LSN {marker_lsn})")


def read_topics(kafka, prefix: str, timeout: float = 60) -> list[wt.KafkaMessage]:
    topics = sorted(t for t in kafka.topics() if t.startswith(prefix + "."))
    if not topics:
        return []
    return wt.consume_all(kafka.bootstrap, topics, timeout=timeout)


def run_pairs(pg, kafka, connect: KafkaConnect, pairs: list[Pair]) -> dict[str, PairRecords]:
    t0 = time.monotonic()
    create_schema(pg)
    for pair in pairs:
        start_pair(pg, kafka, connect, pair)
    for pair in pairs:
        wait_pair_streaming(pg, connect, pair)
    wt.common.log(f"compat: {len(pairs)} pairs streaming after {time.monotonic() - t0:.1f}s")
    t1 = time.monotonic()
    pg.psql(CHANGES_SQL.read_text())
    wt.common.log(f"compat: the change script ran in {time.monotonic() - t1:.1f}s")
    for pair in pairs:
        wait_all_delivered(pg, kafka, pair)
        connect.check_running(pair.connector)  # a failed task raises here
        if pair.control:
            connect.check_running(pair.control_connector)
        wt.common.log(f"compat: pair {pair.name} delivered after {time.monotonic() - t1:.1f}s")
    out = {}
    for pair in pairs:
        out[pair.name] = PairRecords(pair, read_topics(kafka, pair.dbz_prefix),
                                     read_topics(kafka, pair.wsh_prefix))
        wt.common.log(f"compat: pair {pair.name} read after {time.monotonic() - t1:.1f}s")
    wt.common.log(f"compat: all pairs delivered and read after {time.monotonic() - t0:.1f}s")
    return out


def dump_records(runs: dict[str, PairRecords], directory: Path) -> None:
    """records-<pair>-<engine>.jsonl: every record read back, for a post-mortem."""
    def text(b):
        if b is None:
            return None
        return b.decode("utf-8", errors="backslashreplace")

    for name, pr in runs.items():
        for engine, msgs in (("debezium", pr.debezium), ("walship", pr.walship)):
            with open(directory / f"records-{name}-{engine}.jsonl", "w") as f:
                for m in msgs:
                    f.write(json.dumps({"topic": m.topic, "partition": m.partition,
                                        "offset": m.offset, "key": text(m.key),
                                        "value": text(m.value),
                                        "headers": [[k, text(v)] for k, v in m.headers]},
                                       ensure_ascii=False) + "\n")
