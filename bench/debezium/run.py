"""walship against the real Debezium PostgreSQL connector, in one run on one machine.

    python3 bench/debezium/run.py [--changes 200000] [--rate 2000] [--low-rate 200]
                                  [--seconds 30] [--only catchup,lz4,perf,latency]

One throwaway PostgreSQL (bench/stream's settings and table) and one local Kafka broker.
Every slot (walship's streams', Debezium's) is created first; then N changes are
committed while no engine runs (they wait in WAL), and each engine in turn streams all
of them to its own topics (4 partitions each) while nothing else streams:

1. catch-up: walship json, walship protobuf and Debezium 3.4 (Kafka Connect 4.1
   standalone, pgoutput, JsonConverter with schemas, tuned for throughput: see
   DEBEZIUM_WORKER / debezium_connector), each timed from its start until Kafka holds
   all N events (walship: events_acked, as bench/stream; Debezium: the topic's end
   offsets), with the CPU seconds of the engine's processes and of the broker;
2. the same with compression.type=lz4 on both;
3. the broker's own limit: Kafka's ProducerPerformance (kafka-tools, same producer
   batching, acks=all, idempotent) with N records of walship json's and protobuf's
   average value size;
4. commit-to-Kafka-consumer latency at --rate and --low-rate single-row transactions/s
   for walship json and Debezium (bench/stream's measure_latency: receive time −
   source.ts_us, the commit time).

Unmeasured warm-ups first (unless --no-warmup): one walship stream through the broker,
one Debezium connector through the Connect JVM, so that neither the broker's nor
Connect's JIT compilation is measured. Writes bench/results/debezium-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests" / "lib"))
import walship_testlib as wt  # noqa: E402
from walship_testlib.common import log  # noqa: E402
from walship_testlib.connect import (KafkaConnect, connect_version, debezium_postgres_config,  # noqa: E402
                                     debezium_version, resolve_jars)
from walship_testlib.kafkactl import kafka_version  # noqa: E402

# bench/stream/run.py: its table, load, stream start/stop, catch-up timing, latency
# measurement, machine and load-average lines (a file named run.py like this one:
# loaded by path).
_spec = importlib.util.spec_from_file_location("walship_bench_stream", ROOT / "bench" / "stream" / "run.py")
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)

PARTITIONS = 4
TOOLS_POM = HERE / "tools-pom.xml"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASES = ("catchup", "lz4", "perf", "latency")

# The producer settings both engines share (walship's defaults, docs/streams.md):
# linger 5 ms, batches up to 1,000,000 bytes, acks=all, idempotent, 5 requests in flight
# (ordered under idempotence), a 64 MiB buffer (walship's queue.buffering.max.kbytes).
PRODUCER = {"linger.ms": "5", "batch.size": "1000000", "acks": "all", "enable.idempotence": "true",
            "max.in.flight.requests.per.connection": "5", "buffer.memory": "67108864"}
# The Connect worker: JsonConverter with schemas for keys and values (the harness's
# default, = walship's json-schema=true), the producer settings above for every source
# task (Connect's own defaults: linger 0... one request in flight), 2 GiB heap.
DEBEZIUM_WORKER = {f"producer.{k}": v for k, v in PRODUCER.items()}
CONNECT_HEAP = "-Xmx2g -Xms1g"


def debezium_connector(pg, prefix: str, slot: str, table: str, publication: str, *,
                       poll_ms: int = 50, **extra) -> dict:
    """Debezium's config: the harness's (pgoutput, its own slot, snapshot.mode=no_data,
    one task) plus: decimal.handling.mode=string (walship's default decimal rendering:
    the same events), batches of 10,000 records from a queue of 40,000 (defaults 2,048 /
    8,192), poll.interval.ms ``poll_ms`` (default 500: how long a task waits for a
    batch to fill before it hands over a smaller one)."""
    return debezium_postgres_config(
        pg, prefix, slot=slot, tables=[table], publication=publication,
        **{"decimal.handling.mode": "string", "max.batch.size": "10000",
           "max.queue.size": "40000", "poll.interval.ms": str(poll_ms), **extra})


# -- measuring ------------------------------------------------------------------------------
def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    if not pid:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Topics:
    """End offsets and sample values of topics, through one consumer."""

    def __init__(self, bootstrap: str):
        from confluent_kafka import Consumer
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-debezium-probe",
                           "enable.auto.commit": False, "allow.auto.create.topics": False})

    def count(self, topic: str) -> int:
        from confluent_kafka import TopicPartition
        t = self.c.list_topics(topic, timeout=10).topics.get(topic)
        if t is None or t.error is not None:
            return 0
        return sum(self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                   for p in t.partitions)

    def avg_value_size(self, topic: str, n: int = 2000) -> float:
        from confluent_kafka import TopicPartition
        self.c.assign([TopicPartition(topic, 0, 0)])
        sizes: list[int] = []
        deadline = time.monotonic() + 60
        while len(sizes) < n and time.monotonic() < deadline:
            for m in self.c.consume(500, 1.0):
                if not m.error() and m.value() is not None:
                    sizes.append(len(m.value()))
        self.c.unassign()
        if not sizes:
            raise RuntimeError(f"no records read from {topic}")
        return sum(sizes) / len(sizes)

    def close(self) -> None:
        self.c.close()


def engine_topic(prefix: str) -> str:
    return f"{prefix}.public.bench_events"


# -- catch-up -------------------------------------------------------------------------------
def walship_catch_up(pg, kafka, topics: Topics, name: str, changes: int) -> dict:
    """bench/stream's timing (start → events_acked = N) of a stopped stream, plus CPU."""
    broker0 = cpu_s(kafka.pid)
    load0 = os.getloadavg()
    seconds = sb.stream_all(pg, name, changes)
    load1 = os.getloadavg()
    broker_cpu = cpu_s(kafka.pid) - broker0
    st = wt.stream_status(pg, name)
    worker_cpu = cpu_s(st["worker_pid"])  # the worker started with start_stream
    in_kafka = topics.count(engine_topic(name))
    if in_kafka < changes:
        raise RuntimeError(f"stream {name}: {st['events_acked']} acknowledged but the topic holds "
                           f"{in_kafka} of {changes}")
    size = topics.avg_value_size(engine_topic(name))
    pg.execute("SELECT walship.drop_stream(%s)", (name,))
    kafka.delete_topics([engine_topic(name)])  # measured: its disk is free for the next
    return {"seconds": seconds, "events_per_s": changes / seconds, "cpu_s": worker_cpu,
            "broker_cpu_s": broker_cpu, "value_bytes": size, "in_kafka": in_kafka,
            "load": (load0, load1)}


def debezium_catch_up(pg, kafka, connect: KafkaConnect, topics: Topics, name: str,
                      changes: int, until: int | None = None, **extra) -> dict:
    """Adds connector ``name`` (its slot and publication exist and hold the N changes);
    seconds until its topic holds all N (``until``: fewer, for a warm-up); CPU of the Connect JVM (delta), of its
    walsender (pgoutput decodes there) and of the broker."""
    topic = engine_topic(name)
    config = debezium_connector(pg, name, name, "public.bench_events", "dbz_bench", **extra)
    jvm0, broker0 = cpu_s(connect.pid), cpu_s(kafka.pid)
    load0 = os.getloadavg()
    t0 = time.monotonic()
    connect.add(name, config, wait=False)
    last_check, first = 0.0, None
    while True:
        n = topics.count(topic)
        if n and first is None:
            first = time.monotonic() - t0
        if n >= (until or changes):
            break
        now = time.monotonic()
        if now - last_check > 2:
            connect.check_running(name)  # raises with the trace when it failed
            last_check = now
        if now - t0 > 3600:
            raise RuntimeError(f"Debezium {name}: {n} of {changes} events after an hour")
        time.sleep(0.05)
    seconds = time.monotonic() - t0
    load1 = os.getloadavg()
    jvm_cpu, broker_cpu = cpu_s(connect.pid) - jvm0, cpu_s(kafka.pid) - broker0
    walsender = pg.scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [name])
    walsender_cpu = cpu_s(walsender)
    size = topics.avg_value_size(topic)
    connect.delete(name)
    kafka.delete_topics([topic])
    if until is None and n != changes:
        raise RuntimeError(f"Debezium {name}: its topic holds {n} events, not {changes}")
    drop_slot(pg, name)
    return {"seconds": seconds, "events_per_s": n / seconds, "cpu_s": jvm_cpu,
            "walsender_cpu_s": walsender_cpu, "broker_cpu_s": broker_cpu, "value_bytes": size,
            "in_kafka": n, "first_event_s": first, "load": (load0, load1)}


def drop_slot(pg, slot: str) -> None:
    """Drops a deleted connector's slot once its walsender has let go of it."""
    wt.wait_for(lambda: not pg.scalar("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                                      [slot]), 60, 0.1, f"slot {slot} released")
    pg.execute("SELECT pg_drop_replication_slot(%s)", [slot])


def producer_performance(kafka, topic: str, records: int, size: int) -> dict:
    """Kafka's ProducerPerformance: ``records`` of ``size`` bytes (no key), as fast as it
    can, with PRODUCER's settings, into a new topic of PARTITIONS partitions."""
    cache = Path(os.environ.get("WALSHIP_CACHE") or Path.home() / ".cache" / "walship")
    tools = cache / f"kafka-tools-{kafka_version()}"
    resolve_jars(TOOLS_POM, tools, "kafka-tools-4*.jar", f"kafka-tools {kafka_version()}")
    kafka.create_topic(topic, PARTITIONS)
    cmd = ["java", "-Xmx1g", "-Xms512m", "-XX:+UseG1GC", "-cp",
           ":".join(str(j) for j in sorted(tools.glob("*.jar"))),
           f"-Dlog4j2.configurationFile={ROOT / 'tests' / 'kafka' / 'log4j2.properties'}",
           "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
           "--num-records", str(records), "--record-size", str(size), "--throughput", "-1",
           "--producer-props", f"bootstrap.servers={kafka.bootstrap}",
           *(f"{k}={v}" for k, v in PRODUCER.items())]
    broker0 = cpu_s(kafka.pid)
    load0 = os.getloadavg()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    load1 = os.getloadavg()
    broker_cpu = cpu_s(kafka.pid) - broker0
    final = [ln for ln in out.splitlines() if "records sent" in ln and "avg latency" in ln]
    if p.returncode != 0 or not final:
        raise RuntimeError(f"ProducerPerformance failed (exit {p.returncode}):\n{out[-4000:]}")
    kafka.delete_topics([topic])
    line = final[-1]
    rate = float(line.split("records sent,")[1].split("records/sec")[0].strip())
    mb = float(line.split("(")[1].split("MB/sec")[0].strip())
    return {"events_per_s": rate, "mb_per_s": mb, "line": line.strip(), "record_bytes": size,
            "cpu_s": ru.ru_utime + ru.ru_stime, "broker_cpu_s": broker_cpu, "load": (load0, load1)}


# -- latency --------------------------------------------------------------------------------
def json_commit_us(value: bytes) -> float | None:
    """source.ts_us (commit time, µs) of a Debezium-envelope JSON record (either engine)."""
    src = json.loads(value)["payload"]["source"]
    return src["ts_us"] if src.get("ts_us") is not None else src["ts_ms"] * 1000.0


LATENCY_DDL = "CREATE TABLE {t} (id bigserial PRIMARY KEY, v int, t text)"


def walship_latency(pg, kafka, rate: int, seconds: int, tag: str) -> dict:
    table, name = f"lat_wsh_{tag}", f"lat_wsh_{tag}"
    pg.execute(LATENCY_DDL.format(t=table))
    pg.execute("SELECT walship.create_stream(%s, %s, ARRAY[%s], %s)",
               (name, kafka.bootstrap, f"public.{table}", json.dumps({"topic_prefix": name, "format": "json",
                                                                      "snapshot_mode": "no_data"})))
    wt.wait_for(lambda: wt.stream_status(pg, name)["state"] == "running", 60, 0.2, f"stream {name} running")
    try:
        return sb.measure_latency(pg, kafka, table, f"{name}.public.{table}", rate, seconds,
                                  json_commit_us, group=f"bench-{name}")
    finally:
        pg.execute("SELECT walship.drop_stream(%s)", (name,))


def debezium_latency(pg, kafka, connect: KafkaConnect, rate: int, seconds: int, tag: str) -> dict:
    table, name = f"lat_dbz_{tag}", f"lat_dbz_{tag}"
    pg.execute(LATENCY_DDL.format(t=table))
    pg.execute(f"CREATE PUBLICATION {name} FOR TABLE public.{table}")
    # poll.interval.ms 10 (default 500): a task hands a batch over once it is full or
    # after this long, so the default adds up to half a second at low rates.
    connect.add(name, debezium_connector(pg, name, name, f"public.{table}", name, poll_ms=10),
                wait=False)
    connect.wait_debezium_streaming(name, pg, name)
    try:
        return sb.measure_latency(pg, kafka, table, f"{name}.public.{table}", rate, seconds,
                                  json_commit_us, group=f"bench-{name}")
    finally:
        connect.delete(name)
        drop_slot(pg, name)


# -- the run --------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=200_000)
    ap.add_argument("--rate", type=int, default=2000, help="latency: transactions/s (high)")
    ap.add_argument("--low-rate", type=int, default=200, help="latency: transactions/s (low)")
    ap.add_argument("--seconds", type=int, default=30, help="latency: seconds per run")
    ap.add_argument("--only", default=",".join(PHASES),
                    help=f"comma-separated phases of {','.join(PHASES)} (perf needs catchup or lz4)")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = ap.parse_args()
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    if bad := set(only) - set(PHASES):
        ap.error(f"unknown phases {sorted(bad)}; choose from {','.join(PHASES)}")
    if "perf" in only and not {"catchup", "lz4"} & set(only):
        ap.error("perf takes its record sizes from the catch-up: add catchup or lz4")
    started = time.monotonic()
    wt.ConnectJars().fetch()  # fail before anything starts when the jars cannot be had
    resolve_jars(TOOLS_POM, Path(os.environ.get("WALSHIP_CACHE") or Path.home() / ".cache" / "walship")
                 / f"kafka-tools-{kafka_version()}", "kafka-tools-4*.jar", f"kafka-tools {kafka_version()}")
    settings = {"shared_buffers": "1GB", "max_wal_size": "8GB", "synchronous_commit": "on",
                "max_replication_slots": "20", "max_wal_senders": "20", "max_worker_processes": "16"}
    R: dict = {"args": vars(args), "only": only}
    with wt.KafkaBroker() as kafka, wt.PgCluster("bench-dbz", logical_decoding_work_mem="64MB",
                                                 settings=settings) as pg:
        if not kafka.pid:
            raise RuntimeError("no pid of the Kafka broker: cannot measure its CPU")
        pg.execute("CREATE EXTENSION walship")
        R["pg"] = pg.scalar("SHOW server_version")
        R["walship"] = pg.scalar("SELECT extversion FROM pg_extension WHERE extname = 'walship'")
        connect = KafkaConnect(kafka.bootstrap, worker=DEBEZIUM_WORKER, heap=CONNECT_HEAP, start=False)
        topics = Topics(kafka.bootstrap)
        try:
            run_phases(pg, kafka, connect, topics, args, only, R)
        finally:
            topics.close()
            connect.cleanup()
    R["total_s"] = time.monotonic() - started
    print(summary(R), flush=True)
    if not args.no_write:
        write_results(R)
    return 0


def run_phases(pg, kafka, connect, topics, args, only, R) -> None:
    N = args.changes
    pg.execute(sb.TABLE_DDL)
    catch = "catchup" in only
    lz4 = "lz4" in only
    wsh = []  # (key, stream name, extra options)
    if not args.no_warmup and (catch or lz4):
        wsh.append(("warmup", "wsh_warmup", {"format": "json"}))
    if catch:
        wsh += [("walship json", "wsh_json", {"format": "json"}),
                ("walship protobuf", "wsh_proto", {"format": "protobuf"})]
    if lz4:
        wsh += [("walship json lz4", "wsh_json_lz4", {"format": "json", "kafka": {"compression.type": "lz4"}}),
                ("walship protobuf lz4", "wsh_proto_lz4",
                 {"format": "protobuf", "kafka": {"compression.type": "lz4"}})]
    dbz = []  # (key, connector = slot = topic prefix, extra config)
    if not args.no_warmup and (catch or lz4):
        dbz.append(("warmup", "dbz_warmup", {}))
    if catch:
        dbz.append(("Debezium", "dbz", {}))
    if lz4:
        dbz.append(("Debezium lz4", "dbz_lz4", {"producer.override.compression.type": "lz4"}))
    if catch or lz4:
        # every slot before the load: each engine has all N changes to send
        for _, name, opts in wsh:
            log(f"bench: walship stream {name} {json.dumps(opts)}")
            sb.create_stopped_stream(pg, kafka, name, name, opts)
        pg.execute("CREATE PUBLICATION dbz_bench FOR TABLE public.bench_events")
        for _, name, _ in dbz:
            pg.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [name])
            kafka.create_topic(engine_topic(name), PARTITIONS)
        log(f"bench: committing {N:,} changes while no engine runs")
        R["load_s"] = sb.load_changes(pg, N)
        R["wal_bytes"] = int(pg.scalar(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) "
            "FROM pg_replication_slots WHERE slot_name = %s", [f"walship_{wsh[0][1]}"]))
        log(f"bench: {N:,} changes in {R['load_s']:.1f} s, {R['wal_bytes'] / 2**20:.0f} MiB of WAL")
    res = R.setdefault("catchup", {})

    def run_wsh(key, name):
        log(f"bench: catch-up of {key} ({name})")
        r = walship_catch_up(pg, kafka, topics, name, N)
        log(f"bench: {key}: {r['seconds']:.2f} s = {r['events_per_s']:,.0f} events/s, worker CPU "
            f"{r['cpu_s']:.1f} s, broker CPU {r['broker_cpu_s']:.1f} s, {r['value_bytes']:.0f} B/event "
            f"(load {sb.loads(r['load'])})")
        if key != "warmup":
            res[key] = r
        else:
            R["walship_warmup_s"] = r["seconds"]

    def run_dbz(key, name, extra):
        log(f"bench: catch-up of {key} ({name})")
        # warming the JVM up takes 50,000 events, not all of them
        until = min(N, 50_000) if key == "warmup" else None
        r = debezium_catch_up(pg, kafka, connect, topics, name, N, until=until, **extra)
        log(f"bench: {key}: {r['seconds']:.2f} s = {r['events_per_s']:,.0f} events/s, Connect CPU "
            f"{r['cpu_s']:.1f} s, walsender CPU {r['walsender_cpu_s']:.1f} s, broker CPU "
            f"{r['broker_cpu_s']:.1f} s, {r['value_bytes']:.0f} B/event, first event after "
            f"{r['first_event_s']:.2f} s (load {sb.loads(r['load'])})")
        if key != "warmup":
            res[key] = r
        else:
            R["debezium_warmup_n"] = r["in_kafka"]
            R["debezium_warmup_s"] = r["seconds"]

    wsh_by = {k: n for k, n, _ in wsh}
    dbz_by = {k: (n, e) for k, n, e in dbz}
    if catch or lz4:
        if "warmup" in wsh_by:
            run_wsh("warmup", wsh_by["warmup"])
        connect.start()
        R["connect_pid"] = connect.pid
        if "warmup" in dbz_by:
            run_dbz("warmup", *dbz_by["warmup"])
    if catch:
        run_wsh("walship json", wsh_by["walship json"])
        run_wsh("walship protobuf", wsh_by["walship protobuf"])
        run_dbz("Debezium", *dbz_by["Debezium"])
    if lz4:
        run_wsh("walship json lz4", wsh_by["walship json lz4"])
        run_wsh("walship protobuf lz4", wsh_by["walship protobuf lz4"])
        run_dbz("Debezium lz4", *dbz_by["Debezium lz4"])
    if "perf" in only:
        perf = R.setdefault("perf", {})
        for fmt in ("json", "protobuf"):
            src = res.get(f"walship {fmt}") or res.get(f"walship {fmt} lz4")
            size = round(src["value_bytes"])
            log(f"bench: ProducerPerformance, {N:,} records of {size} B (walship {fmt}'s average)")
            r = producer_performance(kafka, f"perf_{fmt}", N, size)
            log(f"bench: ProducerPerformance {fmt}: {r['line']} (CPU {r['cpu_s']:.1f} s, broker "
                f"{r['broker_cpu_s']:.1f} s, load {sb.loads(r['load'])})")
            perf[fmt] = r
    if "latency" in only:
        if not connect.pid:
            connect.start()
            R["connect_pid"] = connect.pid
        lat = R.setdefault("latency", {})
        for rate in (args.rate, args.low_rate):
            for key, fn in (("walship json", walship_latency), ("Debezium", debezium_latency)):
                log(f"bench: latency of {key} at {rate} tx/s for {args.seconds} s")
                if fn is walship_latency:
                    r = fn(pg, kafka, rate, args.seconds, str(rate))
                else:
                    r = fn(pg, kafka, connect, rate, args.seconds, str(rate))
                log(f"bench: {key} at {rate}/s: {r['transactions']} tx, p50 {r['p50_ms']:.1f} ms, "
                    f"p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms ({r['pgbench']}; load "
                    f"{sb.loads(r['load'])})")
                lat[(key, rate)] = r


# -- the report -----------------------------------------------------------------------------
def fmt_n(x: float) -> str:
    return f"{x:,.0f}"


def ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def targets(R) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, needed, met) for the brief's five targets."""
    c, p, L = R.get("catchup", {}), R.get("perf", {}), R.get("latency", {})
    out = []

    def add(what, got, need, ok_if):
        out.append((what, "n/a" if got is None else f"{got:.2f}×", need,
                    None if got is None else ok_if(got)))

    wj, pj = c.get("walship json"), p.get("json")
    add("walship json ÷ ProducerPerformance (same record size)",
        ratio(wj and wj["events_per_s"], pj and pj["events_per_s"]), "≥ 0.9×", lambda r: r >= 0.9)
    wl, dl = c.get("walship json lz4"), c.get("Debezium lz4")
    add("with lz4: walship json ÷ Debezium (events/s)",
        ratio(wl and wl["events_per_s"], dl and dl["events_per_s"]), "≥ 8×", lambda r: r >= 8)
    wp, d = c.get("walship protobuf"), c.get("Debezium")
    add("walship protobuf ÷ Debezium (events/s, no compression)",
        ratio(wp and wp["events_per_s"], d and d["events_per_s"]), "≥ 25×", lambda r: r >= 25)
    rates = sorted({rate for _, rate in L}, reverse=True)
    for rate in rates:
        w, db = L.get(("walship json", rate)), L.get(("Debezium", rate))
        add(f"p99 latency at {rate} tx/s: Debezium ÷ walship json",
            ratio(db and db["p99_ms"], w and w["p99_ms"]), "≥ 4× (walship ≤ 1/4)", lambda r: r >= 4)
    return out


def summary(R) -> str:
    lines = ["", "==== walship vs Debezium ===="]
    for k, r in R.get("catchup", {}).items():
        lines.append(f"{k:22s} {r['seconds']:8.2f} s {fmt_n(r['events_per_s']):>10s} events/s  "
                     f"CPU {r['cpu_s']:6.1f} s  broker {r['broker_cpu_s']:6.1f} s  {r['value_bytes']:.0f} B")
    for k, r in R.get("perf", {}).items():
        lines.append(f"ProducerPerf {k:9s} {fmt_n(r['events_per_s']):>21s} events/s  ({r['mb_per_s']} MB/s, "
                     f"{r['record_bytes']} B)")
    for (k, rate), r in R.get("latency", {}).items():
        lines.append(f"latency {k:14s} {rate:5d}/s p50 {r['p50_ms']:7.1f} ms p99 {r['p99_ms']:7.1f} ms")
    for what, got, need, ok in targets(R):
        lines.append(f"target: {what}: {got} (need {need}): "
                     f"{'MET' if ok else 'not met' if ok is not None else 'not measured'}")
    lines.append(f"total {R['total_s'] / 60:.1f} min")
    return "\n".join(lines)


def write_results(R) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    out = ROOT / "bench" / "results" / f"debezium-{now.date().isoformat()}.md"
    if out.exists():
        out = out.with_name(f"debezium-{now.strftime('%Y-%m-%d-%H%M%S')}.md")
    cmd = "python3 bench/debezium/run.py " + " ".join(sys.argv[1:])
    c, p, L = R.get("catchup", {}), R.get("perf", {}), R.get("latency", {})
    d, dl = c.get("Debezium"), c.get("Debezium lz4")
    N = R["args"]["changes"]
    rows = []
    for k, r in c.items():
        base = dl if "lz4" in k else d
        vs = ratio(r["events_per_s"], base and base["events_per_s"]) if not k.startswith("Debezium") else None
        eng_cpu = r["cpu_s"] + r.get("walsender_cpu_s", 0.0)
        cpu_detail = (f"Connect JVM {r['cpu_s']:.1f} + walsender {r['walsender_cpu_s']:.1f} "
                      f"(first event after {r['first_event_s']:.1f} s)"
                      if k.startswith("Debezium") else f"stream worker {r['cpu_s']:.1f}")
        rows.append(f"| {k} | {r['seconds']:.2f} | **{fmt_n(r['events_per_s'])}** | "
                    f"{'' if vs is None else f'{vs:.1f}×'} | {cpu_detail} | "
                    f"{1e6 * eng_cpu / N:.0f} | {r['broker_cpu_s']:.1f} | {r['value_bytes']:.0f} | "
                    f"{sb.loads(r['load'])} |")
    for k, r in p.items():
        wk = c.get(f"walship {k}")
        frac = ratio(wk and wk["events_per_s"], r["events_per_s"])
        rows.append(f"| ProducerPerformance, {r['record_bytes']} B records (walship {k}'s size) | "
                    f"{N / r['events_per_s']:.2f} | **{fmt_n(r['events_per_s'])}** ({r['mb_per_s']} MB/s) | "
                    f"walship {k} = {'' if frac is None else f'{frac:.2f}×'} of it | "
                    f"producer JVM {r['cpu_s']:.1f} | {1e6 * r['cpu_s'] / N:.0f} | {r['broker_cpu_s']:.1f} | "
                    f"{r['record_bytes']} | {sb.loads(r['load'])} |")
    lat_rows = [f"| {k} | {rate} | {r['transactions']:,} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
                f"**{r['p99_ms']:.1f}** | {r['max_ms']:.1f} | {r['pgbench']} | {sb.loads(r['load'])} |"
                for (k, rate), r in L.items()]
    tgt = [f"| {what} | {got} | {need} | {'**met**' if ok else '**not met**' if ok is not None else 'not measured'} |"
           for what, got, need, ok in targets(R)]
    warm = ""
    if "walship_warmup_s" in R:
        warm = (f"Unmeasured warm-ups first: a walship json stream of the same {N:,} changes through the "
                f"broker ({R['walship_warmup_s']:.1f} s) and a Debezium connector through the "
                f"Connect JVM until {R['debezium_warmup_n']:,} of them were in Kafka "
                f"({R['debezium_warmup_s']:.1f} s).")
    producer = ", ".join(f"`{k}={v}`" for k, v in PRODUCER.items())
    text = f"""# walship vs Debezium {debezium_version()}, {now.strftime('%Y-%m-%d %H:%M')} UTC

Command: `{cmd.strip()}` (walship built RelWithDebInfo and installed into the PostgreSQL
it runs on; the run took {R['total_s'] / 60:.1f} min)

Machine: {sb.machine()}; shared with other work (the 1-minute load average before → after
each phase is in the tables: above 2, every process waits for CPU).

Versions: PostgreSQL {R['pg']}, walship {R['walship']}, Apache Kafka {kafka_version()} (one
KRaft broker on loopback, tests/kafka), Kafka Connect {connect_version()} standalone +
Debezium PostgreSQL connector {debezium_version()} (tests/compat/connect), Java
{java_version()}, ProducerPerformance from kafka-tools {kafka_version()}.

## What ran

- One table, bench/stream's `bench_events` (bigserial key, int, numeric(12,2), short
  text, boolean, timestamptz); {N:,} single-row INSERTs in transactions of 10,000,
  committed while no engine ran ({R.get('wal_bytes', 0) / 2**20:.0f} MiB of WAL). Every
  engine has its own slot created before the load and its own topic of {PARTITIONS}
  partitions; they run one at a time, each from its start until Kafka holds all
  {N:,} events (walship: `events_acked` = N, then the topic's end offsets are checked;
  Debezium: the sum of its topic's end offsets, polled every 50 ms, from the REST call
  that adds the connector). {warm}
- Producer settings of both engines (walship's defaults, given to Connect as worker
  `producer.*` properties; Connect's own defaults would be linger 0 and one request in
  flight): {producer}; with lz4 `compression.type=lz4` (walship stream option
  `kafka`, Debezium `producer.override.compression.type`).
- Debezium: `plugin.name=pgoutput`, `snapshot.mode=no_data`, slot and publication
  (`dbz_bench`) created before the load, one task, `decimal.handling.mode=string`
  (walship's default: the same events), `max.batch.size=10000` (default 2,048),
  `max.queue.size=40000` (8,192), `poll.interval.ms=50` (500); JsonConverter with
  schemas for keys and values (as walship's `json-schema=true` default); offsets flushed
  every second; heap `{CONNECT_HEAP}`.
- walship: `format=json` / `protobuf`, `partitions={PARTITIONS}`, the rest default.
- CPU seconds from /proc/<pid>/stat (user + system, all threads): walship's stream worker
  backend (it starts with the stream, so: its whole life); Debezium's Connect JVM (the
  delta over the catch-up) plus the PostgreSQL walsender that decodes for it (pgoutput;
  its whole life); the broker's delta for each. "µs CPU/event" is the engine's CPU
  (Debezium: JVM + walsender) per event.
- ProducerPerformance: {N:,} records with no key, of walship json's and protobuf's
  average value size, `--throughput -1`, the same producer settings, into a new topic of
  {PARTITIONS} partitions, after the catch-ups.
- Latency: `pgbench -R <rate> -c 4 -j 2` single-row INSERTs into a table of its own per
  run for {R['args']['seconds']} s; a Python consumer (fetch.wait.max.ms 5) takes receive
  time − `payload.source.ts_us` (the commit time) of every event. walship json with its
  defaults; Debezium with `poll.interval.ms=10` (its default 500 ms lets a task wait that
  long for a batch to fill) and the settings above.

## Catch-up ({N:,} changes waiting in WAL)

| engine | seconds | events/s | ÷ Debezium (same compression) | CPU s | µs CPU/event | broker CPU s | avg value B | load average |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

## Commit-to-consumer latency

| engine | tx/s | transactions | p50 ms | p95 ms | p99 ms | max ms | pgbench | load average |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(lat_rows)}

## Caveats

- The machine is shared: with a load average far above its 2 cores, every process here
  (PostgreSQL, walship's worker, the broker, Connect, ProducerPerformance, the latency
  consumer) waits for CPU, and the numbers are lower and noisier than on a quiet one.
- ProducerPerformance runs in a JVM of its own that starts cold (its JIT compiles
  during the measurement); Debezium's Connect JVM was warmed up first.
- Uncompressed, 3 kB JSON events make the broker (bytes through one node on loopback)
  the limit of both engines; the lz4 rows show what the engines do when bytes cost less.
- Latency is measured by one Python consumer that parses every JSON event: at 2,000/s
  on a loaded machine its own delays are part of both engines' numbers.

## Targets

| target | measured | needed | |
|---|---|---|---|
{chr(10).join(tgt)}
"""
    out.write_text(text)
    print(f"wrote {out.relative_to(ROOT)}", flush=True)


def java_version() -> str:
    r = subprocess.run(["java", "-version"], capture_output=True, text=True)
    first = (r.stderr.splitlines() or ["?"])[0]
    return first.split('"')[1] if first.count('"') >= 2 else first


if __name__ == "__main__":
    sys.exit(main())
