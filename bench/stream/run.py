"""walship streaming benchmarks: catch-up throughput and commit-to-consume latency.

    python3 bench/stream/run.py [--changes 1000000] [--rate 2000] [--seconds 30]

1. catch-up: a stream is created and stopped; N changes are committed while it is
   stopped (they wait in WAL); the stream is started and timed until Kafka has
   acknowledged all N events (walship.stream_status.events_acked). Prints events/s.
   Unless --no-warmup, a second stream streams the same N changes to other topics
   first, unmeasured: the broker was started seconds earlier, and a JVM that has not
   compiled its hot paths yet spends 2-3 times the CPU per event that it spends once
   warm (its JIT compiler threads compete for the same two cores), which would measure
   the broker's start-up rather than walship.
2. latency: a steady load of single-row INSERT transactions at --rate per second
   (pgbench -R) for --seconds; a consumer reads every event and computes
   receive time − commit time (source.commit_time_us). Prints p50/p95/p99/max.

Runs a throwaway PostgreSQL and a local Kafka broker on this machine, both started
and stopped here. Writes a result file into bench/results/ with the command, the
machine and the date.
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
    with pg.connect() as conn:
        t0 = time.monotonic()
        conn.execute("SELECT walship.start_stream(%s)", (name,))
        wt.wait_for(lambda: acked(pg, name, conn) >= changes, 1800, 0.05,
                    f"{changes} events of stream {name} acknowledged")
        return time.monotonic() - t0


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


def catch_up(pg, kafka, changes: int, warmup: bool, per_txn: int = 10000) -> dict:
    pg.execute(TABLE_DDL)
    # Both slots exist before the load, so both streams have all of it to send.
    if warmup:
        create_stopped_stream(pg, kafka, "warmup", "warmup")
    create_stopped_stream(pg, kafka, "catchup", "bench")
    load_s = load_changes(pg, changes, per_txn)
    lag = pg.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) "
                    "FROM pg_replication_slots WHERE slot_name = 'walship_catchup'")
    warmup_s = None
    if warmup:
        warmup_s = stream_all(pg, "warmup", changes)
        pg.execute("SELECT walship.drop_stream('warmup')")
    load_before = os.getloadavg()
    elapsed = stream_all(pg, "catchup", changes)
    load_after = os.getloadavg()
    st = wt.stream_status(pg, "catchup")
    pg.execute("SELECT walship.drop_stream('catchup')")
    return {"changes": changes, "load_s": load_s, "wal_bytes": int(lag), "seconds": elapsed,
            "events_per_s": changes / elapsed, "events_acked": st["events_acked"], "warmup_s": warmup_s,
            "load": (load_before, load_after)}


def latency(pg, kafka, rate: int, seconds: int) -> dict:
    pg.execute("CREATE TABLE IF NOT EXISTS bench_latency (id bigserial PRIMARY KEY, v int, t text)")
    pg.execute("SELECT walship.create_stream('latency', %s, ARRAY['public.bench_latency'], "
               "'{\"topic_prefix\": \"lat\", \"snapshot_mode\": \"no_data\"}')", (kafka.bootstrap,))
    wt.wait_for(lambda: wt.stream_status(pg, "latency")["state"] == "running", 60, 0.2, "stream running")
    event_class = wt.load_event_class()
    res = measure_latency(pg, kafka, "bench_latency", "lat.public.bench_latency", rate, seconds,
                          lambda value: event_class.FromString(value).source.commit_time_us)
    pg.execute("SELECT walship.drop_stream('latency')")
    return res


def measure_latency(pg, kafka, table: str, topic: str, rate: int, seconds: int,
                    commit_time_us, group: str = "bench-latency") -> dict:
    """A steady load of single-row INSERTs into ``table`` (id bigserial, v int, t text;
    empty, and already streamed by whatever is measured) at ``rate`` transactions/s for
    ``seconds``; a consumer of ``topic`` computes receive time − commit time of every
    event (``commit_time_us(value)``: the commit time in µs since the epoch; None for a
    record to skip, e.g. a tombstone)."""
    samples: list[float] = []
    stop = threading.Event()

    def consume():
        from confluent_kafka import Consumer
        c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 5, "topic.metadata.refresh.interval.ms": 500})
        c.subscribe([topic])
        while not stop.is_set():
            m = c.poll(0.05)
            if m is None or m.error() or m.value() is None:
                continue
            now_us = time.time() * 1e6
            commit_us = commit_time_us(m.value())
            if commit_us is not None:
                samples.append((now_us - commit_us) / 1000.0)
        c.close()

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    # Warm up outside the measurement: walship creates the topic with the first event,
    # and the consumer group joins only once the topic exists.
    pg.execute(f"INSERT INTO {table} (v, t) VALUES (0, 'warm-up')")
    wt.wait_for(lambda: len(samples) >= 1, 120, 0.1, "the warm-up event")
    time.sleep(1)
    samples.clear()
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
        wt.wait_for(lambda: len(samples) >= committed, 120, 0.2, "all latency events consumed")
    finally:
        stop.set()
        th.join(10)
    s = sorted(samples)
    q = lambda p: s[min(len(s) - 1, int(p * len(s)))]  # noqa: E731
    tps = next((ln for ln in res.stdout.splitlines() if ln.startswith("tps")), "")
    return {"transactions": committed, "rate": rate, "seconds": seconds, "pgbench": tps.strip(),
            "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": s[-1],
            "mean_ms": statistics.fmean(s), "load": (load_before, load_after)}


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
    ap.add_argument("--no-warmup", action="store_true",
                    help="measure the catch-up on a broker that has just started")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = ap.parse_args()
    settings = {"shared_buffers": "1GB", "max_wal_size": "8GB", "synchronous_commit": "on"}
    with wt.KafkaBroker() as kafka, wt.PgCluster("bench", logical_decoding_work_mem="64MB",
                                                 settings=settings) as pg:
        pg.execute("CREATE EXTENSION walship")
        pgv = pg.scalar("SHOW server_version")
        cu = catch_up(pg, kafka, args.changes, not args.no_warmup)
        warmed = (f"broker warmed up first (the same changes through another stream, "
                  f"{cu['warmup_s']:.1f} s)" if cu["warmup_s"] else "broker just started (cold)")
        print(f"catch-up: {cu['changes']} changes ({cu['wal_bytes'] / 2**20:.0f} MiB of WAL) into Kafka "
              f"in {cu['seconds']:.2f} s = {cu['events_per_s']:,.0f} events/s ({warmed}; "
              f"load average {loads(cu['load'])})", flush=True)
        lat = latency(pg, kafka, args.rate, args.seconds)
        print(f"latency: {lat['transactions']} transactions at {lat['rate']}/s for {lat['seconds']} s: "
              f"p50 {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
              f"max {lat['max_ms']:.1f} ms ({lat['pgbench']}; load average {loads(lat['load'])})",
              flush=True)
    if not args.no_write:
        today = datetime.date.today().isoformat()
        out = ROOT / "bench" / "results" / f"stream-{today}.md"
        cmd = "python3 bench/stream/run.py " + " ".join(sys.argv[1:])
        out.write_text(f"""# walship streaming benchmark, {today}

Command: `{cmd.strip()}` (after `scripts/install-deps.sh` and a build + install)

Machine: {machine()}; PostgreSQL {pgv}; Kafka broker from tests/kafka/kafka.sh on the same
machine (single node, KRaft, loopback); stream format protobuf, default producer settings.
The machine may be shared: the 1-minute load average before → after each phase is in
the table (2 cores: above 2, walship, PostgreSQL and Kafka wait for CPU).

| benchmark | result | target | load average |
|---|---|---|---|
| catch-up of {cu['changes']:,} changes waiting in WAL ({cu['wal_bytes'] / 2**20:.0f} MiB), {warmed} | {cu['seconds']:.2f} s, **{cu['events_per_s']:,.0f} events/s** | ≥ 100,000 events/s | {loads(cu['load'])} |
| commit-to-consume latency at {lat['rate']} tx/s for {lat['seconds']} s ({lat['transactions']:,} tx) | p50 {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms, **p99 {lat['p99_ms']:.1f} ms**, max {lat['max_ms']:.1f} ms | p99 ≤ 50 ms | {loads(lat['load'])} |

pgbench: {lat['pgbench']}
""")
        print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
