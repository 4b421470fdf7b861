"""walship streaming benchmarks: catch-up throughput and commit-to-consume latency.

    python3 bench/stream/run.py [--changes 1000000] [--rate 2000] [--seconds 30]
        [--deliveries at_least_once,exactly_once] [--rounds 3] [--kafka JSON]
        [--no-warmup] [--no-write]

Each delivery (stream option "delivery") is measured in every round, on the same
PostgreSQL and the same broker; odd rounds in the order given, even rounds reversed.

1. catch-up: one stream per delivery is created and stopped; N changes are committed
   while they are stopped (they wait in WAL for both); each stream in turn is started
   and timed until its slot's confirmed_flush_lsn (pg_replication_slots) passed the
   WAL flushed by the last of them: for exactly_once the slot is confirmed only after
   the Kafka transaction holding the changes has committed, so this is "all N are
   visible to read_committed consumers"; for at_least_once it is "Kafka acknowledged
   all N". The time until walship.stream_status.events_acked >= N is printed too.
   Unless --no-warmup, one more stream per delivery streams the same N changes to
   other topics first, unmeasured: the broker was started seconds earlier, and a JVM
   that has not compiled its hot paths yet spends 2-3 times the CPU per event that it
   spends once warm (its JIT compiler threads compete for the same two cores), which
   would measure the broker's start-up rather than walship.
2. latency: per delivery, a steady load of single-row INSERT transactions at --rate
   per second (pgbench -R) for --seconds into a table of its own; a read_committed
   consumer (LATENCY_CONSUMER) reads every event and computes receive time − commit
   time (source.commit_time_us). Prints p50/p95/p99/max, and the same split at the
   record's Kafka timestamp (librdkafka's produce time): commit → produce (decoding,
   encoding, walship's queue) and produce → receive (the broker, the Kafka transaction,
   the consumer's fetch).

Runs a throwaway PostgreSQL and a local Kafka broker on this machine, both started
and stopped here. Writes a result file into bench/results/ with the command, the
machine and the date (stream-<date>.md for one delivery, stream-delivery-<date>.md
for more).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DELIVERIES = ("at_least_once", "exactly_once")
SHORT = {"at_least_once": "alo", "exactly_once": "eos"}
# The latency consumer, the same for every delivery: read_committed (an at_least_once
# stream's records are not transactional, so it sees them at the high watermark, as
# read_uncommitted would); fetch.wait.max.ms 5 (librdkafka's default, 500, would make
# a fetch that finds nothing new wait up to 500 ms for data, and the broker answers a
# read_committed fetch only with what is below the last stable offset).
LATENCY_CONSUMER = {"isolation.level": "read_committed", "fetch.wait.max.ms": 5,
                    "fetch.min.bytes": 1, "auto.offset.reset": "earliest",
                    "enable.auto.commit": False, "topic.metadata.refresh.interval.ms": 500}
sys.path.insert(0, str(ROOT / "tests" / "lib"))
import walship_testlib as wt  # noqa: E402

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS bench_events (
    id bigserial PRIMARY KEY, account int NOT NULL, amount numeric(12,2) NOT NULL,
    note text, flag boolean NOT NULL DEFAULT false, created_at timestamptz NOT NULL DEFAULT now())
"""


def acked(pg, name, conn) -> int:
    """Events the stream's current worker has had acknowledged (0 until it runs: a
    stopped stream's row still shows its previous worker's counters)."""
    st = wt.stream_status(pg, name, conn)
    if st["last_error"] and st["state"] == "error":
        raise RuntimeError(f"stream {name} failed: {st['last_error']}")
    return (st["events_acked"] or 0) if st["state"] == "running" else 0


def create_stopped_stream(pg, kafka, name: str, prefix: str, extra: dict | None = None) -> None:
    """A stream of bench_events (4 partitions; ``extra``: more options, e.g. format)
    that is created, runs once (its slot exists from now on) and is stopped."""
    options = json.dumps({"topic_prefix": prefix, "partitions": 4, "snapshot_mode": "no_data",
                          **(extra or {})})
    pg.execute("SELECT walship.create_stream(%s, %s, ARRAY['public.bench_events'], %s)",
               (name, kafka.bootstrap, options))
    wt.wait_for(lambda: wt.stream_status(pg, name)["state"] == "running", 60, 0.2, f"stream {name} running")
    pg.execute("SELECT walship.stop_stream(%s)", (name,))
    wt.wait_for(lambda: wt.stream_status(pg, name)["state"] == "stopped", 60, 0.2, f"stream {name} stopped")


def stream_all(pg, name: str, changes: int) -> float:
    """Starts the stopped stream; seconds until Kafka has acknowledged all changes."""
    return stream_timed(pg, name, changes)["acked"]


def stream_timed(pg, name: str, changes: int, target_lsn: str | None = None) -> dict:
    """Starts the stopped stream; seconds until Kafka has acknowledged all changes
    ("acked") and until the stream's slot is confirmed past ``target_lsn`` ("confirmed";
    with exactly_once only after the Kafka commit)."""
    res: dict = {}
    with pg.connect() as conn:
        t0 = time.monotonic()
        conn.execute("SELECT walship.start_stream(%s)", (name,))

        def done():
            if "acked" not in res and acked(pg, name, conn) >= changes:
                res["acked"] = time.monotonic() - t0
            if target_lsn is None:
                return "acked" in res
            if conn.execute("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                            "WHERE slot_name = %s", (target_lsn, f"walship_{name}")).fetchone()[0]:
                res["confirmed"] = time.monotonic() - t0
                res.setdefault("acked", res["confirmed"])  # the status lags by <= 100 ms
                return True
            return False

        wt.wait_for(done, 1800, 0.02, f"{changes} events of stream {name} in Kafka")
    return res


def load_changes(pg, changes: int, per_txn: int = 10000) -> float:
    """Commits ``changes`` inserts into bench_events, ``per_txn`` a transaction; seconds."""
    t0 = time.monotonic()
    done = 0
    with pg.connect() as conn:
        while done < changes:
            n = min(per_txn, changes - done)
            conn.execute("INSERT INTO bench_events (account, amount, note) "
                         "SELECT g %% 1000, (g %% 100000) / 100.0, 'note ' || g "
                         "FROM generate_series(%s::bigint, %s::bigint) g", (done, done + n - 1))
            done += n
    return time.monotonic() - t0


def catch_up(pg, kafka, changes: int, deliveries: list[str], tag: str, warmup: bool,
             kafka_props: dict | None = None, eos_extra: dict | None = None,
             per_txn: int = 10000) -> dict:
    """One stream per delivery, all stopped while ``changes`` are committed, then timed
    one after the other, in the order of ``deliveries``; ``kafka_props``: the Kafka
    properties of the measured streams, ``eos_extra``: more options of the exactly_once
    ones."""
    pg.execute(TABLE_DDL)
    # All slots exist before the load, so every stream has all of it to send.
    extra = {"kafka": kafka_props} if kafka_props else {}

    def options(d):
        return {"delivery": d, **(eos_extra or {} if d == "exactly_once" else {})}

    warmups = [f"warmup_{SHORT[d]}" for d in deliveries] if warmup else []
    for d, name in zip(deliveries, warmups):
        create_stopped_stream(pg, kafka, name, f"warmup-{SHORT[d]}", options(d))
    for d in deliveries:
        create_stopped_stream(pg, kafka, f"cu_{tag}_{SHORT[d]}", f"cu-{tag}-{SHORT[d]}",
                              {**options(d), **extra})
    load_s = load_changes(pg, changes, per_txn)
    target = pg.scalar("SELECT pg_current_wal_flush_lsn()")
    lag = pg.scalar("SELECT pg_wal_lsn_diff(%s::pg_lsn, confirmed_flush_lsn) "
                    "FROM pg_replication_slots WHERE slot_name = %s",
                    (target, f"walship_cu_{tag}_{SHORT[deliveries[0]]}"))
    warmup_s = {}
    for d, name in zip(deliveries, warmups):
        warmup_s[d] = stream_timed(pg, name, changes, target)["confirmed"]
        pg.execute("SELECT walship.drop_stream(%s)", (name,))
    out = {"changes": changes, "load_s": load_s, "wal_bytes": int(lag), "warmup_s": warmup_s,
           "by": {}}
    for d in deliveries:
        name = f"cu_{tag}_{SHORT[d]}"
        load_before = os.getloadavg()
        t = stream_timed(pg, name, changes, target)
        load_after = os.getloadavg()
        st = wt.stream_status(pg, name)
        pg.execute("SELECT walship.drop_stream(%s)", (name,))
        out["by"][d] = {"seconds": t["confirmed"], "acked_s": t["acked"],
                        "events_per_s": changes / t["confirmed"],
                        "events_acked": st["events_acked"],
                        "kafka_transactions": kafka_transactions(kafka, f"cu-{tag}-{SHORT[d]}")
                        if d == "exactly_once" else None,
                        "load": (load_before, load_after)}
    return out


def kafka_transactions(kafka, prefix: str) -> int:
    """Kafka transactions an exactly-once stream committed: each ended with one position
    record in <prefix>.walship.offsets, followed by its commit marker (2 offsets)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "bench-count"})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(f"{prefix}.walship.offsets", 0), 10)
    finally:
        c.close()
    return (hi - lo) // 2


def latency(pg, kafka, rate: int, seconds: int, delivery: str = "at_least_once",
            tag: str = "", kafka_props: dict | None = None, eos_extra: dict | None = None) -> dict:
    """The latency of a new stream of its own table (bench_latency_<tag>, topic prefix
    lat-<tag>) with ``delivery``."""
    table = f"bench_latency_{tag}".rstrip("_")
    prefix = f"lat-{tag}".rstrip("-").replace("_", "-")
    name = f"latency_{tag}".rstrip("_")
    pg.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, v int, t text)")
    options = {"topic_prefix": prefix, "snapshot_mode": "no_data", "delivery": delivery,
               **(eos_extra or {} if delivery == "exactly_once" else {})}
    if kafka_props:
        options["kafka"] = kafka_props
    pg.execute("SELECT walship.create_stream(%s, %s, ARRAY[%s], %s)",
               (name, kafka.bootstrap, f"public.{table}", json.dumps(options)))
    wt.wait_for(lambda: wt.stream_status(pg, name)["state"] == "running", 60, 0.2, "stream running")
    event_class = wt.load_event_class()
    res = measure_latency(pg, kafka, table, f"{prefix}.public.{table}", rate, seconds,
                          lambda value: event_class.FromString(value).source.commit_time_us,
                          group=f"bench-{name}")
    res["delivery"] = delivery
    if delivery == "exactly_once":
        res["kafka_transactions"] = kafka_transactions(kafka, prefix)
    pg.execute("SELECT walship.drop_stream(%s)", (name,))
    return res


def measure_latency(pg, kafka, table: str, topic: str, rate: int, seconds: int,
                    commit_time_us, group: str = "bench-latency") -> dict:
    """A steady load of single-row INSERTs into ``table`` (id bigserial, v int, t text;
    empty, and already streamed by whatever is measured) at ``rate`` transactions/s for
    ``seconds``; a consumer of ``topic`` computes receive time − commit time of every
    event (``commit_time_us(value)``: the commit time in µs since the epoch; None for a
    record to skip, e.g. a tombstone)."""
    return measure_latencies(pg, kafka, table, [topic], rate, seconds, commit_time_us,
                             [group])[0]


def measure_latencies(pg, kafka, table: str, topics: list[str], rate: int, seconds: int,
                      commit_time_us, groups: list[str]) -> list[dict]:
    """measure_latency with one consumer per topic (each its own thread and group), all
    reading the events of the same load: streams of the same table measured at once."""
    # per topic: (receive − commit, the record's Kafka timestamp (produce time) − commit), ms
    samples: list[list[tuple[float, float]]] = [[] for _ in topics]
    stop = threading.Event()

    def consume(topic, group, out):
        from confluent_kafka import Consumer
        c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group, **LATENCY_CONSUMER})
        c.subscribe([topic])
        while not stop.is_set():
            m = c.poll(0.05)
            if m is None or m.error() or m.value() is None:
                continue
            now_us = time.time() * 1e6
            commit_us = commit_time_us(m.value())
            if commit_us is not None:
                out.append(((now_us - commit_us) / 1000.0, m.timestamp()[1] - commit_us / 1000.0))
        c.close()

    threads = [threading.Thread(target=consume, args=(t, g, out), daemon=True)
               for t, g, out in zip(topics, groups, samples)]
    for th in threads:
        th.start()
    # Warm up outside the measurement: walship creates the topic with the first event,
    # and the consumer group joins only once the topic exists.
    pg.execute(f"INSERT INTO {table} (v, t) VALUES (0, 'warm-up')")
    wt.wait_for(lambda: all(len(out) >= 1 for out in samples), 120, 0.1, "the warm-up event")
    time.sleep(1)
    for out in samples:
        out.clear()
    script = Path(pg.base_dir) / f"insert-{table}.sql"
    script.write_text(f"INSERT INTO {table} (v, t) VALUES (random() * 1000, 'x');\n")
    os.chmod(script, 0o644)
    cmd = [pg.bin("pgbench"), "-n", "-h", pg.host, "-p", str(pg.port), "-U", pg.user,
           "-c", "4", "-j", "2", "-R", str(rate), "-T", str(seconds), "-f", str(script), "postgres"]
    load_before = os.getloadavg()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    load_after = os.getloadavg()
    committed = pg.scalar(f"SELECT count(*) FROM {table}") - 1  # less the warm-up
    try:
        wt.wait_for(lambda: all(len(out) >= committed for out in samples), 120, 0.2,
                    "all latency events consumed")
    finally:
        stop.set()
        for th in threads:
            th.join(10)
    qq = lambda v, p: v[min(len(v) - 1, int(p * len(v)))]  # noqa: E731
    tps = next((ln for ln in res.stdout.splitlines() if ln.startswith("tps")), "")
    results = []
    for out in samples:
        s = sorted(t for t, _ in out)
        pr = sorted(p for _, p in out)  # commit → produce
        split = sorted(t - p for t, p in out)  # produce → receive
        results.append({"transactions": committed, "rate": rate, "seconds": seconds,
                        "pgbench": tps.strip(), "p50_ms": qq(s, 0.50), "p95_ms": qq(s, 0.95),
                        "p99_ms": qq(s, 0.99), "max_ms": s[-1], "mean_ms": statistics.fmean(s),
                        "load": (load_before, load_after),
                        "produce_p50_ms": qq(pr, 0.50), "produce_p99_ms": qq(pr, 0.99),
                        "visible_p50_ms": qq(split, 0.50), "visible_p99_ms": qq(split, 0.99)})
    return results


def latency_paired(pg, kafka, rate: int, seconds: int, deliveries: list[str], tag: str,
                   kafka_props: dict | None = None, eos_extra: dict | None = None) -> dict:
    """One table, one load, one stream per delivery at once (each its own topic and
    consumer): the deliveries see the same transactions at the same moments, so the
    machine's noise is common to them; each worker also competes with the other."""
    table = f"bench_latency_{tag}"
    pg.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, v int, t text)")
    names, topics = [], []
    for d in deliveries:
        name, prefix = f"latency_{tag}_{SHORT[d]}", f"lat-{tag}-{SHORT[d]}".replace("_", "-")
        options = {"topic_prefix": prefix, "snapshot_mode": "no_data", "delivery": d,
                   **(eos_extra or {} if d == "exactly_once" else {})}
        if kafka_props:
            options["kafka"] = kafka_props
        pg.execute("SELECT walship.create_stream(%s, %s, ARRAY[%s], %s)",
                   (name, kafka.bootstrap, f"public.{table}", json.dumps(options)))
        names.append(name)
        topics.append(f"{prefix}.public.{table}")
    for name in names:
        wt.wait_for(lambda: wt.stream_status(pg, name)["state"] == "running", 60, 0.2,
                    "stream running")
    event_class = wt.load_event_class()
    res = measure_latencies(pg, kafka, table, topics, rate, seconds,
                            lambda value: event_class.FromString(value).source.commit_time_us,
                            [f"bench-{n}" for n in names])
    out = {}
    for d, name, r in zip(deliveries, names, res):
        r["delivery"] = d
        if d == "exactly_once":
            r["kafka_transactions"] = kafka_transactions(kafka, f"lat-{tag}-{SHORT[d]}".replace("_", "-"))
        pg.execute("SELECT walship.drop_stream(%s)", (name,))
        out[d] = r
    return out


def loads(before_after) -> str:
    """The 1-minute load average before and after a phase: the machine is shared."""
    return " → ".join(f"{b[0]:.1f}" for b in before_after)


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), "0")
    return f"{os.cpu_count()} cores ({cpu}), {int(mem) // 1024 // 1024} GiB, {platform.platform()}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--deliveries", default=",".join(DELIVERIES),
                    help="comma-separated stream deliveries to compare (default: both)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds of every measurement, the order of the deliveries reversed "
                         "in even rounds (default 3 with two deliveries, else 1)")
    ap.add_argument("--kafka", default=None,
                    help='Kafka properties of the measured streams, JSON, e.g. \'{"debug": "eos"}\'')
    ap.add_argument("--interval", type=int, default=None,
                    help="transaction_interval_ms of the exactly_once streams (default: walship's)")
    ap.add_argument("--paired-rounds", type=int, default=None,
                    help="after the rounds, rounds of the latency with every delivery's stream "
                         "of the same table at once (default 2 with two deliveries, else 0)")
    ap.add_argument("--skip", default="", help="comma-separated: catch-up, latency")
    ap.add_argument("--no-warmup", action="store_true",
                    help="measure the catch-up on a broker that has just started")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = ap.parse_args()
    deliveries = [d.strip() for d in args.deliveries.split(",") if d.strip()]
    if any(d not in DELIVERIES for d in deliveries) or not deliveries:
        ap.error(f"--deliveries: one or more of {', '.join(DELIVERIES)}")
    rounds = args.rounds or (3 if len(deliveries) > 1 else 1)
    kafka_props = json.loads(args.kafka) if args.kafka else None
    skip = set(filter(None, args.skip.split(",")))
    settings = {"shared_buffers": "1GB", "max_wal_size": "8GB", "synchronous_commit": "on"}
    eos_extra = {"transaction_interval_ms": args.interval} if args.interval is not None else {}
    results, paired = [], []
    with wt.KafkaBroker() as kafka, wt.PgCluster("bench", logical_decoding_work_mem="64MB",
                                                 settings=settings) as pg:
        pg.execute("CREATE EXTENSION walship")
        pgv = pg.scalar("SHOW server_version")
        print(f"PostgreSQL {pgv}, log {pg.log_path}", flush=True)
        for r in range(1, rounds + 1):
            order = deliveries if r % 2 == 1 else deliveries[::-1]
            res = {"round": r, "order": order, "catch_up": None, "latency": {}}
            if "catch-up" not in skip:
                cu = catch_up(pg, kafka, args.changes, order, f"r{r}",
                              not args.no_warmup and r == 1, kafka_props, eos_extra)
                res["catch_up"] = cu
                for d in order:
                    b = cu["by"][d]
                    print(f"round {r} catch-up {d}: {cu['changes']} changes "
                          f"({cu['wal_bytes'] / 2**20:.0f} MiB of WAL) in {b['seconds']:.2f} s = "
                          f"{b['events_per_s']:,.0f} events/s (acknowledged after "
                          f"{b['acked_s']:.2f} s; Kafka transactions {b['kafka_transactions']}; "
                          f"load average {loads(b['load'])})", flush=True)
            if "latency" not in skip:
                for d in order:
                    lat = latency(pg, kafka, args.rate, args.seconds, d, f"r{r}_{SHORT[d]}",
                                  kafka_props, eos_extra)
                    res["latency"][d] = lat
                    print(f"round {r} latency {d}: {lat['transactions']} transactions at "
                          f"{lat['rate']}/s for {lat['seconds']} s: p50 {lat['p50_ms']:.1f} ms, "
                          f"p95 {lat['p95_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max "
                          f"{lat['max_ms']:.1f} ms (commit→produce p50/p99 "
                          f"{lat['produce_p50_ms']:.1f}/{lat['produce_p99_ms']:.1f}, "
                          f"produce→receive {lat['visible_p50_ms']:.1f}/{lat['visible_p99_ms']:.1f}; "
                          f"Kafka transactions {lat.get('kafka_transactions')}; {lat['pgbench']}; "
                          f"load average {loads(lat['load'])})", flush=True)
            results.append(res)
        paired_rounds = (args.paired_rounds if args.paired_rounds is not None
                         else (2 if len(deliveries) > 1 else 0))
        for r in range(1, paired_rounds + 1 if "latency" not in skip else 1):
            lat = latency_paired(pg, kafka, args.rate, args.seconds, deliveries, f"p{r}",
                                 kafka_props, eos_extra)
            paired.append({"round": r, "order": deliveries, "latency": lat})
            for d in deliveries:
                x = lat[d]
                print(f"paired round {r} latency {d}: p50 {x['p50_ms']:.1f} ms, p95 "
                      f"{x['p95_ms']:.1f} ms, p99 {x['p99_ms']:.1f} ms, max {x['max_ms']:.1f} ms "
                      f"(commit→produce p50/p99 {x['produce_p50_ms']:.1f}/{x['produce_p99_ms']:.1f}, "
                      f"produce→receive {x['visible_p50_ms']:.1f}/{x['visible_p99_ms']:.1f}; "
                      f"Kafka transactions {x.get('kafka_transactions')}; {x['pgbench']}; "
                      f"load average {loads(x['load'])})", flush=True)
    if args.no_write:
        return 0
    today = datetime.date.today().isoformat()
    cmd = "python3 bench/stream/run.py " + " ".join(sys.argv[1:])
    if len(deliveries) == 1:
        out = ROOT / "bench" / "results" / f"stream-{today}.md"
    else:
        out = ROOT / "bench" / "results" / f"stream-delivery-{today}.md"
    if out.exists():  # an earlier run of the day stays
        out = out.with_name(f"{out.stem}-{datetime.datetime.now():%H%M%S}.md")
    out.write_text(report(results, paired, deliveries, args, cmd.strip(), pgv, today, kafka_props))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


def median(values):
    return statistics.median(values) if values else float("nan")


def report(results, paired, deliveries, args, cmd, pgv, today, kafka_props) -> str:
    consumer = ", ".join(f"{k}={v}" for k, v in LATENCY_CONSUMER.items())
    lines = [f"# walship streaming benchmark: {' against '.join(deliveries)}, {today}", "",
             f"Command: `{cmd}` (after `scripts/install-deps.sh` and a build + install)", "",
             f"Machine: {machine()}; PostgreSQL {pgv}; Kafka broker from tests/kafka/kafka.sh on "
             "the same machine (single node, KRaft, loopback); stream format protobuf, 4 "
             f"partitions for the catch-up, 1 for the latency; Kafka properties "
             f"{json.dumps(kafka_props) if kafka_props else 'default'}"
             + (f"; exactly_once with transaction_interval_ms {args.interval}"
                if args.interval is not None else
                "; exactly_once with its defaults (transaction_interval_ms 50, "
                "transaction_max_events 100000)") + ".",
             "The machine is shared: the 1-minute load average before → after each phase is "
             "in the tables (2 cores: above 2, walship, PostgreSQL and Kafka wait for CPU).",
             f"{len(results)} rounds, each measuring every delivery on the same server and broker; "
             "odd rounds in the order given, even rounds reversed.", ""]
    cu_rows = [r for r in results if r["catch_up"]]
    if cu_rows:
        first = cu_rows[0]["catch_up"]
        warm = ", ".join(f"{d} {t:.1f} s" for d, t in first["warmup_s"].items())
        lines += ["## Catch-up", "",
                  f"{first['changes']:,} changes ({first['wal_bytes'] / 2**20:.0f} MiB of WAL, "
                  f"transactions of 10,000 rows) committed while a stopped stream of each delivery "
                  "waited, then each stream started and timed until its slot's "
                  "confirmed_flush_lsn passed the WAL flushed after the load (exactly_once: the "
                  "slot is confirmed only once the Kafka transaction holding the changes "
                  "committed, so read_committed consumers see all of them; at_least_once: Kafka "
                  "acknowledged all of them). \"acked\": until stream_status.events_acked "
                  "reached N (exactly_once: produced inside a transaction not yet committed). "
                  + (f"Broker warmed up first (the same changes through one unmeasured stream "
                     f"per delivery: {warm})." if warm else "Broker not warmed up."), "",
                  "| round | delivery | seconds | **events/s** | acked after | Kafka transactions | load average |",
                  "|---|---|---|---|---|---|---|"]
        for r in cu_rows:
            for d in r["order"]:
                b = r["catch_up"]["by"][d]
                lines.append(f"| {r['round']} | {d} | {b['seconds']:.2f} | **{b['events_per_s']:,.0f}** | "
                             f"{b['acked_s']:.2f} s | {b['kafka_transactions'] if b['kafka_transactions'] is not None else '–'} | "
                             f"{loads(b['load'])} |")
        if set(deliveries) == set(DELIVERIES):
            ratios = [r["catch_up"]["by"]["exactly_once"]["events_per_s"] /
                      r["catch_up"]["by"]["at_least_once"]["events_per_s"] for r in cu_rows]
            ok = median(ratios) >= 0.70
            lines += ["", "exactly_once / at_least_once events/s in each round: "
                      + ", ".join(f"{x:.0%}" for x in ratios)
                      + f"; median **{median(ratios):.0%}** (target ≥ 70%: "
                      f"{'met' if ok else 'not met'}; lowest round {min(ratios):.0%})."]
        lines.append("")
    lat_rows = [r for r in results if r["latency"]]
    if lat_rows or paired:
        any_lat = next(iter((lat_rows or paired)[0]["latency"].values()))
        lines += ["## Latency", "",
                  f"Commit-to-consume latency: pgbench -R {any_lat['rate']} -c 4 -j 2 for "
                  f"{any_lat['seconds']} s of single-row INSERT transactions; receive time − "
                  "source.commit_time_us of every event. Consumer (the same for every "
                  f"delivery): {consumer}. \"commit → produce\": the record's Kafka timestamp "
                  "(librdkafka's create time) − commit time; \"produce → receive\": the rest "
                  "(broker, Kafka transaction, fetch).", ""]
    if lat_rows:
        lines += ["One delivery at a time: a new stream of a table of its own, alone on the "
                  "machine (of this benchmark).", ""]
        lines += latency_table(lat_rows, deliveries)
    if paired:
        lines += ["Paired: one table and one load, streamed by one stream per delivery at "
                  "once (each its own topic and read_committed consumer), so the deliveries "
                  "see the same transactions at the same moments and the machine's noise is "
                  "common to them; each worker also competes with the other for the CPU.", ""]
        lines += latency_table(paired, deliveries)
    return "\n".join(lines)


def latency_table(rows, deliveries) -> list[str]:
    lines = ["| round | delivery | tx | p50 | p95 | **p99** | max | commit → produce p50 / p99 | produce → receive p50 / p99 | Kafka transactions | pgbench tps | load average |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for d in r["order"]:
            x = r["latency"][d]
            tps = x["pgbench"].split("=")[1].split()[0] if "=" in x["pgbench"] else x["pgbench"]
            lines.append(f"| {r['round']} | {d} | {x['transactions']:,} | {x['p50_ms']:.1f} ms | "
                         f"{x['p95_ms']:.1f} ms | **{x['p99_ms']:.1f} ms** | {x['max_ms']:.1f} ms | "
                         f"{x['produce_p50_ms']:.1f} / {x['produce_p99_ms']:.1f} ms | "
                         f"{x['visible_p50_ms']:.1f} / {x['visible_p99_ms']:.1f} ms | "
                         f"{x.get('kafka_transactions', '–')} | {float(tps):.1f} | {loads(x['load'])} |")
    if "exactly_once" in deliveries:
        p99s = [r["latency"]["exactly_once"]["p99_ms"] for r in rows]
        ok = median(p99s) <= 100
        text = ("exactly_once p99 in each round: " + ", ".join(f"{x:.1f} ms" for x in p99s)
                + f"; median **{median(p99s):.1f} ms** (target ≤ 100 ms: "
                f"{'met' if ok else 'not met'}; worst round {max(p99s):.1f} ms)")
        if "at_least_once" in deliveries:
            alo = [r["latency"]["at_least_once"]["p99_ms"] for r in rows]
            text += ("; at_least_once p99 in the same rounds: " + ", ".join(f"{x:.1f} ms" for x in alo)
                     + f", median {median(alo):.1f} ms")
        lines += ["", text + "."]
    lines.append("")
    return lines


if __name__ == "__main__":
    sys.exit(main())
