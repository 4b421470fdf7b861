"""walship's initial snapshot against the real Debezium's, in one run on one machine.

    python3 bench/snapshot/run.py [--rows 10000000] [--pgbench-seconds 60]
                                  [--pgbench-scale 10] [--pgbench-clients 2]
                                  [--only warmup,walship-json,walship-protobuf,debezium,pgbench]
                                  [--chunk-size N] [--no-write]

One throwaway PostgreSQL and one local Kafka broker (bench/debezium's settings and
harness). One table ``public.snap`` of --rows rows and 8 columns (bigint key, int,
bigint, 40-character text, timestamptz, numeric(12,2), boolean, uuid), loaded with one
INSERT ... SELECT before any slot exists, then frozen (VACUUM FREEZE: no engine pays
for hint bits its predecessor set) and checkpointed. Then, one engine at a time, each
alone on the machine, into its own topic of 4 partitions:

1. walship json: ``create_stream(.., ARRAY['public.snap'], {"format": "json", ...})``
   with the default ``snapshot_mode`` (initial); timed from the create_stream call
   until ``stream_status.snapshot_state = 'done'`` and ``events_acked`` >= N (the
   topic's end offsets are then checked to sum to >= N). The stream worker's memory
   (/proc/<pid>/status VmRSS, RssAnon, RssShmem; smaps_rollup Pss, Pss_Anon) and the
   stream's ``snapshot_rows`` are sampled throughout; ``pg_log_backend_memory_contexts``
   is asked of the worker early and late (its "Grand total" lines in the server log);
2. walship protobuf: the same with ``format=protobuf``;
3. Debezium 3.4 (Kafka Connect 4.1 standalone, bench/debezium's tuned worker and
   connector config) with ``snapshot.mode=initial`` (its blocking initial snapshot),
   ``table.include.list=public.snap``; timed from the REST call that adds the connector
   until the topic's end offsets sum to N, exactly as bench/debezium times catch-up;
4. pgbench (TPC-B-like, ``-c`` clients, ``-j 1``, on ``pgbench -i -s`` tables in the
   same database, not streamed): T seconds with nothing else running (baseline), T
   seconds started right after a walship json create_stream of public.snap (during
   its snapshot; T is chosen shorter than step 1's snapshot), and T seconds baseline
   again. TPS during ÷ the mean of both baselines.

Unmeasured warm-ups first (unless --only leaves them out): a walship json snapshot and
a Debezium snapshot of a smaller copy (``public.snap_warm``, up to 200,000 rows), so that
neither the broker's nor Connect's JIT compilation is measured.

Targets (the issue): walship rows/s >= 5x Debezium's; pgbench TPS during the snapshot
>= 80% of without; the worker's memory flat. Writes bench/results/snapshot-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lib"))
import walship_testlib as wt  # noqa: E402
from walship_testlib.common import log  # noqa: E402
from walship_testlib.connect import KafkaConnect, connect_version, debezium_version  # noqa: E402
from walship_testlib.kafkactl import kafka_version  # noqa: E402


def _load(name: str, path: Path):
    """bench/debezium/run.py and bench/stream/run.py: both files are named run.py, so
    they are loaded by path (as bench/debezium loads bench/stream)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


dbz = _load("walship_bench_debezium", ROOT / "bench" / "debezium" / "run.py")
sb = dbz.sb  # bench/stream/run.py, as bench/debezium loaded it

PARTITIONS = dbz.PARTITIONS  # 4
TABLE = "snap"
WARM_TABLE = "snap_warm"
WARM_ROWS = 200_000
PHASES = ("warmup", "walship-json", "walship-protobuf", "debezium", "pgbench")
SAMPLE_S = 0.25  # memory and progress sampling interval
FLAT_SLACK_KB = 16 * 1024

TABLE_DDL = """
CREATE TABLE {t} (
    id bigint NOT NULL, a int NOT NULL, b bigint NOT NULL, c text NOT NULL,
    d timestamptz NOT NULL, e numeric(12,2) NOT NULL, f boolean NOT NULL, g uuid NOT NULL)
"""
# c: 32 hex digits + 8 digits = 40 characters; g: a uuid from the same md5
LOAD_SQL = """
INSERT INTO {t}
SELECT i, (i %% 100000)::int, i * 7919, md5(i::text) || lpad((i %% 100000000)::text, 8, '0'),
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second',
       ((i %% 10000000) / 100.0)::numeric(12,2), i %% 2 = 0, md5(i::text || 'g')::uuid
FROM generate_series(1::bigint, %s::bigint) i
"""


# -- the table ------------------------------------------------------------------------------
def load_table(pg, rows: int) -> dict:
    """public.snap with ``rows`` rows (one INSERT ... SELECT into a table without an
    index, then the primary key built once: cheaper than 10M index insertions), and
    public.snap_warm, a copy of its first rows for the warm-ups; both frozen, analysed,
    checkpointed."""
    t0 = time.monotonic()
    with pg.connect() as conn:
        for t in (TABLE, WARM_TABLE):
            conn.execute(TABLE_DDL.format(t=t))
        conn.execute(LOAD_SQL.format(t=TABLE), (rows,))
        t_insert = time.monotonic() - t0
        conn.execute(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (id)")
        conn.execute(f"INSERT INTO {WARM_TABLE} SELECT * FROM {TABLE} WHERE id <= %s",
                     (min(rows, WARM_ROWS),))
        conn.execute(f"ALTER TABLE {WARM_TABLE} ADD PRIMARY KEY (id)")
        t_index = time.monotonic() - t0
        conn.execute(f"VACUUM (FREEZE, ANALYZE) {TABLE}")
        conn.execute(f"VACUUM (FREEZE, ANALYZE) {WARM_TABLE}")
        conn.execute("CHECKPOINT")
        size = conn.execute(f"SELECT pg_total_relation_size('{TABLE}'), pg_relation_size('{TABLE}')").fetchone()
        count = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    if count != rows:
        raise RuntimeError(f"{TABLE} holds {count} rows, not {rows}")
    return {"seconds": time.monotonic() - t0, "insert_s": t_insert, "index_s": t_index - t_insert,
            "total_bytes": size[0], "heap_bytes": size[1]}


# -- sampling -------------------------------------------------------------------------------
def proc_memory(pid: int) -> dict | None:
    """kB figures of process ``pid``: VmRSS, RssAnon, RssFile, RssShmem (status) and
    Pss, Pss_Anon, Pss_Shmem (smaps_rollup). None once it is gone."""
    out: dict[str, int] = {}
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = ln.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[k] = int(v.split()[0])
        for ln in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            k, _, v = ln.partition(":")
            if k in ("Pss", "Pss_Anon", "Pss_Shmem", "Pss_File"):
                out[k] = int(v.split()[0])
    except (OSError, ValueError):
        return None
    return out


class Sampler(threading.Thread):
    """Every SAMPLE_S: the memory of the process ``pid`` (settable later) and whatever
    ``probe()`` returns (e.g. the stream's snapshot_rows), with the time since t0."""

    def __init__(self, t0: float, pid: int | None = None, probe=None):
        super().__init__(daemon=True)
        self.t0, self.pid, self.probe = t0, pid, probe
        self.mem: list[tuple[float, dict]] = []
        self.progress: list[tuple[float, object]] = []
        self.stop_ev = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_ev.is_set():
                t = time.monotonic() - self.t0
                if self.pid:
                    m = proc_memory(self.pid)
                    if m:
                        self.mem.append((t, m))
                if self.probe:
                    p = self.probe()
                    if p is not None:
                        self.progress.append((t, p))
                self.stop_ev.wait(SAMPLE_S)
        except BaseException as e:  # reported by the caller
            self.error = e

    def finish(self) -> None:
        self.stop_ev.set()
        self.join(10)


def memory_summary(mem: list[tuple[float, dict]]) -> dict | None:
    """start (first sample), at 10% / 50% / 90% of the run, max and end (last sample) of
    every figure, in kB; ``flat``: RssAnon's max in the second half of the run is at most
    FLAT_SLACK_KB above its max in the first half (memory does not grow with the rows)."""
    if not mem:
        return None
    span = mem[-1][0] - mem[0][0]

    def at(frac):
        t = mem[0][0] + frac * span
        return min(mem, key=lambda s: abs(s[0] - t))[1]

    keys = list(mem[0][1])
    out = {"samples": len(mem), "seconds": span}
    for k in keys:
        vals = [m.get(k, 0) for _, m in mem]
        out[k] = {"start": vals[0], "p10": at(0.1).get(k, 0), "p50": at(0.5).get(k, 0),
                  "p90": at(0.9).get(k, 0), "max": max(vals), "end": vals[-1]}
    half = mem[0][0] + span / 2
    first = [m.get("RssAnon", 0) for t, m in mem if t <= half]
    second = [m.get("RssAnon", 0) for t, m in mem if t > half]
    if first and second:
        out["anon_max_first_half"], out["anon_max_second_half"] = max(first), max(second)
        # bounded, not growing with the rows read: the second half never needs more than
        # the first did (librdkafka's queue and the in-flight limit fill early)
        out["flat"] = max(second) <= max(first) + FLAT_SLACK_KB
    return out


def rate_profile(progress: list[tuple[float, object]], rows: int, parts: int = 10) -> list[float]:
    """Rows/s in each tenth of the rows, from the ``snapshot_rows`` samples (the time a
    tenth's bound was passed interpolated between the two samples around it): a snapshot
    that slows down as it goes (a chunk query that rescans what it has read) shows here."""
    pts = [(0.0, 0)] + [(t, int(r)) for t, r in progress if r is not None]
    if len(pts) < 3 or pts[-1][1] < rows:
        return []

    def when(n: float) -> float:
        for (t0, r0), (t1, r1) in zip(pts, pts[1:]):
            if r1 >= n:
                return t0 if r1 == r0 else t0 + (t1 - t0) * (n - r0) / (r1 - r0)
        return pts[-1][0]

    bounds = [when(rows * k / parts) for k in range(parts + 1)]
    return [(rows / parts) / (b - a) if b > a else float("nan") for a, b in zip(bounds, bounds[1:])]


def memory_context_totals(pg, pid: int) -> list[str]:
    """The "Grand total" lines that pg_log_backend_memory_contexts(pid) wrote into the
    server log for ``pid`` (each call one line)."""
    try:
        text = pg.log_text()
    except Exception:
        return []
    return [ln.split("Grand total:", 1)[1].strip() for ln in text.splitlines()
            if f"[{pid}]" in ln and "Grand total:" in ln]


def log_memory_contexts(pg, pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return bool(pg.scalar("SELECT pg_log_backend_memory_contexts(%s)", [pid]))
    except Exception as e:
        log(f"bench: pg_log_backend_memory_contexts({pid}): {e}")
        return False


# -- pgbench --------------------------------------------------------------------------------
def pgbench_init(pg, scale: int) -> float:
    t0 = time.monotonic()
    subprocess.run([pg.bin("pgbench"), "-i", "-q", "-s", str(scale), "-h", pg.host, "-p", str(pg.port),
                    "-U", pg.user, "postgres"], check=True, capture_output=True, text=True)
    pg.execute("VACUUM (FREEZE, ANALYZE) pgbench_accounts")
    pg.execute("CHECKPOINT")
    return time.monotonic() - t0


def pgbench_start(pg, seconds: int, clients: int, jobs: int) -> subprocess.Popen:
    cmd = [pg.bin("pgbench"), "-n", "-T", str(seconds), "-c", str(clients), "-j", str(jobs),
           "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "postgres"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def pgbench_result(p: subprocess.Popen) -> dict:
    out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"pgbench failed (exit {p.returncode}):\n{out}\n{err}")
    tps = re.search(r"^tps = ([0-9.]+)", out, re.M)
    lat = re.search(r"^latency average = ([0-9.]+) ms", out, re.M)
    tx = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
    if not tps:
        raise RuntimeError(f"no tps in pgbench's output:\n{out}")
    return {"tps": float(tps.group(1)), "latency_ms": float(lat.group(1)) if lat else None,
            "transactions": int(tx.group(1)) if tx else None}


def pgbench_baseline(pg, seconds: int, clients: int, jobs: int) -> dict:
    pg.execute("CHECKPOINT")
    load0 = os.getloadavg()
    r = pgbench_result(pgbench_start(pg, seconds, clients, jobs))
    r["load"] = (load0, os.getloadavg())
    return r


# -- walship --------------------------------------------------------------------------------
def has_snapshots(pg) -> bool:
    with pg.connect() as conn:
        cur = conn.execute("SELECT * FROM walship.stream_status LIMIT 0")
        return "snapshot_state" in [c.name for c in cur.description]


def walship_snapshot(pg, kafka, topics, name: str, table: str, rows: int, options: dict,
                     pgbench: tuple[int, int, int] | None = None) -> dict:
    """create_stream of ``table`` with ``options``; seconds until its snapshot is done and
    Kafka has all ``rows``; the worker's memory and the snapshot's progress sampled
    meanwhile. ``pgbench``: (seconds, clients, jobs) of a pgbench started right after
    create_stream returned."""
    topic = f"{name}.public.{table}"
    opts = {"topic_prefix": name, "partitions": PARTITIONS, **options}
    broker0 = dbz.cpu_s(kafka.pid)
    load0 = os.getloadavg()
    poll = pg.connect()
    probe_conn = pg.connect()
    state = {"pid": None}

    def probe():
        st = wt.stream_status(pg, name, probe_conn)
        if st is None:
            return None
        if st.get("worker_pid") and st["worker_pid"] != state["pid"]:
            state["pid"] = st["worker_pid"]
            sampler.pid = st["worker_pid"]
        return st.get("snapshot_rows")

    ctx_logged = {"early": False, "late": False}
    try:
        t0 = time.monotonic()
        sampler = Sampler(t0, probe=probe)
        poll.execute("SELECT walship.create_stream(%s, %s, ARRAY[%s], %s)",
                     (name, kafka.bootstrap, f"public.{table}", json.dumps(opts)))
        created_s = time.monotonic() - t0
        bench = pgbench_start(pg, *pgbench) if pgbench else None
        sampler.start()
        done_s = None
        pgbench_end_rows = None
        while True:
            st = wt.stream_status(pg, name, poll)
            if st["state"] == "error" or st.get("snapshot_state") == "failed":
                raise RuntimeError(f"stream {name}: state {st['state']}, snapshot "
                                   f"{st.get('snapshot_state')}: {st['last_error']}")
            now = time.monotonic() - t0
            snap_rows = st.get("snapshot_rows") or 0
            if not ctx_logged["early"] and snap_rows >= rows * 0.1:
                ctx_logged["early"] = log_memory_contexts(pg, st["worker_pid"])
            if not ctx_logged["late"] and snap_rows >= rows * 0.9:
                ctx_logged["late"] = log_memory_contexts(pg, st["worker_pid"])
            if bench is not None and pgbench_end_rows is None and bench.poll() is not None:
                pgbench_end_rows = (now, snap_rows, st.get("snapshot_state"))
            if st.get("snapshot_state") == "done" and (st["events_acked"] or 0) >= rows:
                done_s = now
                break
            if st.get("snapshot_state") == "done" and topics.count(topic) >= rows:
                done_s = now
                break
            if now > 7200:
                raise RuntimeError(f"stream {name}: snapshot {st.get('snapshot_state')}, "
                                   f"{snap_rows} rows, {st['events_acked']} acknowledged after 2 h")
            time.sleep(0.05)
        load1 = os.getloadavg()
        broker_cpu = dbz.cpu_s(kafka.pid) - broker0
        sampler.finish()
        if sampler.error:
            raise sampler.error
        st = wt.stream_status(pg, name, poll)
        worker = st["worker_pid"]
        worker_cpu = dbz.cpu_s(worker)
        in_kafka = topics.count(topic)
        if in_kafka < rows:
            raise RuntimeError(f"stream {name}: snapshot done, {st['events_acked']} acknowledged but "
                               f"the topic holds {in_kafka} of {rows}")
        snap = poll.execute("SELECT state, rows_emitted, chunks, resumes, started_at, finished_at, "
                            "extract(epoch FROM finished_at - started_at) FROM walship.snapshots "
                            "WHERE stream = %s", [name]).fetchall()
        pgb = None
        if bench is not None:
            pgb = pgbench_result(bench)
            if pgbench_end_rows is None:  # pgbench outlasted the snapshot
                pgbench_end_rows = (time.monotonic() - t0, rows, "done")
            pgb["ended_at_s"], pgb["snapshot_rows_at_end"], pgb["snapshot_state_at_end"] = pgbench_end_rows
        sample = sample_values(topics, topic, options.get("format", "protobuf"))
        time.sleep(0.5)  # the memory-context lines reach the log
        ctx = memory_context_totals(pg, worker)
    finally:
        poll.close()
        probe_conn.close()
    pg.execute("SELECT walship.drop_stream(%s)", (name,))
    kafka.delete_topics([topic])
    mem = memory_summary(sampler.mem)
    return {"seconds": done_s, "create_stream_s": created_s, "rows_per_s": rows / done_s,
            "in_kafka": in_kafka, "events_acked": st["events_acked"], "cpu_s": worker_cpu,
            "broker_cpu_s": broker_cpu, "load": (load0, load1), "worker_pid": worker,
            "memory": mem, "profile": rate_profile(sampler.progress + [(done_s, rows)], rows), "snapshots": snap,
            "memory_contexts": ctx, "pgbench": pgb, **sample}


def sample_values(topics, topic: str, fmt: str, n: int = 2000) -> dict:
    """Average value size and the ops of ``n`` records of partition 0 (all should be
    reads: op r / READ), and one JSON record's payload.source.snapshot."""
    from confluent_kafka import TopicPartition
    c = topics.c
    c.assign([TopicPartition(topic, 0, 0)])
    vals: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(vals) < n and time.monotonic() < deadline:
        for m in c.consume(500, 1.0):
            if not m.error() and m.value() is not None:
                vals.append(m.value())
    c.unassign()
    if not vals:
        raise RuntimeError(f"no records read from {topic}")
    ops: dict[str, int] = {}
    snapshot_field = None
    if fmt == "json":
        for v in vals:
            p = json.loads(v)["payload"]
            ops[p["op"]] = ops.get(p["op"], 0) + 1
            snapshot_field = p["source"].get("snapshot")
    else:
        cls = wt.load_event_class()
        for v in vals:
            e = cls.FromString(v)
            op = cls.DESCRIPTOR.fields_by_name["op"].enum_type.values_by_number[e.op].name
            ops[op] = ops.get(op, 0) + 1
    return {"value_bytes": sum(map(len, vals)) / len(vals), "ops": ops, "source_snapshot": snapshot_field}


# -- Debezium -------------------------------------------------------------------------------
def debezium_snapshot(pg, kafka, connect: KafkaConnect, topics, name: str, table: str,
                      rows: int) -> dict:
    """Adds connector ``name`` with snapshot.mode=initial for ``table`` (it creates its
    slot and publication); seconds until its topic holds all ``rows`` (bench/debezium's
    catch-up loop); Connect JVM and broker CPU, the JVM's memory."""
    topic = f"{name}.public.{table}"
    kafka.create_topic(topic, PARTITIONS)
    config = dbz.debezium_connector(pg, name, name, f"public.{table}", name,
                                    **{"snapshot.mode": "initial"})
    jvm0, broker0 = dbz.cpu_s(connect.pid), dbz.cpu_s(kafka.pid)
    load0 = os.getloadavg()
    t0 = time.monotonic()
    sampler = Sampler(t0, pid=connect.pid)
    sampler.start()
    connect.add(name, config, wait=False)
    last_check, first = 0.0, None
    while True:
        n = topics.count(topic)
        if n and first is None:
            first = time.monotonic() - t0
        if n >= rows:
            break
        now = time.monotonic()
        if now - last_check > 2:
            connect.check_running(name)  # raises with the trace when it failed
            last_check = now
        if now - t0 > 7200:
            raise RuntimeError(f"Debezium {name}: {n} of {rows} rows after 2 h")
        time.sleep(0.05)
    seconds = time.monotonic() - t0
    load1 = os.getloadavg()
    sampler.finish()
    jvm_cpu, broker_cpu = dbz.cpu_s(connect.pid) - jvm0, dbz.cpu_s(kafka.pid) - broker0
    sample = sample_values(topics, topic, "json")
    connect.delete(name)
    kafka.delete_topics([topic])
    if n != rows:
        raise RuntimeError(f"Debezium {name}: its topic holds {n} records, not {rows}")
    dbz.drop_slot(pg, name)
    pg.execute(f"DROP PUBLICATION IF EXISTS {name}")
    return {"seconds": seconds, "rows_per_s": n / seconds, "in_kafka": n, "first_record_s": first,
            "cpu_s": jvm_cpu, "broker_cpu_s": broker_cpu, "load": (load0, load1),
            "memory": memory_summary(sampler.mem), **sample}


# -- the run --------------------------------------------------------------------------------
def disk_free(path: str = "/tmp") -> str:
    return f"{shutil.disk_usage(path).free / 2**30:.0f} GiB free in {path}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--pgbench-seconds", type=int, default=60,
                    help="pgbench -T, at most (shortened to 70%% of walship json's snapshot)")
    ap.add_argument("--pgbench-scale", type=int, default=10)
    ap.add_argument("--pgbench-clients", type=int, default=2)
    ap.add_argument("--pgbench-jobs", type=int, default=1)
    ap.add_argument("--pgbench-format", default="json", choices=("json", "protobuf"),
                    help="the walship stream whose snapshot pgbench runs against")
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="walship snapshot_chunk_size (default: walship's)")
    ap.add_argument("--also-chunk-size", type=int, default=8192,
                    help="one more walship protobuf snapshot with this snapshot_chunk_size (0: none): "
                         "what walship's per-chunk cost is")
    ap.add_argument("--only", default=",".join(PHASES), help=f"comma-separated of {','.join(PHASES)}")
    ap.add_argument("--no-walship", action="store_true",
                    help="run as if walship had no snapshots: Debezium and the pgbench baselines only")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = ap.parse_args()
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    if bad := set(only) - set(PHASES):
        ap.error(f"unknown phases {sorted(bad)}; choose from {','.join(PHASES)}")
    started = time.monotonic()
    if "debezium" in only or "warmup" in only:
        wt.ConnectJars().fetch()  # fail before anything starts when the jars cannot be had
    settings = {"shared_buffers": "1GB", "max_wal_size": "8GB", "synchronous_commit": "on",
                "max_replication_slots": "20", "max_wal_senders": "20", "max_worker_processes": "16",
                "maintenance_work_mem": "1GB"}
    R: dict = {"args": vars(args), "only": only, "started": datetime.datetime.now(datetime.timezone.utc)}
    with wt.KafkaBroker() as kafka, wt.PgCluster("bench-snap", logical_decoding_work_mem="64MB",
                                                 settings=settings) as pg:
        if not kafka.pid:
            raise RuntimeError("no pid of the Kafka broker: cannot measure its CPU")
        pg.execute("CREATE EXTENSION walship")
        R["pg"] = pg.scalar("SHOW server_version")
        R["walship"] = pg.scalar("SELECT extversion FROM pg_extension WHERE extname = 'walship'")
        R["walship_commit"] = git_commit()
        R["settings"] = settings
        connect = KafkaConnect(kafka.bootstrap, worker=dbz.DEBEZIUM_WORKER, heap=dbz.CONNECT_HEAP,
                               start=False)
        topics = dbz.Topics(kafka.bootstrap)
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


def git_commit() -> str:
    """The last commit of walship's own code (not of bench/) in this checkout."""
    r = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", "--", "extension", "plugin", "sql"],
                       capture_output=True, text=True)
    line = r.stdout.strip()
    return line if len(line) <= 90 else line[:87] + "..."


def run_phases(pg, kafka, connect, topics, args, only, R) -> None:
    N = args.rows
    R["has_snapshots"] = has_snapshots(pg) and not args.no_walship
    if not R["has_snapshots"]:
        # a walship without the snapshot worker: Debezium and the pgbench baselines only
        log("bench: this walship has no snapshots (walship.stream_status has no snapshot_state, or "
            "--no-walship): its runs are left out")
    chunk = {"snapshot_chunk_size": args.chunk_size} if args.chunk_size else {}
    log(f"bench: loading {N:,} rows into public.{TABLE} ({disk_free()})")
    R["load"] = load_table(pg, N)
    ld = R["load"]
    log(f"bench: loaded in {ld['seconds']:.1f} s (insert {ld['insert_s']:.1f} s, key {ld['index_s']:.1f} s), "
        f"heap {ld['heap_bytes'] / 2**20:.0f} MiB, with index {ld['total_bytes'] / 2**20:.0f} MiB")
    if "pgbench" in only:
        R["pgbench_init_s"] = pgbench_init(pg, args.pgbench_scale)
        log(f"bench: pgbench -i -s {args.pgbench_scale} in {R['pgbench_init_s']:.1f} s")
    warm_rows = min(N, WARM_ROWS)
    if "warmup" in only and R["has_snapshots"]:
        log(f"bench: warm-up: walship json snapshot of {warm_rows:,} rows")
        r = walship_snapshot(pg, kafka, topics, "wsh_warm", WARM_TABLE, warm_rows, {"format": "json", **chunk})
        R["warmup_walship_s"] = r["seconds"]
        log(f"bench: warm-up walship: {r['seconds']:.1f} s")
    if "warmup" in only or "debezium" in only:
        connect.start()
        R["connect_pid"] = connect.pid
    if "warmup" in only:
        log(f"bench: warm-up: Debezium snapshot of {warm_rows:,} rows")
        r = debezium_snapshot(pg, kafka, connect, topics, "dbz_warm", WARM_TABLE, warm_rows)
        R["warmup_debezium_s"] = r["seconds"]
        log(f"bench: warm-up Debezium: {r['seconds']:.1f} s")
    res = R.setdefault("snapshot", {})

    def show(key, r):
        mem = r.get("memory") or {}
        rss = mem.get("VmRSS", {})
        anon = mem.get("RssAnon", {})
        log(f"bench: {key}: {r['seconds']:.2f} s = {r['rows_per_s']:,.0f} rows/s, CPU {r['cpu_s']:.1f} s, "
            f"broker CPU {r['broker_cpu_s']:.1f} s, {r['value_bytes']:.0f} B/record, ops {r['ops']}, "
            f"RSS start/max/end {rss.get('start', 0) / 1024:.0f}/{rss.get('max', 0) / 1024:.0f}/"
            f"{rss.get('end', 0) / 1024:.0f} MiB, anon {anon.get('start', 0) / 1024:.0f}/"
            f"{anon.get('max', 0) / 1024:.0f}/{anon.get('end', 0) / 1024:.0f} MiB "
            f"(load {sb.loads(r['load'])}; {disk_free()})")
        if r.get("profile"):
            log(f"bench: {key}: rows/s per tenth: " + ", ".join(f"{x:,.0f}" for x in r["profile"]))

    for key, fmt in (("walship json", "json"), ("walship protobuf", "protobuf")):
        if f"walship-{fmt}" in only and R["has_snapshots"]:
            log(f"bench: {key} snapshot of {N:,} rows")
            name = "wsh_" + fmt
            res[key] = walship_snapshot(pg, kafka, topics, name, TABLE, N, {"format": fmt, **chunk})
            show(key, res[key])
    if "walship-protobuf" in only and R["has_snapshots"] and args.also_chunk_size:
        key = f"walship protobuf, chunk {args.also_chunk_size}"
        log(f"bench: {key} snapshot of {N:,} rows")
        res[key] = walship_snapshot(pg, kafka, topics, "wsh_protobuf_chunk", TABLE, N,
                                    {"format": "protobuf", "snapshot_chunk_size": args.also_chunk_size})
        show(key, res[key])
    if "debezium" in only:
        log(f"bench: Debezium snapshot of {N:,} rows")
        res["Debezium"] = debezium_snapshot(pg, kafka, connect, topics, "dbz", TABLE, N)
        show("Debezium", res["Debezium"])
        connect.stop()  # its JVM must not take CPU from pgbench
    if "pgbench" in only:
        ref = res.get(f"walship {args.pgbench_format}")
        T = args.pgbench_seconds
        if ref:
            T = max(5, min(T, int(ref["seconds"] * 0.7)))
        R["pgbench_T"] = T
        pb = R.setdefault("pgbench", {})
        cj = (args.pgbench_clients, args.pgbench_jobs)
        log(f"bench: pgbench baseline, -T {T} -c {cj[0]} -j {cj[1]}")
        pb["baseline 1"] = pgbench_baseline(pg, T, *cj)
        log(f"bench: pgbench baseline 1: {pb['baseline 1']['tps']:.0f} tps")
        pg.execute("CHECKPOINT")
        if not R["has_snapshots"]:
            return
        log(f"bench: pgbench during a walship {args.pgbench_format} snapshot")
        r = walship_snapshot(pg, kafka, topics, "wsh_pgb", TABLE, N, {"format": args.pgbench_format, **chunk},
                             pgbench=(T, *cj))
        res[f"walship {args.pgbench_format} + pgbench"] = r
        pb["during"] = r["pgbench"] | {"load": r["load"]}
        show(f"walship {args.pgbench_format} + pgbench", r)
        log(f"bench: pgbench during: {pb['during']['tps']:.0f} tps (pgbench ended at "
            f"{pb['during']['ended_at_s']:.1f} s, snapshot at {pb['during']['snapshot_rows_at_end']:,} rows)")
        pb["baseline 2"] = pgbench_baseline(pg, T, *cj)  # the same machine minutes later
        log(f"bench: pgbench baseline 2: {pb['baseline 2']['tps']:.0f} tps")


# -- the report -----------------------------------------------------------------------------
def ratio(a, b):
    return a / b if a is not None and b else None


def targets(R) -> list[tuple[str, str, str, bool | None]]:
    s, pb = R.get("snapshot", {}), R.get("pgbench", {})
    d = s.get("Debezium")
    out = []
    for k in ("walship json", "walship protobuf"):
        r = ratio(s.get(k, {}).get("rows_per_s"), d and d["rows_per_s"])
        out.append((f"{k} ÷ Debezium (rows/s)", "n/a" if r is None else f"{r:.2f}×", "≥ 5×",
                    None if r is None else r >= 5))
    base = [pb[k]["tps"] for k in ("baseline 1", "baseline 2") if k in pb]
    during = pb.get("during", {}).get("tps")
    r = ratio(during, statistics.fmean(base) if base else None)
    out.append(("pgbench TPS during the snapshot ÷ without (mean of the baselines before and after)",
                "n/a" if r is None else f"{100 * r:.0f}%", "≥ 80%", None if r is None else r >= 0.8))
    for k in ("walship json", "walship protobuf"):
        m = (s.get(k) or {}).get("memory")
        if m and "RssAnon" in m:
            a = m["RssAnon"]
            out.append((f"{k}: stream worker memory flat (RssAnon's max in the run's second half ≤ "
                        f"its max in the first half + {FLAT_SLACK_KB // 1024} MiB)",
                        f"first half max {m['anon_max_first_half'] / 1024:.0f}, second half max "
                        f"{m['anon_max_second_half'] / 1024:.0f} MiB (start {a['start'] / 1024:.0f}, "
                        f"end {a['end'] / 1024:.0f} MiB)", "flat", m["flat"]))
    return out


def verdict(ok) -> str:
    return "**met**" if ok else "**not met**" if ok is not None else "not measured"


def summary(R) -> str:
    lines = ["", "==== walship snapshot vs Debezium initial snapshot ===="]
    for k, r in R.get("snapshot", {}).items():
        lines.append(f"{k:28s} {r['seconds']:8.2f} s {r['rows_per_s']:>12,.0f} rows/s  CPU {r['cpu_s']:6.1f} s  "
                     f"broker {r['broker_cpu_s']:6.1f} s  {r['value_bytes']:.0f} B")
    for k, r in R.get("pgbench", {}).items():
        lines.append(f"pgbench {k:12s} {r['tps']:10.1f} tps")
    for what, got, need, ok in targets(R):
        lines.append(f"target: {what}: {got} (need {need}): {verdict(ok).strip('*')}")
    lines.append(f"total {R['total_s'] / 60:.1f} min")
    return "\n".join(lines)


def mib(kb) -> str:
    return f"{kb / 1024:.1f}"


def write_results(R) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    out = ROOT / "bench" / "results" / f"snapshot-{now.strftime('%Y-%m-%d-%H%M%S')}.md"
    cmd = "python3 bench/snapshot/run.py " + " ".join(sys.argv[1:])
    s, pb, a = R.get("snapshot", {}), R.get("pgbench", {}), R["args"]
    N = a["rows"]
    d = s.get("Debezium")
    rows = []
    for k, r in s.items():
        vs = ratio(r["rows_per_s"], d and d["rows_per_s"]) if k != "Debezium" else None
        if k == "Debezium":
            cpu = f"Connect JVM {r['cpu_s']:.1f} (first record after {r['first_record_s']:.1f} s)"
        else:
            cpu = f"stream worker {r['cpu_s']:.1f}"
        ops = ", ".join(f"{o} {c}" for o, c in r["ops"].items())
        rows.append(f"| {k} | {r['seconds']:.2f} | **{r['rows_per_s']:,.0f}** | "
                    f"{'' if vs is None else f'{vs:.2f}×'} | {cpu} | {1e6 * r['cpu_s'] / r['in_kafka']:.1f} | "
                    f"{r['broker_cpu_s']:.1f} | "
                    f"{r['value_bytes']:.0f} | {r['in_kafka']:,} | {ops} | {sb.loads(r['load'])} |")
    mem_rows = []
    for k, r in s.items():
        m = r.get("memory")
        if not m:
            continue
        who = "Connect JVM" if k == "Debezium" else f"stream worker (pid {r['worker_pid']})"
        for fig in ("VmRSS", "RssAnon", "RssShmem", "Pss", "Pss_Anon"):
            if fig in m:
                f = m[fig]
                mem_rows.append(f"| {k} | {who} | {fig} | {mib(f['start'])} | {mib(f['p10'])} | "
                                f"{mib(f['p50'])} | {mib(f['p90'])} | **{mib(f['max'])}** | {mib(f['end'])} |")
    prof = []
    for k, r in s.items():
        if r.get("profile"):
            prof.append(f"| {k} | " + " | ".join(f"{x:,.0f}" for x in r["profile"]) + " |")
    ctx = []
    for k, r in s.items():
        for i, line in enumerate(r.get("memory_contexts") or []):
            ctx.append(f"- {k}, call {i + 1} (at ~{'10' if i == 0 else '90'}% of the rows): {line}")
    snaps = []
    for k, r in s.items():
        for st, emitted, chunks, resumes, t_start, t_end, secs in r.get("snapshots") or []:
            snaps.append(f"| {k} | {st} | {emitted:,} | {chunks:,} | {resumes} | "
                         f"{'' if secs is None else f'{float(secs):.2f}'} |")
    pg_rows = []
    base = [pb[k]["tps"] for k in ("baseline 1", "baseline 2") if k in pb]
    for k, r in pb.items():
        extra = ""
        if k == "during":
            extra = (f"pgbench ended {r['ended_at_s']:.1f} s after create_stream, the snapshot then at "
                     f"{r['snapshot_rows_at_end']:,} rows ({r['snapshot_state_at_end']})")
        pg_rows.append(f"| {k} | {R['pgbench_T']} | **{r['tps']:.1f}** | {r['latency_ms']} | "
                       f"{r['transactions']:,} | {extra} | {sb.loads(r['load'])} |")
    tgt = [f"| {what} | {got} | {need} | {verdict(ok)} |" for what, got, need, ok in targets(R)]
    ld = R["load"]
    warm = ""
    if "warmup_walship_s" in R:
        warm = (f"Unmeasured warm-ups first: a walship json snapshot ({R['warmup_walship_s']:.1f} s) and a "
                f"Debezium snapshot ({R['warmup_debezium_s']:.1f} s) of `public.{WARM_TABLE}`, a copy of "
                f"the first {min(N, WARM_ROWS):,} rows.")
    chunk = a["chunk_size"] or "walship's default"
    pgb = ""
    during_line = "(no walship snapshot ran: no TPS during one)"
    if "during" in pb:
        during_line = (f"During ÷ mean of the baselines ({statistics.fmean(base):.1f} tps): "
                       f"**{100 * pb['during']['tps'] / statistics.fmean(base):.0f}%**.")
    if pb:
        pgb = f"""
## pgbench on the same server (`pgbench -n -T {R['pgbench_T']} -c {a['pgbench_clients']} -j {a['pgbench_jobs']}`, TPC-B-like, scale {a['pgbench_scale']})

| run | seconds | tps | latency avg ms | transactions | | load average |
|---|---|---|---|---|---|---|
{chr(10).join(pg_rows)}

{during_line}
"""
    producer = ", ".join(f"`{k}={v}`" for k, v in dbz.PRODUCER.items())
    text = f"""# walship snapshot vs Debezium {debezium_version()} initial snapshot, {now.strftime('%Y-%m-%d %H:%M')} UTC

Command: `{cmd.strip()}` (walship at `{R['walship_commit']}`, built Release into a private
copy of PostgreSQL {R['pg']}; the run took {R['total_s'] / 60:.1f} min)

Machine: {sb.machine()}; shared with other work (1-minute load average before → after
each phase in the tables; 2 cores: above 2, every process waits for CPU).

Versions: PostgreSQL {R['pg']}, walship {R['walship']}, Apache Kafka {kafka_version()} (one KRaft
broker on loopback), Kafka Connect {connect_version()} standalone + Debezium PostgreSQL connector
{debezium_version()}, Java {dbz.java_version()}.

## What ran

- `public.{TABLE}`: {N:,} rows, 8 columns (`id bigint` primary key, `a int`, `b bigint`,
  `c text` of 40 characters, `d timestamptz`, `e numeric(12,2)`, `f boolean`, `g uuid`),
  one `INSERT ... SELECT generate_series` ({ld['insert_s']:.0f} s) before any slot existed,
  then the primary key ({ld['index_s']:.0f} s), `VACUUM (FREEZE, ANALYZE)`, `CHECKPOINT`:
  heap {ld['heap_bytes'] / 2**20:,.0f} MiB, {ld['total_bytes'] / 2**20:,.0f} MiB with the index.
  Server: {', '.join(f'`{k}={v}`' for k, v in R['settings'].items())}, `fsync=off`
  (throwaway cluster), `logical_decoding_work_mem=64MB`.
- One engine at a time, each into its own topic of {PARTITIONS} partitions on the same broker,
  nothing else running. {warm}
- walship: `create_stream('wsh_<format>', .., ARRAY['public.{TABLE}'], {{"format": "json" |
  "protobuf", "partitions": {PARTITIONS}, "topic_prefix": ..}})`, default `snapshot_mode`
  (initial), snapshot chunk size {chunk}; timed from the `create_stream` call until
  `walship.stream_status.snapshot_state = 'done'` and `events_acked` ≥ N, then the topic's
  end offsets are checked to sum to ≥ N. walship's default producer settings.
- Debezium: `snapshot.mode=initial` (its blocking initial snapshot: `SELECT *` of the
  table in one exported-snapshot transaction), `plugin.name=pgoutput`,
  `table.include.list=public.{TABLE}`, `publication.autocreate.mode=filtered` (slot and
  publication created by the connector at start), JsonConverter with schemas for keys and
  values, `decimal.handling.mode=string`, `max.batch.size=10000`, `max.queue.size=40000`,
  `poll.interval.ms=50`, `snapshot.fetch.size` default (10,240); Connect worker producer
  {producer}; heap `{dbz.CONNECT_HEAP}`. Timed from the REST call that adds the connector until the
  topic's end offsets (polled every 50 ms) sum to N: as bench/debezium times catch-up.
- "ops": of the first ≤ 2,000 records of partition 0 (`r` / `READ` = snapshot reads).
- CPU seconds (user + system, /proc/<pid>/stat): walship's stream worker over its whole
  life (it starts with the stream); the Connect JVM's and the broker's deltas.
- Memory: sampled every {SAMPLE_S} s from /proc/<pid>/status (VmRSS, RssAnon, RssShmem) and
  /proc/<pid>/smaps_rollup (Pss, Pss_Anon), of the stream worker from the moment
  stream_status shows its pid, of the Connect JVM for Debezium. VmRSS of a PostgreSQL
  backend counts every shared_buffers page it has touched (RssShmem): it grows while the
  snapshot reads the table through shared buffers without the process allocating anything;
  RssAnon / Pss_Anon are the process's own memory (palloc, librdkafka's queue).

## Snapshot of {N:,} rows

| engine | seconds | rows/s | ÷ Debezium | CPU s | µs CPU/row | broker CPU s | avg value B | records in topic | ops | load average |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

walship.snapshots after each walship run:

| run | state | rows_emitted | chunks | resumes | finished − started s |
|---|---|---|---|---|---|
{chr(10).join(snaps)}

Rows/s per tenth of the table (from `snapshot_rows` sampled every {SAMPLE_S} s; a snapshot that
slows as it goes shows here):

| run | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(prof)}

## Memory during the snapshot (MiB)

| run | process | figure | start | at 10% | at 50% | at 90% | max | end |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(mem_rows)}

`pg_log_backend_memory_contexts(worker)` at about 10% and 90% of the rows (the worker's
palloc memory, "Grand total" from the server log):

{chr(10).join(ctx) if ctx else '(no lines in the server log)'}
{pgb}
## Targets

| target | measured | needed | |
|---|---|---|---|
{chr(10).join(tgt)}

## Caveats

- 2 shared cores: walship's worker, PostgreSQL, the broker (and Connect, for Debezium)
  compete for them; the load average shows how much else ran. Numbers are noisy.
- pgbench during the snapshot competes with the worker *and* the broker for 2 cores:
  a TPS ratio on this machine measures CPU sharing as much as walship's locking/IO.
"""
    out.write_text(text)
    print(f"wrote {out.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
