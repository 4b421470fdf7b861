"""Real Apache Kafka for the tests: one broker (``KafkaBroker``) or a KRaft cluster of n
nodes (``KafkaCluster``), started and stopped through the broker commands of
``kafkactl`` (the command behind tests/kafka/kafka.sh), run in a child process so that
the JVMs are nobody's children; the clients and metadata helpers run here.

Environment: ``WALSHIP_KAFKA_BOOTSTRAP`` (use a running broker), ``WALSHIP_KAFKA_SH``
(run another kafka.sh instead of kafkactl), and kafkactl's own (``WALSHIP_KAFKA_*``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from . import kafkactl
from .common import LIB_DIR, Resource, keep_tmp, log, tail, wait_for


def kafkactl_command() -> list[str]:
    """The broker commands: ``WALSHIP_KAFKA_SH`` (another kafka.sh) if set, else kafkactl."""
    sh = os.environ.get("WALSHIP_KAFKA_SH")
    return ["bash", sh] if sh else [sys.executable, "-m", "walship_testlib", "kafka"]


class _Kafka(Resource):
    """What a broker and a cluster share: a work dir (a new temp dir by default, made
    by ``start()``), the broker commands with this object's environment, clients."""

    _prefix = "walship-kafka-"

    def __init__(self, workdir: str | Path | None, *, keep: bool | None,
                 env: Mapping[str, str] | None, start_timeout: float, own_dir: bool):
        self.keep = keep_tmp() if keep is None else keep
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self._own_dir = own_dir
        # the temp dir is made by start(): an object that never starts leaves nothing behind
        self.workdir: Path | None = Path(workdir) if workdir else None
        self._bootstrap: str | None = None

    def _env(self) -> dict:
        env = dict(os.environ, WALSHIP_KAFKA_START_TIMEOUT=str(int(self.start_timeout)))
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LIB_DIR), env.get("PYTHONPATH")]))
        return env

    def _popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*kafkactl_command(), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self._env(),
                                stdin=subprocess.DEVNULL)

    def _sh(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([*kafkactl_command(), *args], capture_output=True, text=True,
                              timeout=timeout, env=self._env(), stdin=subprocess.DEVNULL)

    def _sh_start(self, command: str, *args: str, timeout: float) -> str:
        """``<command> <workdir> args`` that starts brokers; returns the bootstrap it
        prints. On failure the dir is kept for a post-mortem."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=self._prefix, dir="/tmp"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        # The first run resolves jars with Maven: allow for that on top of the brokers'
        # own start timeout (which kafkactl enforces).
        try:
            r = self._sh(command, str(self.workdir), *args, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"kafka.sh {command} timed out: {e}") from None
        if r.returncode != 0:
            self.keep = True  # leave the broker's dir and log for a post-mortem
            raise RuntimeError(
                f"{self._what} did not start (kafka.sh {command} {self.workdir} exited "
                f"{r.returncode}; its dir is kept):\n{r.stderr}\n{r.stdout}")
        for line in r.stderr.splitlines():
            log(line)
        bootstrap = r.stdout.strip().splitlines()[-1]
        log(f"{self._what} on {bootstrap} after {time.monotonic() - t0:.1f}s")
        return bootstrap

    def _drop_workdir(self, logs: str) -> None:
        if self.workdir and self._own_dir:
            if self.keep:
                log(f"keeping {self.workdir} ({logs})")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None

    @property
    def bootstrap(self) -> str:
        if not self._bootstrap:
            raise RuntimeError(f"{self!r} has not started")
        return self._bootstrap

    # -- clients ---------------------------------------------------------------------------
    def admin(self, **conf):
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap, **conf})

    def producer(self, **conf):
        from confluent_kafka import Producer

        return Producer({"bootstrap.servers": self.bootstrap, **conf})


class KafkaBroker(_Kafka):
    """A real single-node Kafka broker from ``kafka.sh start`` (kafkactl).

    ``KafkaBroker()`` starts one in a new temp dir (``start=False`` to delay);
    ``KafkaBroker(bootstrap="127.0.0.1:9092")`` (or ``WALSHIP_KAFKA_BOOTSTRAP``) wraps
    a broker that already runs and never stops it. ``stop()``/``start()`` keep the dir,
    so a restarted broker has the same port and data; ``kill()`` is a crash.
    """

    _what = "Kafka broker"

    def __init__(self, workdir: str | Path | None = None, *, bootstrap: str | None = None,
                 start: bool = True, keep: bool | None = None,
                 env: Mapping[str, str] | None = None, start_timeout: float = 90):
        self.external = bootstrap is not None
        super().__init__(workdir, keep=keep, env=env, start_timeout=start_timeout,
                         own_dir=workdir is None and not self.external)
        self._bootstrap = bootstrap
        self._running = False
        self._register(start)

    @classmethod
    def from_env(cls, **kwargs) -> "KafkaBroker":
        """A broker from ``WALSHIP_KAFKA_BOOTSTRAP`` if set, else a new one."""
        bootstrap = os.environ.get("WALSHIP_KAFKA_BOOTSTRAP")
        return cls(bootstrap=bootstrap, **kwargs) if bootstrap else cls(**kwargs)

    def __repr__(self) -> str:
        return f"<KafkaBroker {self._bootstrap or '?'} dir={self.workdir}>"

    def _started(self) -> bool:
        return self._running

    @property
    def log_path(self) -> Path | None:
        return self.workdir / "kafka.log" if self.workdir else None

    @property
    def pid(self) -> int | None:
        try:
            return int((self.workdir / "kafka.pid").read_text().strip()) if self.workdir else None
        except (OSError, ValueError):
            return None

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> str:
        """Start (or start again) the broker; returns the bootstrap address."""
        if self.external:
            self._wait_metadata(timeout=self.start_timeout)
            self._running = True
            return self.bootstrap
        if self._running:
            return self.bootstrap
        self._bootstrap = self._sh_start("start", timeout=self.start_timeout + 900)
        self._running = True
        return self._bootstrap

    def _stop(self, how: str, timeout: float) -> None:
        r = self._sh(how, str(self.workdir), timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"kafka.sh {how} failed:\n{r.stderr}")
        self._running = False

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after 30 s). The dir and data stay."""
        if self.external or not self._running:
            return
        self._stop("stop", timeout=120)

    def kill(self) -> None:
        """SIGKILL the broker (a crash). ``start()`` brings it back on the same port."""
        if self.external:
            raise RuntimeError("cannot kill an external broker")
        if not self._running:
            return
        self._stop("kill", timeout=60)

    def restart(self) -> str:
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        try:
            if self._running and not self.external:
                self.stop()
        finally:
            self._running = False
            self._unregister()
            self._drop_workdir(f"log {self.log_path}")

    def _atexit(self) -> None:
        if self._running and not self.external and self.workdir:
            # quick: no graceful shutdown at interpreter exit
            self._sh("kill", str(self.workdir), timeout=60)
            self._running = False
        self.cleanup()

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines) if self.log_path else "(external broker: no log)"

    # -- clients and metadata --------------------------------------------------------------
    def _wait_metadata(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})

        def ok():
            try:
                return len(admin.list_topics(timeout=5).brokers) > 0
            except Exception:
                return False

        wait_for(ok, timeout, 0.5, f"Kafka metadata from {self.bootstrap}")

    def topics(self, timeout: float = 10) -> dict[str, int]:
        """Topic name → partition count (internal topics included)."""
        md = self.admin().list_topics(timeout=timeout)
        return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}

    def create_topic(self, name: str, partitions: int = 1,
                     config: Mapping[str, str] | None = None, timeout: float = 30) -> None:
        """Create a topic and wait until every partition has a leader."""
        from confluent_kafka.admin import NewTopic

        admin = self.admin()
        fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                           config=dict(config or {}))],
                                 operation_timeout=timeout, request_timeout=timeout)
        fs[name].result(timeout=timeout)

        def ready():
            t = admin.list_topics(topic=name, timeout=5).topics.get(name)
            return (t is not None and t.error is None and len(t.partitions) == partitions
                    and all(p.leader >= 0 for p in t.partitions.values()))

        wait_for(ready, timeout, 0.1, f"topic {name} to have {partitions} led partitions")

    def delete_topics(self, names: Iterable[str], timeout: float = 30) -> None:
        names = list(names)
        if not names:
            return
        admin = self.admin()  # alive until the futures are done (else: _DESTROY)
        fs = admin.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
        for f in fs.values():
            f.result(timeout=timeout)


class KafkaCluster(_Kafka):
    """A real Kafka cluster of ``n`` KRaft nodes from ``kafka.sh cluster-start``, for
    fault tests: kill the leader of a partition, lose the quorum, restart on the data.

    Every node is a broker and a controller (a static quorum of ``n`` voters) on free
    127.0.0.1 ports; new and internal topics get replication factor ``min(n, 3)`` and
    ``min.insync.replicas`` ``min(n, 2)``; no unclean leader election and no automatic
    preferred-leader election (``elect_leaders()`` does one). Nodes are numbered 1..n,
    which is also their broker id in metadata (``leader_of`` returns it).

    ``KafkaCluster()`` starts one in a new temp dir (``start=False`` to delay).
    ``kill(k)`` is a crash (SIGKILL), ``stop(k)`` a graceful stop, ``start(k)`` brings
    node k back on its ports and data; ``pause(k)``/``resume(k)`` freeze and thaw it
    (SIGSTOP/SIGCONT). A node gets ready only while a majority of the voters runs, so
    start a quorum's worth together: ``start(2, 3)`` starts them at once. A graceful
    ``stop`` of a node that has no quorum behind it waits 30 s for its controlled
    shutdown and is then SIGKILLed: ``kill`` it instead.

    ``close()`` (and leaving the ``with`` block) ends every node: SIGKILL when the dir is
    thrown away, a graceful stop when it is kept (``keep=True``, ``WALSHIP_KEEP_TMP=1``,
    or a ``workdir`` of the caller's) and a quorum runs.
    """

    _what = "Kafka cluster"
    _prefix = "walship-kafka-cluster-"

    def __init__(self, n: int = 3, workdir: str | Path | None = None, *, start: bool = True,
                 keep: bool | None = None, env: Mapping[str, str] | None = None,
                 start_timeout: float = 90):
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self.n = n
        super().__init__(workdir, keep=keep, env=env, start_timeout=start_timeout,
                         own_dir=workdir is None)
        self._up = False
        self._paused: set[int] = set()
        self._register(start)

    def __repr__(self) -> str:
        return f"<KafkaCluster n={self.n} {self._bootstrap or '?'} dir={self.workdir}>"

    def _started(self) -> bool:
        return self._up

    def _sh_nodes(self, command: str, nodes: Sequence[int], timeout: float) -> None:
        """``kafka.sh <command> <dir>/nodeK`` for every node at once; raises if one fails."""
        procs = [(k, self._popen(command, str(self.node_dir(k)))) for k in nodes]
        failed = []
        deadline = time.monotonic() + timeout
        for k, p in procs:
            try:
                out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                err += f"\n(kafka.sh {command} timed out after {timeout:.0f}s)"
            for line in err.splitlines():
                log(f"node{k}: {line}")
            if p.returncode != 0:
                failed.append(f"node{k} (exit {p.returncode}):\n{err}{out}")
        if failed:
            if command == "start":
                self.keep = True  # leave the dirs and logs for a post-mortem
            raise RuntimeError(f"kafka.sh {command} failed in {self.workdir} "
                               f"(kept):\n" + "\n".join(failed))

    def _nodes(self, nodes: Sequence[int]) -> list[int]:
        for k in nodes:
            if not 1 <= k <= self.n:
                raise ValueError(f"no node {k} in a cluster of {self.n}")
        return list(nodes)

    # -- state (``bootstrap``: every node's address, down nodes too) -------------------------
    @property
    def nodes(self) -> list[int]:
        return list(range(1, self.n + 1))

    def node_dir(self, k: int) -> Path:
        if self.workdir is None:
            raise RuntimeError(f"{self!r} has not started")
        return self.workdir / f"node{self._nodes([k])[0]}"

    def node_bootstrap(self, k: int) -> str:
        """Node k's own address (127.0.0.1:PORT), whether it runs or not."""
        return kafkactl.bootstrap_of(self.node_dir(k))

    def node_pid(self, k: int) -> int | None:
        """The pid of node k's JVM if it runs (paused counts as running), else None."""
        return kafkactl.broker_pid(self.node_dir(k))

    @property
    def pids(self) -> dict[int, int | None]:
        """Node → pid of its JVM, None for nodes that do not run."""
        return {k: self.node_pid(k) for k in self.nodes}

    def is_running(self, k: int) -> bool:
        return self.node_pid(k) is not None

    @property
    def running_nodes(self) -> list[int]:
        return [k for k in self.nodes if self.is_running(k)]

    def log_path(self, k: int) -> Path:
        return self.node_dir(k) / "kafka.log"

    def log_tail(self, k: int | None = None, lines: int = 60) -> str:
        """The end of node k's log, or of every node's log."""
        if self.workdir is None:
            return "(not started: no logs)"
        return "\n".join(f"----- node{j}: {self.log_path(j)} -----\n{tail(self.log_path(j), lines)}"
                         for j in ([k] if k is not None else self.nodes))

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, *nodes: int) -> str:
        """Start the nodes (all at once) that do not run: by default every node, the
        first time in a new dir; returns the bootstrap list. A node that was stopped or
        killed comes back on its ports and data; it is ready when it serves metadata."""
        nodes = self._nodes(nodes)
        if not nodes or not self._up:
            self._bootstrap = self._sh_start("cluster-start", str(self.n),
                                             timeout=2 * self.start_timeout + 900)
            self._up = True
            self._paused.clear()
            if not nodes:
                return self._bootstrap
        todo = [k for k in nodes if not self.is_running(k)]
        if todo:
            t0 = time.monotonic()
            self._sh_nodes("start", todo, timeout=self.start_timeout + 60)
            log(f"node(s) {todo} up after {time.monotonic() - t0:.1f}s")
        return self.bootstrap

    def _stop(self, how: str, nodes: Sequence[int]) -> None:
        if not self._up:
            return
        nodes = self._nodes(nodes)
        # a SIGSTOPped JVM would not act on SIGTERM until SIGCONT
        for k in (nodes or self.nodes):
            if k in self._paused:
                self.resume(k)
        if nodes:
            self._sh_nodes(how, nodes, timeout=120)
        else:
            r = self._sh(f"cluster-{how}", str(self.workdir), timeout=120)
            if r.returncode != 0:
                raise RuntimeError(f"kafka.sh cluster-{how} failed:\n{r.stderr}")

    def stop(self, *nodes: int) -> None:
        """Graceful stop (SIGTERM; SIGKILL after 30 s) of the nodes, at once; by default
        of every node. Dirs and data stay."""
        self._stop("stop", nodes)

    def kill(self, *nodes: int) -> None:
        """SIGKILL the nodes (a crash); by default every node. ``start(k)`` brings them back."""
        self._stop("kill", nodes)

    def restart(self, *nodes: int) -> str:
        self.stop(*nodes)
        return self.start(*nodes)

    def pause(self, k: int) -> None:
        """SIGSTOP node k: it holds its connections but answers nothing (a hung broker);
        the controllers fence it when its session times out (5 s)."""
        pid = self.node_pid(k)
        if pid is None:
            raise RuntimeError(f"node{k} does not run")
        os.kill(pid, signal.SIGSTOP)
        self._paused.add(k)

    def resume(self, k: int) -> None:
        """SIGCONT node k after ``pause(k)``."""
        pid = self.node_pid(k)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        self._paused.discard(k)

    def cleanup(self) -> None:
        try:
            if self._up and self.running_nodes:
                keeping = self.keep or not self._own_dir
                if keeping and 2 * len(self.running_nodes) > self.n:
                    self.stop()
                else:
                    self.kill()
        finally:
            self._up = False
            self._unregister()
            self._drop_workdir(f"logs {self.workdir}/node*/kafka.log")

    close = cleanup

    def _atexit(self) -> None:
        if self._up and self.workdir:
            # quick: no graceful shutdown at interpreter exit
            for k in list(self._paused):
                self.resume(k)
            self._sh("cluster-kill", str(self.workdir), timeout=60)
            self._up = False
        self.cleanup()

    # -- clients and metadata --------------------------------------------------------------
    def metadata(self, timeout: float = 15):
        """Cluster metadata from whichever node answers first (a fresh client each time,
        quiet about the nodes that are down; retried until ``timeout``)."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while True:
            client = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 2,
                                  "socket.timeout.ms": 3000})
            try:
                return client.list_topics(timeout=max(0.5, min(3.0, deadline - time.monotonic())))
            except Exception as e:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"no metadata from {self.bootstrap} within "
                                       f"{timeout:.0f}s: {e}") from None
            time.sleep(0.1)

    def brokers(self, timeout: float = 15) -> list[int]:
        """Ids of the brokers in metadata (registered and not fenced)."""
        return sorted(self.metadata(timeout).brokers)

    def partitions(self, topic: str, timeout: float = 15) -> dict:
        """Partition → ``PartitionMetadata`` (``.leader``, ``.replicas``, ``.isrs``)."""
        t = self.metadata(timeout).topics.get(topic)
        if t is None or t.error is not None:
            raise RuntimeError(f"no topic {topic} in metadata"
                               f"{f': {t.error}' if t is not None else ''}")
        return dict(t.partitions)

    def leader_of(self, topic: str, partition: int = 0, timeout: float = 15) -> int:
        """The node that leads ``topic``/``partition`` (-1: none)."""
        return self.partitions(topic, timeout)[partition].leader

    def isr_of(self, topic: str, partition: int = 0, timeout: float = 15) -> list[int]:
        return sorted(self.partitions(topic, timeout)[partition].isrs)

    def _wait_partitions(self, topic: str, ok, timeout: float, what: str) -> dict:
        state: dict = {}

        def check():
            nonlocal state
            try:
                state = self.partitions(topic, timeout=5)
            except RuntimeError:
                return None
            return state if state and all(ok(p) for p in state.values()) else None

        try:
            return wait_for(check, timeout, 0.2, f"{what} of topic {topic}")
        except TimeoutError as e:
            now = {p: f"leader {m.leader} isr {sorted(m.isrs)}" for p, m in sorted(state.items())}
            raise TimeoutError(f"{e}; now {now or '(no metadata)'}; "
                               f"running nodes {self.running_nodes}") from None

    def wait_isr(self, topic: str, n: int, timeout: float = 60) -> dict:
        """Wait until every partition of ``topic`` has a leader and exactly ``n`` in-sync
        replicas; returns partition → ``PartitionMetadata``."""
        return self._wait_partitions(topic, lambda p: p.leader >= 0 and len(p.isrs) == n,
                                     timeout, f"{n} in-sync replicas")

    def wait_leader(self, topic: str, partition: int = 0, *, not_on: Iterable[int] = (),
                    timeout: float = 60) -> int:
        """Wait until ``topic``/``partition`` has a leader that is not one of ``not_on``
        (e.g. the node just killed); returns it."""
        bad = set(not_on)
        md = self._wait_partitions(
            topic, lambda p: p.id != partition or (p.leader >= 0 and p.leader not in bad),
            timeout, f"a leader of partition {partition} not on {sorted(bad)}")
        return md[partition].leader

    def wait_brokers(self, n: int | None = None, timeout: float = 60) -> list[int]:
        """Wait until the metadata lists ``n`` (default: every node) brokers, e.g. after a
        kill (the dead one drops out when fenced) or a start; returns their ids."""
        want = self.n if n is None else n
        ids: list[int] = []

        def check():
            nonlocal ids
            try:
                ids = self.brokers(timeout=5)
            except RuntimeError:
                return None
            return len(ids) == want

        try:
            wait_for(check, timeout, 0.2, f"{want} brokers in metadata")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; now {ids}") from None
        return ids

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int | None = None,
                     config: Mapping[str, str] | None = None, timeout: float = 30) -> None:
        """Create a topic (replication factor default ``min(n, 3)``) and wait until every
        partition has a leader and all its replicas in sync."""
        from confluent_kafka.admin import NewTopic

        rf = min(self.n, 3) if replication_factor is None else replication_factor
        admin = self.admin()  # alive until the futures are done
        fs = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=rf,
                      config=dict(config or {}))],
            operation_timeout=timeout, request_timeout=timeout)
        fs[name].result(timeout=timeout)
        self._wait_partitions(name, lambda p: p.leader >= 0 and len(p.isrs) == rf
                              and len(p.replicas) == rf, timeout,
                              f"{partitions} partitions with {rf} in-sync replicas")
        if len(self.partitions(name)) != partitions:
            raise RuntimeError(f"topic {name}: {len(self.partitions(name))} partitions, "
                               f"not {partitions}")

    def elect_leaders(self, topic: str, partitions: Iterable[int] | None = None,
                      timeout: float = 30) -> None:
        """Preferred-leader election (leaders back on the first replica) for ``topic``."""
        from confluent_kafka import ElectionType, TopicPartition

        parts = sorted(self.partitions(topic)) if partitions is None else list(partitions)
        admin = self.admin()  # alive until the future is done
        # no request_timeout/operation_timeout: confluent-kafka 2.16 raises SystemError
        # for either ("more argument specifiers than keyword list entries")
        f = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, p) for p in parts])
        for tp, err in f.result(timeout=timeout).items():
            # ELECTION_NOT_NEEDED: the preferred replica leads already
            if err is not None and "ELECTION_NOT_NEEDED" not in str(err):
                raise RuntimeError(f"preferred election of {tp.topic}/{tp.partition}: {err}")
