"""A real Apache Kafka broker for the tests: KRaft, one node that is both broker and
controller, on free 127.0.0.1 ports, run by the machine's Java 17 from jars that
Maven resolves from Maven Central (tests/kafka/pom.xml) and caches.

  kafka.sh start <dir>    start a broker with its config, data and log in <dir>; prints
                          the bootstrap address (127.0.0.1:PORT) on stdout and writes it
                          to <dir>/bootstrap, the pid to <dir>/kafka.pid, the log to
                          <dir>/kafka.log. If <dir> already holds a broker that was
                          stopped, it is started again on the same ports with its data.
  kafka.sh stop <dir>     SIGTERM, wait (30 s), then SIGKILL
  kafka.sh kill <dir>     SIGKILL at once (a crash, for tests)
  kafka.sh status <dir>   exit 0 and print the bootstrap address if it runs
  kafka.sh fetch          only warm the cache (CI runs this first): resolve the jars, and
                          train a class-data-sharing archive of the broker's classes
                          that halves its start time
  kafka.sh classpath      print the broker's classpath (resolving it first)

A cluster, for fault tests (kill the leader of a partition, lose the quorum, ...):

  kafka.sh cluster-start <dir> [N]
                          N (default 3) KRaft nodes in <dir>/node1..N, each a broker
                          and a controller (a static quorum of N voters), on free
                          127.0.0.1 ports; replication factor min(N,3) for new and
                          internal topics, min.insync.replicas min(N,2), no unclean
                          leader election. Starts every node that does not run, all at
                          once, waits until each serves metadata and the metadata lists
                          N brokers, then prints the bootstrap list 127.0.0.1:P1,...
                          on stdout and writes it to <dir>/bootstrap. If <dir> holds a
                          stopped (or partly stopped) cluster, its nodes start again on
                          their ports and data.
  kafka.sh cluster-stop <dir>    stop every node (SIGTERM to all at once, so the quorum
                          lasts until the brokers are down; SIGKILL after 30 s)
  kafka.sh cluster-kill <dir>    SIGKILL every node
  kafka.sh cluster-status <dir>  a line per node: nodeK running|stopped PID|- ADDRESS;
                          exit 0 if every node runs, 1 if not

A node is a broker directory: kafka.sh start|stop|kill|status <dir>/nodeK work on it
(start: again on its ports and data; ready when that node serves metadata, whether or
not the others run, but a node gets there only while a majority of the voters runs).

Environment:
  WALSHIP_CACHE                 cache root (default ~/.cache/walship); jars go to
                                $WALSHIP_CACHE/kafka-<version>/
  WALSHIP_KAFKA_HEAP            heap options (default "-Xmx512m -Xms128m"; a cluster
                                node's default is "-Xmx384m -Xms128m", the value when
                                the cluster was set up is kept in <dir>/nodeK/heap)
  WALSHIP_KAFKA_JVM_OPTS        extra JVM options
  WALSHIP_KAFKA_START_TIMEOUT   seconds to wait for the broker (default 90)
  WALSHIP_KAFKA_PORT            fixed broker port instead of a free one (not clusters)
  WALSHIP_KAFKA_CONFIG          extra server.properties lines (newline separated),
                                applied when <dir> is first set up (a cluster: every
                                node); later lines win
  WALSHIP_KAFKA_CDS             0: no class-data-sharing archive (default 1)
  JAVA_HOME / JAVA              the Java to run (default: java on PATH)

This module is that command: tests/kafka/kafka.sh runs ``python3 -m walship_testlib
kafka``, and so do ``KafkaBroker`` and ``KafkaCluster`` (kafka.py).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, TextIO

from .common import REPO_ROOT, free_ports, tail

HERE = REPO_ROOT / "tests" / "kafka"
POM = HERE / "pom.xml"
LOG4J_CONF = HERE / "log4j2.properties"
DEFAULT_HEAP = "-Xmx512m -Xms128m"  # a cluster node's <dir>/heap wins
CLUSTER_HEAP = "-Xmx384m -Xms128m"  # three JVMs on a small machine
PROG = "kafka.sh"


class Failed(RuntimeError):
    """The command fails (exit 1); the message, if any, is logged as an ERROR."""


def kafka_version() -> str:
    m = re.search(r"<kafka.version>(.*?)</kafka.version>", POM.read_text())
    return m.group(1) if m else ""


# --- processes ----------------------------------------------------------------------
def alive(pid: int) -> bool:
    """kill -0, but a zombie (an exited child of this very process) counts as dead."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_pid(d: Path) -> str:
    try:
        return (d / "kafka.pid").read_text().strip()
    except OSError:
        return ""


def is_our_broker(pid: str, d: Path) -> bool:
    """Is ``pid`` a live broker process of directory ``d`` (and not a recycled pid)?"""
    if not re.fullmatch(r"[0-9]+", pid or "") or not alive(int(pid)):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ")
    except OSError:
        return True
    return f"kafka.Kafka {d}/server.properties".encode() in cmdline


def broker_pid(d: Path) -> int | None:
    """The pid of the broker of directory ``d`` if it runs, else None."""
    d = Path(d).resolve()
    pid = read_pid(d)
    return int(pid) if is_our_broker(pid, d) else None


def bootstrap_of(d: Path) -> str:
    """The broker's own address, 127.0.0.1:PORT, whether it runs or not."""
    try:
        text = (Path(d) / "server.properties").read_text()
    except OSError:
        text = ""
    m = re.search(r"^listeners=PLAINTEXT://127\.0\.0\.1:([0-9]*),", text, re.M)
    if not m or not m.group(1):
        raise Failed(f"no PLAINTEXT listener in {d}/server.properties")
    return f"127.0.0.1:{m.group(1)}"


def cluster_nodes(d: Path) -> list[Path]:
    """The node directories of cluster ``d``, node1 first."""
    nodes = []
    while (d / f"node{len(nodes) + 1}" / "server.properties").is_file():
        nodes.append(d / f"node{len(nodes) + 1}")
    return nodes


def random_cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding,
    # never starting with '-'.
    while True:
        s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not s.startswith("-"):
            return s


def metadata_brokers(bootstrap: str, **conf) -> int | None:
    """How many brokers the metadata from ``bootstrap`` lists (0: no answer); None
    without confluent-kafka (then a log line and an open port are all one can check)."""
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return None
    client = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, **conf})
    try:
        return len(client.list_topics(timeout=3).brokers)
    except Exception:
        return 0


def server_properties(header: str, *, node_id: int, quorum: str, listeners: str, log_dirs,
                      rf: int, isr: int, unclean: str, session: str, threads: str) -> str:
    """A test broker's server.properties: a broker and controller on loopback, topics
    auto-created with one partition, replication factor ``rf``, no retention."""
    return f"""\
{header}
process.roles=broker,controller
node.id={node_id}
{quorum}
listeners={listeners}
advertised.listeners={listeners}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={log_dirs}
num.partitions=1
default.replication.factor={rf}
min.insync.replicas={isr}
{unclean}auto.create.topics.enable=true
offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=1
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={isr}
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={isr}
group.initial.rebalance.delay.ms=0
{session}
broker.session.timeout.ms=5000
broker.heartbeat.interval.ms=500
{threads}
num.recovery.threads.per.data.dir=1
log.retention.hours=-1
log.retention.bytes=-1
"""


def in_parallel(fn: Callable, items: list) -> list:
    """``fn(item)`` for every item at once, in threads; the results in order."""
    results: list = [None] * len(items)

    def run(i):
        results[i] = fn(items[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# --- the broker and cluster commands --------------------------------------------------
class Kafka:
    """The commands, with their environment (``env``, default os.environ) and where they
    log (``err``) and print (``out``)."""

    def __init__(self, env: Mapping[str, str] | None = None, err: TextIO | None = None,
                 out: TextIO | None = None):
        self.env = dict(os.environ if env is None else env)
        self.err = err or sys.stderr
        self.out = out or sys.stdout
        e = self.env
        self.version = kafka_version()
        self.cache_root = Path(e.get("WALSHIP_CACHE")
                               or f"{e.get('HOME') or '/root'}/.cache/walship")
        self.jars = self.cache_root / f"kafka-{self.version}"
        self.java = e.get("JAVA") or (f"{e['JAVA_HOME']}/bin/java" if e.get("JAVA_HOME")
                                      else "java")
        self.start_timeout = e.get("WALSHIP_KAFKA_START_TIMEOUT") or "90"
        self.cds = (e.get("WALSHIP_KAFKA_CDS") or "1") == "1"

    def log(self, msg: str) -> None:
        print(f"{PROG}: {msg}", file=self.err, flush=True)

    def _which(self, program: str) -> str | None:
        return shutil.which(program, path=self.env.get("PATH"))

    def _child(self, err=None, out=None, **env_changes) -> "Kafka":
        env = {k: v for k, v in self.env.items() if k not in env_changes}
        env.update({k: v for k, v in env_changes.items() if v is not None})
        return Kafka(env, err or self.err, out or self.out)

    # --- jars ---------------------------------------------------------------------------
    def pom_stamp(self) -> str:
        return hashlib.sha256(POM.read_bytes()).hexdigest()

    def jars_ready(self) -> bool:
        try:
            stamp = (self.jars / ".complete").read_text().strip()
        except OSError:
            return False
        return stamp == self.pom_stamp() and any(self.jars.glob("kafka_2.13-*.jar"))

    def fetch(self) -> None:
        if self.jars_ready() and (not self.cds or self.cds_archive().is_file()):
            return
        self.cache_root.mkdir(parents=True, exist_ok=True)
        # One warmer at a time (parallel test runs share the cache).
        with open(f"{self.jars}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.resolve()
            self.train_cds()

    def resolve(self) -> None:
        if self.jars_ready():
            return
        if not self._which("mvn"):
            raise Failed(f"mvn not found (needed once to resolve Kafka {self.version} "
                         f"into {self.jars})")
        tmp = Path(f"{self.jars}.tmp.{os.getpid()}")
        mvn_log = Path(f"{tmp}.mvn.log")
        t0 = time.monotonic()
        shutil.rmtree(tmp, ignore_errors=True)
        self.log(f"resolving Kafka {self.version} jars with Maven into {self.jars} "
                 "(once; cached afterwards)")
        args = ["-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
                "-Dmdep.useRepositoryLayout=false"]

        def mvn(*extra: str) -> bool:
            with open(mvn_log, "w") as f:
                return subprocess.run(["mvn", *extra, *args], stdout=f, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=self.env).returncode == 0

        # Offline first: after one online run everything is in ~/.m2 and no network is needed.
        if not mvn("-o"):
            shutil.rmtree(tmp, ignore_errors=True)
            if not mvn():
                self.err.write(mvn_log.read_text(errors="replace"))
                shutil.rmtree(tmp, ignore_errors=True)
                mvn_log.unlink(missing_ok=True)
                raise Failed(f"Maven could not resolve Kafka {self.version} (see above)")
        mvn_log.unlink(missing_ok=True)
        if not any(tmp.glob("kafka_2.13-*.jar")):
            raise Failed(f"Maven ran but no kafka_2.13 jar in {tmp}")
        (tmp / ".complete").write_text(self.pom_stamp() + "\n")
        shutil.rmtree(self.jars, ignore_errors=True)
        tmp.rename(self.jars)
        self.log(f"resolved {len(list(self.jars.rglob('*.jar')))} jars in "
                 f"{int(time.monotonic() - t0)} s")

    def classpath(self) -> str:
        return ":".join(str(j) for j in sorted(self.jars.glob("*.jar")))

    # --- the JVM ------------------------------------------------------------------------
    def cds_archive(self) -> Path:
        """The class-data-sharing archive belongs to one set of jars and one JVM build."""
        found = self._which(self.java)
        java_bin = os.path.realpath(found) if found else self.java
        try:
            mtime = str(int(os.stat(java_bin).st_mtime))
        except OSError:
            mtime = ""
        digest = hashlib.sha256(f"{java_bin} {mtime}".encode()).hexdigest()[:12]
        return self.jars / f"cds-{digest}.jsa"

    def jvm(self, *opts: str, heap: str = DEFAULT_HEAP) -> list[str]:
        """java, its options and the classpath; ``opts`` are extra options."""
        jsa = self.cds_archive()
        cds = [f"-XX:SharedArchiveFile={jsa}", "-Xshare:auto"] if self.cds and jsa.is_file() else []
        return [self.java, *(self.env.get("WALSHIP_KAFKA_HEAP") or heap).split(),
                "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExplicitGCInvokesConcurrent",
                "-XX:+ExitOnOutOfMemoryError", "-XX:-UsePerfData", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J_CONF}", *cds, *opts,
                *(self.env.get("WALSHIP_KAFKA_JVM_OPTS") or "").split(), "-cp", self.classpath()]

    @staticmethod
    def heap_of(d: Path) -> str:
        try:
            return (d / "heap").read_text().strip()
        except OSError:
            return DEFAULT_HEAP

    def storage_format(self, d: Path, cluster_id: str, *opts: str) -> None:
        cmd = self.jvm(heap=self.heap_of(d)) + [
            "kafka.tools.StorageTool", "format", "--cluster-id", cluster_id,
            "--config", f"{d}/server.properties", *opts]
        with open(d / "format.log", "w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=self.env).returncode
        if rc != 0:
            self.err.write((d / "format.log").read_text(errors="replace"))
            raise Failed(f"kafka-storage format failed in {d}")

    # --- start --------------------------------------------------------------------------
    def write_config(self, d: Path) -> None:
        fixed = self.env.get("WALSHIP_KAFKA_PORT") or ""
        try:
            broker_port, controller_port = free_ports(2, first=int(fixed or 0))
        except (OSError, ValueError):
            raise Failed("could not pick free ports"
                         + (f" (is port {fixed} free?)" if fixed else "")) from None
        listeners = f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}"
        (d / "server.properties").write_text(server_properties(
            "# written by tests/kafka/kafka.sh for a throwaway test broker",
            node_id=1, quorum=f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
            listeners=listeners, log_dirs=d / "data", rf=1, isr=1, unclean="",
            session="""\
# after a crash (kafka.sh kill) the old registration blocks the new one until its
# session times out: 5 s instead of 9 s""",
            threads="num.network.threads=2\nnum.io.threads=4") + self._extra_config())

    def _extra_config(self) -> str:
        extra = self.env.get("WALSHIP_KAFKA_CONFIG") or ""
        return f"# WALSHIP_KAFKA_CONFIG\n{extra}\n" if extra else ""

    def wait_ready(self, pid: int, bootstrap: str, logfile: Path, log_offset: int) -> int:
        """0: ready; 1: timed out; 2: the process died."""
        host, port = bootstrap.rsplit(":", 1)
        deadline = time.monotonic() + float(self.start_timeout)

        def started() -> bool:  # only what this start wrote counts
            try:
                with open(logfile, "rb") as f:
                    f.seek(log_offset)
                    return b"Kafka Server started" in f.read()
            except OSError:
                return False

        def tcp_ok() -> bool:
            try:
                with socket.create_connection((host, int(port)), timeout=1):
                    return True
            except OSError:
                return False

        while time.monotonic() < deadline:
            if not alive(pid):
                return 2
            if started() and tcp_ok() and metadata_brokers(bootstrap) != 0:
                return 0
            time.sleep(0.1)
        return 1

    def setup_dir(self, d: Path) -> None:
        """Sets up ``d`` on first use: config on free ports, formatted KRaft storage."""
        if (d / "data" / "meta.properties").is_file():
            return
        shutil.rmtree(d / "data", ignore_errors=True)
        if (d / "cluster.id").is_file():
            # a cluster node whose data is gone (a lost disk, for tests): format it again
            # into its cluster, keeping its config and ports
            self.log(f"{d}: no data; formatting it again as node of cluster "
                     f"{(d / 'cluster.id').read_text().strip()}")
            self.format_cluster_node(d)
            return
        self.write_config(d)
        self.storage_format(d, random_cluster_id(), "--standalone")

    def launch(self, d: Path, *opts: str) -> int:
        """Starts the broker of ``d`` and waits until it serves metadata; returns its pid.
        On failure logs the end of its log, kills it and raises Failed."""
        bootstrap = bootstrap_of(d)
        cmd = self.jvm(*opts, heap=self.heap_of(d)) + ["kafka.Kafka", f"{d}/server.properties"]
        logfile = d / "kafka.log"
        with open(logfile, "a") as f:
            f.write(f"===== kafka.sh start {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                    f"Kafka {self.version} on {bootstrap}\n")
        log_offset = logfile.stat().st_size
        # Own session, stdin from /dev/null, output to the log: the broker outlives this
        # command and holds no pipe of whoever called it.
        with open(logfile, "ab") as f:
            pid = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=self.env).pid
        (d / "kafka.pid").write_text(f"{pid}\n")
        rc = self.wait_ready(pid, bootstrap, logfile, log_offset)
        if rc != 0:
            why = (f"the broker process {pid} exited" if rc == 2
                   else f"not ready after {self.start_timeout}s")
            self.log(f"ERROR: Kafka {self.version} did not come up on {bootstrap}: {why}")
            self.log(f"----- last lines of {logfile} -----")
            self.err.write(tail(logfile, 60) + "\n")
            self.log(f"----- (config: {d}/server.properties)")
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            (d / "kafka.pid").unlink(missing_ok=True)
            raise Failed()
        (d / "bootstrap").write_text(bootstrap + "\n")
        return pid

    def train_cds(self) -> None:
        """Once per set of jars and JVM: run a broker with -XX:ArchiveClassesAtExit so
        that later JVMs map its classes instead of loading them (about 2x faster broker
        start). Best effort."""
        if not self.cds:
            return
        jsa = self.cds_archive()
        if jsa.is_file():
            return
        t0 = time.monotonic()
        tmpd = Path(tempfile.mkdtemp(prefix="walship-kafka-cds.",
                                     dir=self.env.get("TMPDIR") or "/tmp"))
        self.log("training a class-data-sharing archive of the broker (once per jars and JVM)")
        trained = tmpd / "kafka.jsa"
        with open(tmpd / "train.err", "w") as err, open(os.devnull, "w") as out:
            trainer = self._child(err, out, WALSHIP_KAFKA_PORT=None, WALSHIP_KAFKA_CONFIG=None)
            try:
                trainer.setup_dir(tmpd)
                trainer.launch(tmpd, f"-XX:ArchiveClassesAtExit={trained}")
                trainer.stop(tmpd, "TERM")
            except Exception as e:  # best effort: without an archive brokers start slower
                if str(e):
                    trainer.log(f"ERROR: {e}")
        ok = trained.is_file() and trained.stat().st_size > 0 and subprocess.run(
            [self.java, "-Xshare:on", f"-XX:SharedArchiveFile={trained}", "-cp", self.classpath(),
             "-version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=self.env).returncode == 0
        if ok:
            shutil.move(str(trained), str(jsa))
            self.log(f"archive {jsa} ready in {int(time.monotonic() - t0)} s")
        else:
            self.log("WARNING: no class-data-sharing archive (brokers start slower); details:")
            self.err.write(tail(tmpd / "train.err", 20) + "\n")
        shutil.rmtree(tmpd, ignore_errors=True)

    def _check_java(self) -> None:
        if not self._which(self.java):
            raise Failed("java not found (set JAVA_HOME or JAVA)")

    def start(self, d: Path) -> str:
        d.mkdir(parents=True, exist_ok=True)
        d = d.resolve()
        pid = read_pid(d)
        if is_our_broker(pid, d):
            try:
                running = (d / "bootstrap").read_text().strip()
            except OSError:
                running = ""
            raise Failed(f"a broker already runs in {d} (pid {pid}, {running})")
        self._check_java()
        self.fetch()
        t0 = time.time()
        self.setup_dir(d)
        t1 = time.time()
        pid = self.launch(d)
        t2 = time.time()
        bootstrap = bootstrap_of(d)
        self.log(f"Kafka {self.version} ready on {bootstrap} (pid {pid}) in {t2 - t0:.1f} s "
                 f"(format {t1 - t0:.1f} s, broker {t2 - t1:.1f} s); log {d}/kafka.log")
        print(bootstrap, file=self.out, flush=True)
        return bootstrap

    # --- stop ---------------------------------------------------------------------------
    def stop(self, d: Path, how: str = "TERM") -> None:
        if not d.is_dir():
            raise Failed(f"no such directory: {d}")
        d = d.resolve()
        pid = read_pid(d)
        if not pid:
            self.log(f"no broker pid in {d} (not running)")
            return
        if not is_our_broker(pid, d):
            self.log(f"broker {pid} of {d} is not running")
            (d / "kafka.pid").unlink(missing_ok=True)
            return

        def wait_gone(tenths: int) -> None:
            for _ in range(tenths):
                if not alive(int(pid)):
                    break
                time.sleep(0.1)

        def kill(sig) -> None:
            try:
                os.kill(int(pid), sig)
            except OSError:
                pass

        if how == "KILL":
            kill(signal.SIGKILL)
        else:
            kill(signal.SIGTERM)
            wait_gone(300)
            if alive(int(pid)):
                self.log(f"broker {pid} still runs 30 s after SIGTERM: SIGKILL")
                kill(signal.SIGKILL)
        wait_gone(100)
        (d / "kafka.pid").unlink(missing_ok=True)

    def status(self, d: Path) -> int:
        if not d.is_dir():
            return 1
        d = d.resolve()
        if not is_our_broker(read_pid(d), d):
            return 1
        try:
            self.out.write((d / "bootstrap").read_text())
        except OSError:
            pass
        return 0

    # --- cluster ------------------------------------------------------------------------
    def format_cluster_node(self, d: Path) -> None:
        """KRaft storage of a static-quorum node (the voters are in its config, so no
        --standalone / --initial-controllers), with its cluster's id."""
        self.storage_format(d, (d / "cluster.id").read_text().strip())

    def cluster_setup(self, d: Path, n: int) -> None:
        """Config, cluster id and formatted storage of node1..n."""
        try:
            ports = free_ports(2 * n)
        except OSError:
            raise Failed("could not pick free ports") from None
        rf, isr = min(n, 3), min(n, 2)
        voters = ",".join(f"{k}@127.0.0.1:{ports[2 * k - 1]}" for k in range(1, n + 1))
        cluster_id = random_cluster_id()
        (d / "cluster.id").write_text(cluster_id + "\n")
        for k in range(1, n + 1):
            node = d / f"node{k}"
            shutil.rmtree(node, ignore_errors=True)
            node.mkdir(parents=True)
            (node / "cluster.id").write_text(cluster_id + "\n")
            (node / "heap").write_text((self.env.get("WALSHIP_KAFKA_HEAP") or CLUSTER_HEAP) + "\n")
            listeners = (f"PLAINTEXT://127.0.0.1:{ports[2 * k - 2]},"
                         f"CONTROLLER://127.0.0.1:{ports[2 * k - 1]}")
            (node / "server.properties.tmp").write_text(server_properties(
                "# written by tests/kafka/kafka.sh cluster-start for a throwaway test cluster: "
                f"node {k} of {n}", node_id=k, quorum=f"controller.quorum.voters={voters}",
                listeners=listeners, log_dirs=node / "data", rf=rf, isr=isr,
                unclean="unclean.leader.election.enable=false\n",
                session="""\
# a crashed or stopped (SIGSTOP) node is fenced, and leaves the ISRs of its partitions,
# once its session times out: 5 s instead of 9 s; a restarted node also waits for that
# before it registers again""",
                threads="""\
# leaders stay where the test put them (no preferred-leader election every 5 minutes);
# AdminClient.elect_leaders moves them back
auto.leader.rebalance.enable=false
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1""") + self._extra_config())
            # last: a node directory counts (cluster_nodes) once its config is complete
            (node / "server.properties.tmp").rename(node / "server.properties")
        ok = in_parallel(lambda k: self._attempt(self.format_cluster_node, d / f"node{k}"),
                         list(range(1, n + 1)))
        if not all(ok):
            for node in d.glob("node*"):
                if node.is_dir():
                    shutil.rmtree(node, ignore_errors=True)
            (d / "cluster.id").unlink(missing_ok=True)
            raise Failed(f"formatting the cluster in {d} failed")

    def _attempt(self, fn: Callable, *args) -> bool:
        """``fn(*args)``; False (its ERROR logged) if it fails."""
        try:
            fn(*args)
            return True
        except Failed as e:
            if str(e):
                self.log(f"ERROR: {e}")
            return False

    def wait_brokers(self, bootstrap: str, n: int) -> bool:
        """Until the metadata lists n brokers (or the start timeout passes)."""
        deadline = time.monotonic() + float(self.start_timeout)
        seen = 0
        while time.monotonic() < deadline:
            seen = metadata_brokers(bootstrap, log_level=2)
            if seen is None or seen >= n:
                return True  # without confluent-kafka, "Kafka Server started" has to do
            time.sleep(0.1)
        print(f"the metadata lists {seen} of {n} brokers", file=self.err, flush=True)
        return False

    def _start_node(self, node: Path) -> bool:
        with open(node / "start.out", "w") as out, open(node / "start.err", "w") as err:
            child = self._child(err, out)
            return child._attempt(child.start, node)

    def cluster_start(self, d: Path, want: str = "") -> str:
        if want and not re.fullmatch(r"[1-9][0-9]*", want):
            raise Failed(f"the node count must be a positive number, not '{want}'")
        d.mkdir(parents=True, exist_ok=True)
        d = d.resolve()
        if (d / "server.properties").is_file():
            raise Failed(f"{d} is a single-node broker's directory (kafka.sh start)")
        self._check_java()
        self.fetch()  # here, not in the parallel starts
        t0 = time.time()
        nodes = cluster_nodes(d)
        if not nodes:
            self.cluster_setup(d, int(want or 3))
            nodes = cluster_nodes(d)
        elif want and int(want) != len(nodes):
            raise Failed(f"{d} holds a cluster of {len(nodes)} nodes, not {want}")
        # All at once: a node is ready only once a majority of the voters runs.
        started = [node for node in nodes if not is_our_broker(read_pid(node), node)]
        ok = in_parallel(self._start_node, started)
        failed = [node for node, good in zip(started, ok) if not good]
        for node in started:
            for line in (node / "start.err").read_text(errors="replace").splitlines():
                print(re.sub(r"^kafka\.sh: ", f"kafka.sh: {node.name}: ", line), file=self.err)
        bootstrap = ",".join(bootstrap_of(node) for node in nodes)
        if not failed and not self.wait_brokers(bootstrap, len(nodes)):
            failed = nodes
            for node in nodes:
                self.log(f"----- last lines of {node}/kafka.log -----")
                self.err.write(tail(node / "kafka.log", 30) + "\n")
        if failed:
            self.log(f"ERROR: the cluster in {d} did not come up (failed: "
                     f"{' '.join(n.name for n in failed)}); killing the nodes this command "
                     f"started: {' '.join(n.name for n in started)}")
            for node in started:
                self._attempt(self.stop, node, "KILL")
            raise Failed()
        (d / "bootstrap").write_text(bootstrap + "\n")
        pids = " ".join(read_pid(node) for node in nodes)
        self.log(f"Kafka {self.version} cluster of {len(nodes)} ready on {bootstrap} (pids {pids}; "
                 f"started {len(started)}) in {time.time() - t0:.1f} s; logs {d}/node*/kafka.log")
        print(bootstrap, file=self.out, flush=True)
        return bootstrap

    def _cluster(self, d: Path) -> list[Path]:
        if not d.is_dir():
            raise Failed(f"no such directory: {d}")
        nodes = cluster_nodes(d.resolve())
        if not nodes:
            raise Failed(f"no cluster in {d.resolve()}")
        return nodes

    def cluster_stop(self, d: Path, how: str) -> int:
        # All at once: the brokers' controlled shutdowns need the controller quorum, which
        # one by one the last node would not have (it would wait 30 s for SIGKILL).
        ok = in_parallel(lambda node: self._attempt(self.stop, node, how), self._cluster(d))
        return 0 if all(ok) else 1

    def cluster_status(self, d: Path) -> int:
        try:
            nodes = self._cluster(d)
        except Failed:
            return 1
        rc = 0
        for node in nodes:
            pid = read_pid(node)
            if is_our_broker(pid, node):
                print(f"{node.name} running {pid} {bootstrap_of(node)}", file=self.out)
            else:
                print(f"{node.name} stopped - {bootstrap_of(node)}", file=self.out)
                rc = 1
        return rc


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    cmd, rest = (args[0], args[1:]) if args else ("", [])
    k = Kafka()
    dirs = [Path(a) for a in rest]
    one_dir = len(rest) == 1
    try:
        if cmd == "start" and one_dir:
            k.start(dirs[0])
        elif cmd in ("stop", "kill") and one_dir:
            k.stop(dirs[0], "TERM" if cmd == "stop" else "KILL")
        elif cmd == "status" and one_dir:
            return k.status(dirs[0])
        elif cmd == "fetch":
            k.fetch()
            k.log(f"Kafka {k.version} jars in {k.jars}")
        elif cmd == "classpath":
            k.fetch()
            print(k.classpath())
        elif cmd == "cluster-start" and len(rest) in (1, 2):
            k.cluster_start(dirs[0], rest[1] if len(rest) == 2 else "")
        elif cmd in ("cluster-stop", "cluster-kill") and one_dir:
            return k.cluster_stop(dirs[0], "TERM" if cmd == "cluster-stop" else "KILL")
        elif cmd == "cluster-status" and one_dir:
            return k.cluster_status(dirs[0])
        else:
            print(__doc__.split("\nThis module is that command")[0].rstrip(), file=sys.stderr)
            return 2
    except Failed as e:
        if str(e):
            k.log(f"ERROR: {e}")
        return 1
    return 0
