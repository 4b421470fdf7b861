#!/usr/bin/env python3
"""walship decode benchmark: walship (protobuf, json) against pgoutput, test_decoding,
wal2json and decoderbufs, on one throwaway PostgreSQL cluster and one workload.

Usage: see bench/decode/run.sh (python3 decode_bench.py --help).

Every plugin gets its own logical slot, created BEFORE the workload, so every slot
decodes exactly the same WAL. The floor under them all is walship_bench_noop
(noop_plugin.c, compiled here against the server): it decodes everything and writes one
byte per change, so what a plugin costs beyond it is the plugin's own work.

Each slot is read once with
    SELECT count(*), sum(length(data)) FROM pg_logical_slot_peek_binary_changes(...)
(rows and bytes out, and a warm-up), then timed ROUNDS times over all slots
(round-robin, so drift on the machine hits every plugin alike). By default (--via
direct) each round decodes the slot in a backend with walship_bench_decode
(noop_plugin.c), which counts each output row and drops it: decoding plus the plugin, as
in a stream worker, with no transport whose cost grows with the output. --via stream reads
it the way clients do: pg_recvlogical streams a copy of the slot to its end through a
walsender into /dev/null (the walsender's CPU time and the wall time are measured; the
walsender's sends and reads per change cost more than decoding). --via sql times the
peek itself; that function materializes its whole output in a tuplestore (temporary
files beyond work_mem), which costs more than decoding for large outputs. Reported: median and min.

Standard library and the test harness (tests/lib/walship_testlib: its throwaway
cluster); talks to the server through psql.
"""
import argparse
import datetime
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "lib"))
import walship_testlib as wt  # noqa: E402

# --------------------------------------------------------------------------------------
# plugins under test: (label, slot name, output plugin, peek options)
PLUGINS = [
    ("floor (no-op)", "bench_noop", "walship_bench_noop", []),
    ("walship (protobuf)", "bench_walship_pb", "walship", [("format", "protobuf")]),
    ("walship (json)", "bench_walship_json", "walship", [("format", "json")]),
    ("pgoutput", "bench_pgoutput", "pgoutput",
     [("proto_version", "1"), ("publication_names", "bench_pub")]),
    ("test_decoding", "bench_test_decoding", "test_decoding", []),
    ("wal2json", "bench_wal2json", "wal2json", [("format-version", "2")]),
    ("decoderbufs", "bench_decoderbufs", "decoderbufs", []),
]
ALLOW_LIST = ("pgoutput", "test_decoding", "walship", "wal2json", "decoderbufs",
              "walship_bench_noop")
NOOP_SOURCE = Path(__file__).resolve().parent / "noop_plugin.c"

SCHEMA_SQL = r"""
CREATE TABLE bench_t (
    id         bigint PRIMARY KEY,
    qty        integer NOT NULL,
    label      text NOT NULL,
    price      numeric(14,4) NOT NULL,
    updated_at timestamptz NOT NULL,
    active     boolean NOT NULL
);
CREATE PUBLICATION bench_pub FOR ALL TABLES;

-- ntx transactions of tx_size changes each: 60% INSERT, 30% UPDATE, 10% DELETE.
-- Transaction k inserts ids k*ni+1 .. (k+1)*ni, updates ids (k+1)*nd+1 .. (k+1)*nd+nu
-- (all live: inserted already, not yet deleted) and deletes ids k*nd+1 .. (k+1)*nd,
-- so every statement touches exactly the intended number of rows.
CREATE PROCEDURE bench_workload(ntx int, tx_size int) LANGUAGE plpgsql AS $$
DECLARE
    ni bigint := tx_size * 6 / 10;
    nu bigint := tx_size * 3 / 10;
    nd bigint := tx_size - tx_size * 6 / 10 - tx_size * 3 / 10;
    n bigint;
BEGIN
    FOR k IN 0 .. ntx - 1 LOOP
        INSERT INTO bench_t
        SELECT g, (g % 100000)::int, 'item-' || md5(g::text),
               (g * 1.2345)::numeric(14,4),
               timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
               g % 2 = 0
        FROM generate_series(k * ni + 1, (k + 1) * ni) AS g;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> ni THEN RAISE EXCEPTION 'insert touched % rows, wanted %', n, ni; END IF;

        UPDATE bench_t
        SET qty = qty + 1, label = 'upd-' || md5((id + k)::text), price = price + 1,
            updated_at = updated_at + interval '1 hour', active = NOT active
        WHERE id BETWEEN (k + 1) * nd + 1 AND (k + 1) * nd + nu;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> nu THEN RAISE EXCEPTION 'update touched % rows, wanted %', n, nu; END IF;

        DELETE FROM bench_t WHERE id BETWEEN k * nd + 1 AND (k + 1) * nd;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> nd THEN RAISE EXCEPTION 'delete touched % rows, wanted %', n, nd; END IF;

        COMMIT;
    END LOOP;
END $$;
"""


def log(msg):
    print(f"[decode-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sql_literal(s):
    return "'" + s.replace("'", "''") + "'"


class Cluster:
    """psql sessions against the benchmark's cluster (a PgCluster of the test harness)."""

    def __init__(self, pg):
        self.pg = pg
        self.env = dict(os.environ, PGHOST=pg.host, PGPORT=str(pg.port), PGUSER=pg.user,
                        PGDATABASE="postgres", PGAPPNAME="walship-decode-bench", LC_ALL="C")
        for k in ("PGSERVICE", "PGOPTIONS", "PGPASSWORD"):
            self.env.pop(k, None)

    def bin(self, name):
        return self.pg.bin(name)

    def psql(self, sql, timing=False, check=True):
        """Run sql (a string, or a list of commands) in one session; returns (stdout, stderr, returncode)."""
        argv = [self.bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        if timing:
            argv += ["-c", "\\timing on"]
        for c in ([sql] if isinstance(sql, str) else sql):
            argv += ["-c", c]
        p = subprocess.run(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        if check and p.returncode != 0:
            raise RuntimeError(f"psql failed ({p.returncode}): {p.stderr.strip()}\nSQL: {sql[:500]}")
        return p.stdout, p.stderr, p.returncode

    def scalar(self, sql):
        return self.psql(sql)[0].strip()


def direct_sql(slot, options):
    arr = ", ".join(sql_literal(x) for kv in options for x in kv)
    return ("SELECT rows || '|' || bytes || '|' || cpu_s || '|' || wall_s "
            f"FROM walship_bench_decode({sql_literal(slot)}, ARRAY[{arr}]::text[])")


DIRECT_FUNCTION_SQL = """
CREATE FUNCTION walship_bench_decode(slot name, options text[], OUT rows bigint,
                                     OUT bytes bigint, OUT cpu_s float8, OUT wall_s float8)
    RETURNS record AS 'walship_bench_noop', 'walship_bench_decode' LANGUAGE C STRICT;
"""


def peek_sql(slot, options):
    args = [sql_literal(slot), "NULL", "NULL"]
    for k, v in options:
        args += [sql_literal(k), sql_literal(v)]
    return ("SELECT count(*), coalesce(sum(length(data)), 0) "
            f"FROM pg_logical_slot_peek_binary_changes({', '.join(args)})")


SCHEDSTAT = "SELECT 'cpu_ns:' || split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)"


def parse_timed(out):
    """psql -At with \\timing, commands SCHEDSTAT; peek; SCHEDSTAT.

    Returns rows, bytes, wall seconds of the peek (psql \\timing) and CPU seconds the
    backend spent in it (from its /proc/self/schedstat; robust against other load on
    the machine as long as the backend is not descheduled mid-cache)."""
    rows, bytes_, times, cpu = None, None, [], []
    for line in out.splitlines():
        if line.startswith("Time: "):
            times.append(float(line.split()[1]) / 1000.0)
        elif line.startswith("cpu_ns:"):
            cpu.append(int(line[len("cpu_ns:"):]))
        elif "|" in line:
            a, b = line.split("|", 1)
            rows, bytes_ = int(a), int(b)
    if rows is None or len(times) != 3 or len(cpu) != 2:
        raise RuntimeError(f"could not parse psql output: {out!r}")
    return rows, bytes_, times[1], (cpu[1] - cpu[0]) / 1e9


def build_noop(bindir, libdir):
    """Compiles the floor plugin against the server under test into libdir; None or why not."""
    pg_config = os.path.join(bindir, "pg_config")
    inc = subprocess.run([pg_config, "--includedir-server"], stdout=subprocess.PIPE,
                         text=True).stdout.strip()
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc or not inc:
        return "no C compiler or no server headers (pg_config --includedir-server)"
    p = subprocess.run([cc, "-O2", "-fPIC", "-shared", "-Wall", "-Werror", "-Wdeclaration-after-statement",
                        "-Wno-unused-parameter",
                        "-I", inc, "-o", os.path.join(libdir, "walship_bench_noop.so"),
                        str(NOOP_SOURCE)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    return None if p.returncode == 0 else f"compiling {NOOP_SOURCE.name} failed: {p.stdout.strip()}"


def stream_slot(cluster, slot, opts, end_lsn, tag):
    """Streams a copy of slot up to end_lsn through pg_recvlogical into /dev/null.

    Returns (wall seconds, walsender CPU seconds). The walsender's CPU comes from its
    /proc/<pid>/schedstat, sampled every millisecond until it exits (the last sample is
    at most about a millisecond short)."""
    copy = f"{slot}_run"
    cluster.psql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                 f"WHERE slot_name = {sql_literal(copy)}")
    cluster.psql(f"SELECT pg_copy_logical_replication_slot({sql_literal(slot)}, {sql_literal(copy)})")
    appname = f"decode-bench-{tag}"
    argv = [cluster.bin("pg_recvlogical"), "-d", "postgres", "-S", copy, "--start",
            "-E", end_lsn, "-f", "/dev/null", "--no-loop", "-s", "3600", "-F", "0"]
    for k, v in opts:
        argv += ["-o", f"{k}={v}"]
    env = dict(cluster.env, PGAPPNAME=appname)
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pid, cpu_ns = None, 0
    while p.poll() is None:
        if pid is None:
            v = cluster.scalar(f"SELECT active_pid FROM pg_replication_slots "
                               f"WHERE slot_name = {sql_literal(copy)} AND active")
            pid = int(v) if v else None
        if pid is not None:
            try:
                with open(f"/proc/{pid}/schedstat") as f:
                    cpu_ns = int(f.read().split()[0])
            except (OSError, ValueError):
                pass
        time.sleep(0.001)
    wall = time.monotonic() - t0
    err = p.stderr.read()
    cluster.psql(f"SELECT pg_drop_replication_slot({sql_literal(copy)})", check=False)
    if p.returncode != 0:
        raise RuntimeError(f"pg_recvlogical failed ({p.returncode}): {err.strip()}")
    if pid is None:
        raise RuntimeError("pg_recvlogical ended before its walsender could be found")
    return wall, cpu_ns / 1e9


def cpu_busy(interval=2.0):
    """Share of all CPUs busy (any process) over interval seconds, from /proc/stat."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    return 0.0 if t1 == t0 else 1.0 - (i1 - i0) / (t1 - t0)


def machine_info(cluster):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "loadavg": open("/proc/loadavg").read().split(" ")[:3] if os.path.exists("/proc/loadavg") else "?",
        "postgres": cluster.scalar("SELECT version()"),
    }


def plugin_file(bindir, name):
    pkglib = subprocess.run([os.path.join(bindir, "pg_config"), "--pkglibdir"],
                            stdout=subprocess.PIPE, text=True).stdout.strip()
    if not pkglib:
        pkglib = os.path.join(os.path.dirname(bindir), "lib")
    return os.path.join(pkglib, name + ".so")


def describe_file(path):
    import hashlib
    st = os.stat(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    return (f"{path}, {st.st_size} bytes, built "
            f"{datetime.datetime.fromtimestamp(st.st_mtime):%Y-%m-%d %H:%M:%S}, sha256 {digest}")


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}x"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", nargs="?", type=int, default=1_000_000, help="number of changes (default 1000000)")
    ap.add_argument("--tx-size", type=int, default=1000, help="changes per transaction (default 1000)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per plugin (default 3)")
    ap.add_argument("--bindir", default="/usr/lib/postgresql/15/bin")
    ap.add_argument("--results-dir", default=None, help="where decode-<date>.md goes (default bench/results)")
    ap.add_argument("--no-results", action="store_true", help="do not write a result file")
    ap.add_argument("--via", choices=("direct", "stream", "sql"), default="direct",
                    help="time decoding a slot in a backend with the output thrown away "
                         "(walship_bench_decode, the default: decoding plus the plugin, as in "
                         "a stream worker), through a walsender (pg_recvlogical) or through "
                         "the SQL peek function")
    ap.add_argument("--only", default=None,
                    help="comma-separated plugin labels/slots to run (default: all); e.g. walship,pgoutput")
    ap.add_argument("--profile", default=None, metavar="SLOT",
                    help="after timing, run one more peek of SLOT (e.g. bench_walship_pb) under "
                         "`perf record` attached to its backend")
    ap.add_argument("--perf-args", default="-g", help="extra perf record args (default: -g)")
    ap.add_argument("--perf-out", default=None, help="perf.data path (default: /tmp/walship-perf-<slot>.data)")
    ap.add_argument("--wait-quiet", type=int, default=0, metavar="SECONDS",
                    help="before measuring, wait up to SECONDS for the machine to be < 15%% busy")
    ap.add_argument("--workdir", default=None, help="temp dir to use (created by run.sh); removed at the end")
    ap.add_argument("--command", default=None, help="command line to record in the result file")
    args = ap.parse_args()

    if args.n < 1 or args.tx_size < 10:
        ap.error("n must be >= 1 and tx-size >= 10")
    tx_size = min(args.tx_size, args.n)
    ntx = args.n // tx_size
    nchanges = ntx * tx_size
    if nchanges != args.n:
        log(f"N={args.n} is not a multiple of tx-size {tx_size}: running {nchanges} changes")

    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.abspath(os.path.join(here, "..", ".."))
    results_dir = args.results_dir or os.path.join(repo, "bench", "results")

    plugins = PLUGINS
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        plugins = [p for p in PLUGINS if any(w == p[1] or w == p[2] or w == p[0] for w in wanted)]
        if not plugins:
            ap.error(f"--only {args.only}: matches no plugin")

    own_workdir = args.workdir is None
    workdir = args.workdir or tempfile.mkdtemp(prefix="walship-decode-bench-")
    os.chmod(workdir, 0o755)  # the cluster below it may belong to the postgres OS user
    failed = {}
    info = {}
    pg = None

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    try:
        # ---------------------------------------------------------------- cluster
        # the harness's throwaway cluster, under workdir: no preloaded library, the
        # default logical_decoding_work_mem (64MB: no spill at 1000 changes/tx), every
        # plugin in output_plugin_libraries where the server has that setting
        pg = wt.PgCluster("decode-bench", bindir=args.bindir, base_dir=workdir, start=False,
                          shared_preload_libraries="", logical_decoding_work_mem=None,
                          output_plugins=ALLOW_LIST, keep=False)
        cluster = Cluster(pg)
        log(f"initdb in {pg.base_dir}, port {pg.port}")
        # Freeze the walship build under test: the server loads "walship" from a private
        # copy (dynamic_library_path), so a reinstall during the run cannot mix builds.
        walship_src = plugin_file(args.bindir, "walship")
        walship_snapshot = None
        libdir = os.path.join(pg.base_dir, "lib")
        os.makedirs(libdir, exist_ok=True)
        os.chmod(libdir, 0o755)
        noop_problem = build_noop(args.bindir, libdir)
        if noop_problem:
            failed["bench_noop"] = noop_problem
            log(f"FAILED floor (no-op): {noop_problem}")
        if os.path.exists(walship_src):
            for _ in range(30):  # do not copy a file that an install is still writing
                before = os.stat(walship_src)
                time.sleep(0.5)
                shutil.copy2(walship_src, os.path.join(libdir, "walship.so"))
                after = os.stat(walship_src)
                if (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size):
                    break
                time.sleep(2)
            os.chmod(libdir, 0o755)
            walship_snapshot = describe_file(walship_src)
            log(f"walship under test: {walship_snapshot} (private copy in {libdir})")
        pg.extra_settings.update({
            "max_replication_slots": 16,
            "max_wal_senders": 8,
            "shared_buffers": "1GB",
            "max_wal_size": "16GB",
            "checkpoint_timeout": "1h",
            # setup speed only: no fsync and no commit flush while loading the workload;
            # decoding reads WAL that is already written, so this does not change it.
            "fsync": False,
            "synchronous_commit": False,
            "autovacuum": False,
        })
        pg.extra_settings["dynamic_library_path"] = libdir + ":$libdir"
        info["walship_so"] = walship_snapshot or f"{walship_src} not installed"
        pg.init()
        has_allow_list = bool(pg.has_output_plugin_libraries)
        pg.start()
        info.update(machine_info(cluster))
        log(f"server: {info['postgres']}")
        decoding_mem = cluster.scalar("SHOW logical_decoding_work_mem")
        work_mem = cluster.scalar("SHOW work_mem")

        cluster.psql(SCHEMA_SQL)
        if args.via == "direct":
            if "bench_noop" in failed:
                raise RuntimeError("--via direct needs walship_bench_decode from noop_plugin.c, "
                                   f"which did not build: {failed['bench_noop']}")
            cluster.psql(DIRECT_FUNCTION_SQL)

        # ---------------------------------------------------------------- slots (before the workload)
        active = []
        for label, slot, plugin, opts in plugins:
            if slot in failed:
                continue
            out, err, rc = cluster.psql(
                f"SELECT lsn FROM pg_create_logical_replication_slot({sql_literal(slot)}, {sql_literal(plugin)})",
                check=False)
            if rc != 0:
                failed[slot] = f"create slot: {err.strip()}"
                log(f"FAILED {label}: {failed[slot]}")
                hint = plugin_file(args.bindir, plugin)
                if not os.path.exists(hint):
                    log(f"  ({hint} does not exist)")
            else:
                active.append((label, slot, plugin, opts))
                log(f"slot {slot} ({plugin}) at {out.strip()}")

        # ---------------------------------------------------------------- workload
        log(f"workload: {ntx} transactions x {tx_size} changes "
            f"(60% INSERT / 30% UPDATE / 10% DELETE) = {nchanges} changes")
        lsn0 = cluster.scalar("SELECT pg_current_wal_lsn()")
        t0 = time.monotonic()
        cluster.psql(f"CALL bench_workload({ntx}, {tx_size})")
        load_s = time.monotonic() - t0
        lsn1 = cluster.scalar("SELECT pg_current_wal_lsn()")
        wal_bytes = int(cluster.scalar(f"SELECT pg_wal_lsn_diff('{lsn1}', '{lsn0}')"))
        live = int(cluster.scalar("SELECT count(*) FROM bench_t"))
        ni, nu = tx_size * 6 // 10, tx_size * 3 // 10
        nd = tx_size - ni - nu
        if live != ntx * (ni - nd):
            raise RuntimeError(f"workload left {live} rows, expected {ntx * (ni - nd)}")
        cluster.psql("CHECKPOINT")
        log(f"workload done in {load_s:.1f} s, {wal_bytes / 1e6:.1f} MB of WAL; "
            f"{ntx * ni} INSERT, {ntx * nu} UPDATE, {ntx * nd} DELETE")

        # ---------------------------------------------------------------- measure
        busy = cpu_busy()
        deadline = time.monotonic() + args.wait_quiet
        while busy > 0.15 and time.monotonic() < deadline:
            log(f"machine {busy:.0%} busy; waiting for quiet (--wait-quiet)")
            time.sleep(8)
            busy = cpu_busy()
        info["busy_before"] = f"{busy:.0%}"
        log(f"machine {busy:.0%} busy before measuring")
        times = {slot: [] for _, slot, _, _ in active}
        cputimes = {slot: [] for _, slot, _, _ in active}
        rows = {}
        outbytes = {}

        def peek(label, slot, opts, what):
            out, err, rc = cluster.psql([SCHEDSTAT, peek_sql(slot, opts), SCHEDSTAT], timing=True, check=False)
            if rc != 0:
                failed[slot] = f"{what}: {err.strip()}"
                log(f"FAILED {label}: {failed[slot]}")
                return None
            r, b, s, c = parse_timed(out)
            if slot in rows and (rows[slot], outbytes[slot]) != (r, b):
                log(f"WARNING {label}: run gave {r} rows/{b} bytes, earlier {rows[slot]}/{outbytes[slot]}")
            rows[slot], outbytes[slot] = r, b
            return s, c

        for label, slot, _, opts in active:
            r = peek(label, slot, opts, "warm-up peek")
            if r is not None:
                log(f"warm-up {label:20s} {r[0]:8.3f} s (cpu {r[1]:.3f} s)  {rows[slot]} rows  "
                    f"{outbytes[slot] / 1e6:.1f} MB")
        def direct(label, slot, opts, what):
            out, err, rc = cluster.psql(direct_sql(slot, opts), check=False)
            if rc != 0:
                failed[slot] = f"{what}: {err.strip()}"
                log(f"FAILED {label}: {failed[slot]}")
                return None
            r, b, c, w = out.strip().split("|")
            if (int(r), int(b)) != (rows[slot], outbytes[slot]):
                # the same slot, plugin and options must give the same output either way
                failed[slot] = (f"{what}: walship_bench_decode gave {r} rows / {b} bytes, "
                                f"the peek {rows[slot]} / {outbytes[slot]}")
                log(f"FAILED {label}: {failed[slot]}")
                return None
            return float(w), float(c)

        def timed(label, slot, opts, what):
            if args.via == "sql":
                return peek(label, slot, opts, what)
            if args.via == "direct":
                return direct(label, slot, opts, what)
            try:
                return stream_slot(cluster, slot, opts, lsn1, f"{slot}-{what.replace(' ', '-')}")
            except RuntimeError as e:
                failed[slot] = f"{what}: {e}"
                log(f"FAILED {label}: {failed[slot]}")
                return None

        for rnd in range(args.rounds):
            for label, slot, _, opts in active:
                if slot in failed:
                    continue
                r = timed(label, slot, opts, f"round {rnd + 1}")
                if r is not None:
                    times[slot].append(r[0])
                    cputimes[slot].append(r[1])
                    log(f"round {rnd + 1} {label:20s} {r[0]:8.3f} s (cpu {r[1]:.3f} s)")

        # sanity: test_decoding emits one row per change plus BEGIN and COMMIT per transaction
        if "bench_test_decoding" in rows and rows["bench_test_decoding"] != nchanges + 2 * ntx:
            log(f"WARNING test_decoding returned {rows['bench_test_decoding']} rows, "
                f"expected {nchanges + 2 * ntx}")

        # ---------------------------------------------------------------- profile (optional)
        perf_report = None
        if args.profile:
            perf_report = profile_peek(cluster, args, active, failed, repo)

        # ---------------------------------------------------------------- report
        med = {s: statistics.median(t) for s, t in times.items() if t and s not in failed}
        mins = {s: min(t) for s, t in times.items() if t and s not in failed}
        cpumed = {s: statistics.median(t) for s, t in cputimes.items() if t and s not in failed}
        ref_pg = med.get("bench_pgoutput")
        ref_w2j = med.get("bench_wal2json")
        floor_cpu = cpumed.get("bench_noop")
        header = ["plugin", "changes", "rows out", "median s", "min s", "cpu s", "changes/s",
                  "output MB", "cpu / floor", "own ns/change", "vs pgoutput", "vs wal2json"]
        table = []
        for label, slot, _, _ in plugins:
            if slot in failed or slot not in med:
                table.append([label, str(nchanges), "—", "FAILED", "—", "—", "—", "—", "—", "—", "—", "—"])
                continue
            m = med[slot]
            table.append([
                label, str(nchanges), str(rows[slot]), f"{m:.3f}", f"{mins[slot]:.3f}", f"{cpumed[slot]:.3f}",
                f"{nchanges / m:,.0f}", f"{outbytes[slot] / 1e6:.1f}",
                fmt_ratio(cpumed[slot] / floor_cpu if floor_cpu else None),
                f"{(cpumed[slot] - floor_cpu) * 1e9 / nchanges:,.0f}" if floor_cpu else "—",
                fmt_ratio(ref_pg / m if ref_pg else None),
                fmt_ratio(ref_w2j / m if ref_w2j else None),
            ])
        text_table = render_text(header, table)
        print()
        print(text_table)
        print()
        notes = []
        pb = med.get("bench_walship_pb")
        if pb is not None:
            def ratio(ref):
                """speed of walship protobuf relative to ref, by median wall, min wall, median cpu"""
                return (med[ref] / pb, mins[ref] / mins["bench_walship_pb"],
                        cpumed[ref] / cpumed["bench_walship_pb"])
            for ref, need, name in (("bench_pgoutput", 1.0, "pgoutput speed"),
                                    ("bench_wal2json", 2.0, "2x wal2json speed")):
                if ref not in med:
                    continue
                r = ratio(ref)
                verdict = "MET" if min(r) >= need else ("NOT MET" if max(r) < need else "UNCLEAR (noise)")
                notes.append(f"target walship protobuf >= {name}: {verdict} "
                             f"({r[0]:.2f}x by median wall, {r[1]:.2f}x by min wall, {r[2]:.2f}x by median cpu)")
        # issue 8's targets: the plugin's cost over the floor's, by median walsender CPU
        for slot, need, name in (("bench_walship_pb", 1.25, "walship protobuf"),
                                 ("bench_walship_json", 2.0, "walship json (with schemas)")):
            if floor_cpu and slot in cpumed:
                r = cpumed[slot] / floor_cpu
                rmin = min(cputimes[slot]) / max(cputimes["bench_noop"])
                rmax = max(cputimes[slot]) / min(cputimes["bench_noop"])
                verdict = "MET" if rmax <= need else ("NOT MET" if rmin > need else "UNCLEAR (noise)")
                notes.append(f"target {name} <= {need:.2f}x the floor's time: {verdict} "
                             f"({r:.2f}x by median cpu, {rmin:.2f}x-{rmax:.2f}x over all runs; "
                             f"wall {med[slot] / med['bench_noop']:.2f}x by median)")
        for n in notes:
            print(n)
        for slot, err in failed.items():
            print(f"FAILED {slot}: {err}")

        if not args.no_results:
            path = write_results(results_dir, args, info, nchanges, ntx, tx_size, wal_bytes, load_s,
                                 decoding_mem, work_mem, has_allow_list, header, table, times, cputimes,
                                 plugins, failed, notes, perf_report)
            print(f"\nresults: {path}")
    except KeyboardInterrupt as e:
        log(f"interrupted: {e}")
        failed["<run>"] = "interrupted"
    except Exception as e:  # noqa: BLE001
        log(f"ERROR: {e}")
        if pg is not None:
            log("server log tail:\n" + pg.log_tail(30))
        failed["<run>"] = str(e)
    finally:
        if pg is not None:
            pg.cleanup()
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def profile_peek(cluster, args, active, failed, repo):
    """One more peek of args.profile under perf record attached to its backend."""
    match = [a for a in active if a[1] == args.profile and a[1] not in failed]
    if not match:
        log(f"--profile {args.profile}: no working slot of that name")
        return None
    label, slot, _, opts = match[0]
    perf = shutil.which("perf")
    if not perf:
        log("--profile: perf not found (apt-get install linux-perf)")
        return None
    out_path = args.perf_out or os.path.join(tempfile.gettempdir(), f"walship-perf-{slot}.data")
    appname = f"walship-profile-{os.getpid()}"
    env = dict(cluster.env, PGAPPNAME=appname)
    # the session sleeps first so perf can attach before decoding starts
    sql = f"SELECT pg_sleep(1.5); {direct_sql(slot, opts) if args.via == 'direct' else peek_sql(slot, opts)}"
    p = subprocess.Popen([cluster.bin("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = None
    for _ in range(100):
        v = cluster.scalar(f"SELECT pid FROM pg_stat_activity WHERE application_name = {sql_literal(appname)}")
        if v:
            pid = int(v)
            break
        time.sleep(0.02)
    if pid is None:
        p.wait()
        log("--profile: could not find the backend")
        return None
    perf_cmd = [perf, "record", "-o", out_path, *shlex.split(args.perf_args), "-p", str(pid)]
    log(f"profiling backend {pid}: {' '.join(perf_cmd)}")
    rec = subprocess.Popen(perf_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, perr = p.communicate()
    if p.returncode != 0:
        log(f"--profile: peek failed: {perr.strip()}")
    # the backend exits when psql disconnects; perf record follows it out
    try:
        rec.wait(timeout=30)
    except subprocess.TimeoutExpired:
        rec.send_signal(signal.SIGINT)
        rec.wait()
    rep = subprocess.run([perf, "report", "-i", out_path, "--no-children", "--stdio",
                          "--sort", "dso,symbol", "--percent-limit", "0.7", "-g", "none"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    lines = [re.sub(r"(\s+-)+\s*$", "", l) for l in rep.splitlines() if l.strip() and not l.startswith("#")]
    report = "\n".join(lines[:40])
    print(f"\nperf (self time, {label}); full data: {out_path}\n{report}\n")
    return (label, out_path, report)


def render_text(header, table):
    widths = [max(len(header[i]), *(len(r[i]) for r in table)) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in table:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def write_results(results_dir, args, info, nchanges, ntx, tx_size, wal_bytes, load_s, decoding_mem,
                  work_mem, has_allow_list, header, table, times, cputimes, plugins, failed, notes, perf_report):
    os.makedirs(results_dir, exist_ok=True)
    now = datetime.datetime.now()
    path = os.path.join(results_dir, f"decode-{now:%Y-%m-%d}.md")
    if os.path.exists(path):
        path = os.path.join(results_dir, f"decode-{now:%Y-%m-%d-%H%M%S}.md")
    cmd = args.command or " ".join(shlex.quote(a) for a in sys.argv)
    so_info = info.get("walship_so", "?")
    commit = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip() or "unknown"
    L = []
    L.append(f"# Decode benchmark, {now:%Y-%m-%d %H:%M}")
    L.append("")
    L.append(f"Command: `{cmd}`")
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append(f"- nproc: {info['nproc']}")
    L.append(f"- CPU: {info['cpu']}")
    L.append(f"- memory: {info['memory']}")
    L.append(f"- kernel: {info['kernel']}")
    L.append(f"- CPU busy (all processes) just before measuring: {info.get('busy_before', '?')}")
    L.append(f"- load average at start: {' '.join(info['loadavg'])}; at end: "
             f"{' '.join(open('/proc/loadavg').read().split(' ')[:3])} (other work on the machine skews results)")
    L.append(f"- PostgreSQL: {info['postgres']}")
    L.append(f"- date: {now:%Y-%m-%d %H:%M:%S %Z}".rstrip())
    L.append(f"- walship: commit {commit}; {so_info}")
    L.append("")
    L.append("## Setup")
    L.append("")
    L.append(f"- throwaway cluster (initdb in /tmp, loopback port), wal_level=logical, shared_buffers=1GB, "
             f"logical_decoding_work_mem={decoding_mem} (default), work_mem={work_mem} (default)"
             + (", output_plugin_libraries set" if has_allow_list else ""))
    L.append("- **fsync=off, synchronous_commit=off, autovacuum=off** (setup speed only; decoding reads "
             "WAL already written)")
    L.append(f"- table: 6 columns (id bigint pk, integer, text ~37 chars, numeric(14,4), timestamptz, boolean)")
    L.append(f"- workload: {ntx} transactions x {tx_size} changes = {nchanges} changes, 60% INSERT / "
             f"30% UPDATE / 10% DELETE; {wal_bytes / 1e6:.1f} MB of WAL; loaded in {load_s:.1f} s")
    L.append("- floor (no-op): walship_bench_noop (bench/decode/noop_plugin.c): decodes everything, "
             "writes one byte per change")
    if args.via == "stream":
        L.append("- one slot per plugin, all created before the workload; one warm-up "
                 "`SELECT count(*), sum(length(data)) FROM pg_logical_slot_peek_binary_changes(slot, NULL, NULL, opts)` "
                 f"(rows and bytes out), then {args.rounds} round-robin rounds, each a copy of the slot "
                 "streamed to the workload's end by `pg_recvlogical --start -E <end> -f /dev/null` through a "
                 "walsender; cpu s = the walsender's CPU time (/proc/<pid>/schedstat), median s = pg_recvlogical's "
                 "wall time; median and min")
    elif args.via == "direct":
        L.append("- one slot per plugin, all created before the workload; one warm-up "
                 "`SELECT count(*), sum(length(data)) FROM pg_logical_slot_peek_binary_changes(slot, NULL, NULL, opts)` "
                 f"(rows and bytes out), then {args.rounds} round-robin rounds, each "
                 "`walship_bench_decode(slot, opts)` (bench/decode/noop_plugin.c): the slot decoded to the end of "
                 "WAL in the backend, as the peek does, but each output row only counted and dropped (no "
                 "tuplestore, no walsender, no socket: decoding plus the plugin, the path of a stream worker); "
                 "cpu s = the backend's thread CPU time while decoding, median s = its wall time; median and min")
    else:
        L.append("- one slot per plugin, all created before the workload; each timed as "
                 "`SELECT count(*), sum(length(data)) FROM pg_logical_slot_peek_binary_changes(slot, NULL, NULL, opts)` "
                 f"(psql \\timing), one warm-up pass, then {args.rounds} round-robin rounds; median and min; "
                 "cpu s = the backend's CPU time during the peek (/proc/self/schedstat)")
    L.append("- options: " + "; ".join(
        f"{label}: " + (", ".join(f"'{k}' '{v}'" for k, v in opts) or "none") for label, _, _, opts in plugins))
    L.append("- rows out = rows returned by the peek (includes BEGIN/COMMIT messages where the plugin "
             "emits them); output MB = sum(length(data)) / 10^6; changes/s = changes / median; "
             "cpu / floor = median cpu / the floor's median cpu; own ns/change = (median cpu - the floor's) "
             "per change, what the plugin itself costs; "
             "vs X = X's median wall time / this plugin's (>1 = faster than X)")
    L.append("")
    L.append("## Results")
    L.append("")
    L.append("| " + " | ".join(header) + " |")
    L.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for r in table:
        L.append("| " + " | ".join(r) + " |")
    L.append("")
    for n in notes:
        L.append(f"- {n}")
    if failed:
        L.append("")
        L.append("Failures:")
        L.append("")
        for slot, err in failed.items():
            L.append(f"- `{slot}`: {err}")
    L.append("")
    L.append("Individual runs (s):")
    L.append("")
    for label, slot, _, _ in plugins:
        if times.get(slot):
            L.append(f"- {label}: wall " + ", ".join(f"{t:.3f}" for t in times[slot])
                     + "; backend cpu " + ", ".join(f"{t:.3f}" for t in cputimes[slot]))
    if perf_report:
        label, out_path, report = perf_report
        L.append("")
        L.append(f"## perf profile of one peek, {label} (self time; `perf report -i {out_path}`)")
        L.append("")
        L.append("```")
        L.append(report)
        L.append("```")
    L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))
    return path


if __name__ == "__main__":
    sys.exit(main())
