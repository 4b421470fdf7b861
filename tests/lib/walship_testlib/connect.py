"""Kafka Connect with the real Debezium PostgreSQL connector, for the compatibility suite
(tests/compat) and the Debezium benchmark (bench/debezium): a standalone worker
(``org.apache.kafka.connect.cli.ConnectStandalone``, file offsets in its temp dir) run
by the machine's Java 17 from jars that Maven resolves from Maven Central and caches.

Jars (``ConnectJars``, offline first; ``python3 -m walship_testlib connect fetch`` warms
the cache, as scripts/install-deps.sh does):

- the worker: tests/compat/connect/pom.xml (connect-runtime, connect-json, connect-file,
  the Log4j 2 binding) into ``$WALSHIP_CACHE/connect-<version>/lib``;
- the Debezium PostgreSQL connector: tests/compat/connect/debezium-pom.xml into
  ``$WALSHIP_CACHE/connect-<version>/plugins/debezium-connector-postgres-<version>/``,
  a directory of the worker's ``plugin.path``, so that Connect's plugin isolation loads
  it from a class loader of its own, as it loads an unpacked Debezium distribution.
  Its SMTs (``io.debezium.transforms.ExtractNewRecordState``) are then available to
  every connector of the worker.

``KafkaConnect(bootstrap, connectors=[...], worker={...})`` starts a worker on a free
loopback REST port in a new temp dir, with the given connectors (name → config), and
waits until each connector and its tasks are RUNNING; more connectors come and go
through its REST API (``add``, ``delete``, ``status``). The worker properties are the
caller's: ``worker`` overrides any default of ``worker_properties`` (converters,
``producer.*`` overrides such as ``producer.linger.ms``/``producer.batch.size``/
``producer.compression.type``, offset flush interval, ...). If the worker or a
connector does not start, it raises with the end of the worker's log: a suite that
needs Debezium fails, it never skips.

Environment: ``WALSHIP_CACHE`` (cache root, default ~/.cache/walship),
``WALSHIP_CONNECT_HEAP`` (default ``-Xmx1g -Xms256m``), ``WALSHIP_CONNECT_JVM_OPTS``,
``JAVA_HOME`` / ``JAVA``, ``WALSHIP_KEEP_TMP=1``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping

from .common import REPO_ROOT, Resource, free_port, keep_tmp, log, tail, wait_for

HERE = REPO_ROOT / "tests" / "compat" / "connect"
CONNECT_POM = HERE / "pom.xml"
DEBEZIUM_POM = HERE / "debezium-pom.xml"
LOG4J_CONF = HERE / "log4j2.properties"
DEFAULT_HEAP = "-Xmx1g -Xms256m"

DEBEZIUM_POSTGRES = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
FILE_SINK = "org.apache.kafka.connect.file.FileStreamSinkConnector"


def _pom_property(pom: Path, name: str) -> str:
    m = re.search(rf"<{re.escape(name)}>(.*?)</{re.escape(name)}>", pom.read_text())
    if not m:
        raise RuntimeError(f"no <{name}> in {pom}")
    return m.group(1).strip()


def connect_version() -> str:
    """The Kafka Connect version of tests/compat/connect/pom.xml (the test broker's)."""
    return _pom_property(CONNECT_POM, "connect.version")


def debezium_version() -> str:
    """The Debezium version of tests/compat/connect/debezium-pom.xml."""
    return _pom_property(DEBEZIUM_POM, "debezium.version")


def _java() -> str:
    if os.environ.get("JAVA"):
        return os.environ["JAVA"]
    if os.environ.get("JAVA_HOME"):
        return f"{os.environ['JAVA_HOME']}/bin/java"
    return "java"


class ConnectJars:
    """The worker's jars and the Debezium plugin, resolved by Maven into the cache (once;
    offline first, so a warm ~/.m2 needs no network)."""

    def __init__(self, cache_root: str | Path | None = None):
        root = cache_root or os.environ.get("WALSHIP_CACHE") or (
            Path(os.environ.get("HOME") or "/root") / ".cache" / "walship")
        self.cache_root = Path(root)
        self.connect_version = connect_version()
        self.debezium_version = debezium_version()
        self.dir = self.cache_root / f"connect-{self.connect_version}"
        self.lib = self.dir / "lib"
        self.plugin_path = self.dir / "plugins"
        self.debezium_dir = self.plugin_path / f"debezium-connector-postgres-{self.debezium_version}"

    @staticmethod
    def _stamp(pom: Path) -> str:
        return hashlib.sha256(pom.read_bytes()).hexdigest()

    @staticmethod
    def _ready(d: Path, pom: Path, must: str) -> bool:
        try:
            stamp = (d / ".complete").read_text().strip()
        except OSError:
            return False
        return stamp == ConnectJars._stamp(pom) and any(d.glob(must))

    def ready(self) -> bool:
        return (self._ready(self.lib, CONNECT_POM, "connect-runtime-*.jar")
                and self._ready(self.debezium_dir, DEBEZIUM_POM, "debezium-connector-postgres-*.jar"))

    def fetch(self) -> "ConnectJars":
        """Resolve whatever is missing; returns self. Raises RuntimeError when Maven cannot."""
        if self.ready():
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(f"{self.dir}.lock", "w") as lock:  # one resolver at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._resolve(CONNECT_POM, self.lib, "connect-runtime-*.jar",
                          f"Kafka Connect {self.connect_version}")
            # other versions of the plugin must not share the plugin path
            for old in self.plugin_path.glob("debezium-connector-postgres-*"):
                if old != self.debezium_dir:
                    shutil.rmtree(old, ignore_errors=True)
            self._resolve(DEBEZIUM_POM, self.debezium_dir, "debezium-connector-postgres-*.jar",
                          f"Debezium PostgreSQL connector {self.debezium_version}")
        return self

    def _resolve(self, pom: Path, dest: Path, must: str, what: str) -> None:
        if self._ready(dest, pom, must):
            return
        if not shutil.which("mvn"):
            raise RuntimeError(f"mvn not found (needed once to resolve {what} into {dest})")
        # resolved beside the plugin path, not in it: a worker never sees half a plugin
        tmp = self.dir / f".{dest.name}.tmp.{os.getpid()}"
        mvn_log = tmp.with_name(tmp.name + ".mvn.log")
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.monotonic()
        log(f"resolving {what} with Maven into {dest} (once; cached afterwards)")
        args = ["-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
                "-Dmdep.useRepositoryLayout=false"]

        def mvn(*extra: str) -> bool:
            with open(mvn_log, "w") as f:
                return subprocess.run(["mvn", *extra, *args], stdout=f, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL).returncode == 0

        try:
            if not mvn("-o"):  # offline first: a warm ~/.m2 needs no network
                shutil.rmtree(tmp, ignore_errors=True)
                if not mvn():
                    raise RuntimeError(f"Maven could not resolve {what}:\n"
                                       + mvn_log.read_text(errors="replace")[-6000:])
            if not any(tmp.glob(must)):
                raise RuntimeError(f"Maven ran but no {must} in {tmp}")
            (tmp / ".complete").write_text(self._stamp(pom) + "\n")
            shutil.rmtree(dest, ignore_errors=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            mvn_log.unlink(missing_ok=True)
        log(f"resolved {len(list(dest.glob('*.jar')))} jars of {what} in "
            f"{int(time.monotonic() - t0)} s")

    def classpath(self) -> str:
        return ":".join(str(j) for j in sorted(self.lib.glob("*.jar")))


def worker_properties(bootstrap: str, workdir: Path, rest_port: int, plugin_path: Path,
                      overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """A standalone worker's properties: JsonConverter with schemas for keys and values
    (Debezium's documented setup), file offsets in ``workdir``, offsets flushed every
    second (Debezium confirms to its slot when Connect commits offsets), REST on
    127.0.0.1. ``overrides`` win; a value of None removes a default."""
    props: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "true",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "true",
        "offset.storage.file.filename": str(workdir / "connect.offsets"),
        "offset.flush.interval.ms": "1000",
        "plugin.path": str(plugin_path),
        # every plugin here has ServiceLoader manifests: no reflective scan (6 s at start)
        "plugin.discovery": "service_load",
        "listeners": f"http://127.0.0.1:{rest_port}",
        "rest.advertised.host.name": "127.0.0.1",
        "rest.advertised.port": str(rest_port),
        # connectors may set their own client properties (a sink's consumer.override.*)
        "connector.client.config.override.policy": "All",
        # the worker's own consumers and producers, quick on a one-broker loopback
        "task.shutdown.graceful.timeout.ms": "5000",
    }
    for k, v in (overrides or {}).items():
        if v is None:
            props.pop(k, None)
        else:
            props[k] = v
    return {k: str(v) for k, v in props.items()}


def _properties_text(props: Mapping[str, str]) -> str:
    def esc(s: str, key: bool) -> str:
        s = s.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        if key:
            s = s.replace("=", "\\=").replace(":", "\\:").replace(" ", "\\ ")
        return s

    return "".join(f"{esc(k, True)}={esc(v, False)}\n" for k, v in props.items())


class ConnectError(RuntimeError):
    """Connect (or one of its connectors) failed; the message carries the log's end."""


class KafkaConnect(Resource):
    """A Kafka Connect standalone worker with the Debezium PostgreSQL connector on its
    plugin path.

    >>> with KafkaConnect(kafka.bootstrap) as connect:
    ...     connect.add("dbz", debezium_postgres_config(pg, "dbz", tables=["public.t"]))
    ...     connect.wait_running("dbz")

    ``connectors``: name → config given at start (on the command line, as JSON files;
    waited for RUNNING). ``worker``: overrides of ``worker_properties``.
    """

    def __init__(self, bootstrap: str, *, connectors: Mapping[str, Mapping[str, Any]] | None = None,
                 worker: Mapping[str, Any] | None = None, workdir: str | Path | None = None,
                 heap: str | None = None, start: bool = True, keep: bool | None = None,
                 start_timeout: float = 120, jars: ConnectJars | None = None):
        self.bootstrap = bootstrap
        self.initial_connectors = {k: dict(v) for k, v in (connectors or {}).items()}
        self.worker_overrides = dict(worker or {})
        self.heap = heap or os.environ.get("WALSHIP_CONNECT_HEAP") or DEFAULT_HEAP
        self.keep = keep_tmp() if keep is None else keep
        self.start_timeout = start_timeout
        self.jars = jars or ConnectJars()
        self._own_dir = workdir is None
        self.workdir: Path | None = Path(workdir) if workdir else None
        self.rest_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log_offset = 0
        self._register(start)

    def __repr__(self) -> str:
        return f"<KafkaConnect {self.url if self.rest_port else '?'} dir={self.workdir}>"

    # -- life cycle ---------------------------------------------------------------------
    def _started(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        return self.workdir / "connect.log" if self.workdir else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self._started() else None

    def start(self) -> "KafkaConnect":
        if self._started():
            return self
        self.jars.fetch()
        java = shutil.which(_java()) or _java()
        if not shutil.which(java):
            raise ConnectError(f"java not found ({java}; set JAVA_HOME or JAVA)")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="walship-connect-", dir="/tmp"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rest_port = free_port()
        props = worker_properties(self.bootstrap, self.workdir, self.rest_port,
                                  self.jars.plugin_path, self.worker_overrides)
        (self.workdir / "worker.properties").write_text(
            "# written by tests/lib/walship_testlib/connect.py for a throwaway worker\n"
            + _properties_text(props))
        files = []
        for name, config in self.initial_connectors.items():
            f = self.workdir / f"connector-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.json"
            f.write_text(json.dumps({"name": name, "config": _stringify(config)}, indent=1))
            files.append(str(f))
        cmd = [java, *self.heap.split(), "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
               "-XX:+ExitOnOutOfMemoryError", "-XX:-UsePerfData", "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={LOG4J_CONF}",
               *(os.environ.get("WALSHIP_CONNECT_JVM_OPTS") or "").split(),
               "-cp", self.jars.classpath(), "org.apache.kafka.connect.cli.ConnectStandalone",
               str(self.workdir / "worker.properties"), *files]
        (self.workdir / "command").write_text(" ".join(cmd) + "\n")
        with open(self.log_path, "a") as f:
            f.write(f"===== connect.py start {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                    f"Kafka Connect {self.jars.connect_version}, Debezium "
                    f"{self.jars.debezium_version}, REST {self.url}, Kafka {self.bootstrap}\n")
        self._log_offset = self.log_path.stat().st_size
        t0 = time.monotonic()
        # Own session, stdin from /dev/null, output to the log: no pipe of the caller held.
        with open(self.log_path, "ab") as f:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        (self.workdir / "connect.pid").write_text(f"{self.proc.pid}\n")
        try:
            self._wait_rest()
            for name in self.initial_connectors:
                self.wait_running(name)
        except BaseException:
            self.keep = True  # the dir and its log stay for a post-mortem
            self.kill()
            raise
        log(f"Kafka Connect {self.jars.connect_version} (Debezium {self.jars.debezium_version}) "
            f"on {self.url} (pid {self.proc.pid}) after {time.monotonic() - t0:.1f}s; "
            f"log {self.log_path}")
        return self

    def _wait_rest(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise ConnectError(f"Kafka Connect exited with {self.proc.returncode} while "
                                   f"starting:\n{self.log_tail(80)}")
            try:
                self.request("GET", "/connectors", timeout=2)
                return
            except (OSError, ConnectError):
                pass
            if time.monotonic() >= deadline:
                raise ConnectError(f"Kafka Connect's REST API ({self.url}) did not answer "
                                   f"within {self.start_timeout:.0f}s:\n{self.log_tail(80)}")
            time.sleep(0.25)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (connectors stop, offsets are flushed), SIGKILL after ``timeout``."""
        if not self._started():
            return
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"Kafka Connect {self.proc.pid} still runs {timeout:.0f}s after SIGTERM: SIGKILL")
            self.kill()
        except OSError:
            pass

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            self._unregister()
            if self.workdir and self._own_dir:
                if self.keep:
                    log(f"keeping {self.workdir} (log {self.log_path})")
                else:
                    shutil.rmtree(self.workdir, ignore_errors=True)
                    self.workdir = None

    def _atexit(self) -> None:
        self.kill()
        self.cleanup()

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines) if self.log_path else "(not started)"

    def log_text(self) -> str:
        """What the worker logged since this start."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", errors="replace")
        except (OSError, TypeError):
            return ""

    # -- REST -----------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        """One REST call; the decoded JSON answer (None for no content). An HTTP error
        raises ConnectError with Connect's message."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            raise ConnectError(f"{method} {path}: HTTP {e.code}: {detail}") from None
        return json.loads(raw) if raw else None

    def connectors(self) -> list[str]:
        return self.request("GET", "/connectors")

    def add(self, name: str, config: Mapping[str, Any], wait: bool = True,
            timeout: float = 120) -> None:
        """Create connector ``name``; with ``wait``, until it and its tasks run."""
        self.request("POST", "/connectors", {"name": name, "config": _stringify(config)},
                     timeout=timeout)
        if wait:
            self.wait_running(name, timeout)

    def delete(self, *names: str, timeout: float = 60) -> None:
        """Stop and remove the connectors ``names``, all at once (their offsets stay in
        the offsets file)."""
        for name in names:
            self.request("DELETE", f"/connectors/{name}", timeout=timeout)
        wait_for(lambda: not set(names) & set(self.connectors()), timeout, 0.2,
                 f"connectors {', '.join(names)} to be deleted")

    def status(self, name: str) -> dict:
        return self.request("GET", f"/connectors/{name}/status")

    def plugin_config(self, plugin_class: str) -> list[dict]:
        """The config definitions (name, default_value, ...) a plugin declares."""
        return self.request("GET", f"/connector-plugins/{plugin_class}/config")

    def check_running(self, name: str) -> bool:
        """True when connector ``name`` and all its tasks (at least one) run; raises
        ConnectError with the trace when one of them FAILED (or the worker died)."""
        if not self._started():
            raise ConnectError(f"Kafka Connect is not running (exit {self.proc.returncode if self.proc else '?'}):\n"
                               f"{self.log_tail(80)}")
        try:
            st = self.status(name)
        except ConnectError as e:
            if "HTTP 404" in str(e):
                return False
            raise
        states = [("connector", st["connector"])] + [(f"task {t['id']}", t) for t in st["tasks"]]
        for what, s in states:
            if s.get("state") == "FAILED":
                raise ConnectError(f"connector {name}: {what} FAILED:\n{s.get('trace', '')}\n"
                                   f"----- worker log -----\n{self.log_tail(60)}")
        return bool(st["tasks"]) and all(s.get("state") == "RUNNING" for _, s in states)

    def wait_running(self, name: str, timeout: float = 120) -> None:
        try:
            wait_for(lambda: self.check_running(name), timeout, 0.2,
                     f"connector {name} and its tasks to run")
        except TimeoutError as e:
            raise ConnectError(f"{e}; status {self._status_or_error(name)}\n"
                               f"----- worker log -----\n{self.log_tail(60)}") from None

    def _status_or_error(self, name: str) -> Any:
        try:
            return self.status(name)
        except Exception as e:  # pragma: no cover - diagnostics only
            return f"(unavailable: {e})"

    # -- Debezium -----------------------------------------------------------------------
    def wait_debezium_streaming(self, name: str, pg, slot: str, timeout: float = 120) -> None:
        """Until Debezium connector ``name`` runs and streams: its task RUNNING and its
        replication slot ``slot`` active in ``pg`` (a PgCluster), the point from which
        every committed change reaches it. Raises if the connector fails meanwhile."""
        deadline = time.monotonic() + timeout

        def streaming():
            if not self.check_running(name):
                return False
            return pg.scalar("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                             [slot]) is True

        try:
            wait_for(streaming, max(1.0, deadline - time.monotonic()), 0.25,
                     f"Debezium connector {name} to stream from slot {slot}")
        except TimeoutError as e:
            raise ConnectError(f"{e}; status {self._status_or_error(name)}\n"
                               f"----- worker log -----\n{self.log_tail(60)}") from None


    # -- sinks --------------------------------------------------------------------------
    def wait_sink_caught_up(self, name: str, topics: list[str], timeout: float = 120) -> None:
        """Until sink connector ``name`` has committed, for every partition of
        ``topics``, the partition's end offset (Connect commits a sink's offsets after
        the task flushed what it was given: for FileStreamSink, written to its file).
        Raises if the connector or its task fails meanwhile."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap,
                             "group.id": f"connect-{name}", "enable.auto.commit": False})
        try:
            md = consumer.list_topics(timeout=10)
            parts = [TopicPartition(t, p) for t in topics for p in md.topics[t].partitions]
            ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1]
                    for tp in parts}

            def done():
                if not self.check_running(name):
                    return False
                committed = consumer.committed(parts, timeout=10)
                return all(c.offset >= ends[(c.topic, c.partition)] for c in committed
                           if ends[(c.topic, c.partition)] > 0)

            try:
                wait_for(done, timeout, 0.5, f"sink connector {name} to consume {len(parts)} "
                                             "partitions to their end")
            except TimeoutError as e:
                raise ConnectError(f"{e}; status {self._status_or_error(name)}\n"
                                   f"----- worker log -----\n{self.log_tail(60)}") from None
        finally:
            consumer.close()


def _stringify(config: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in config.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (list, tuple)):
            v = ",".join(str(x) for x in v)
        out[k] = str(v)
    return out


def java_regex_literal(s: str) -> str:
    """``s`` as a Java regular expression matching exactly it (for Debezium's
    ``table.include.list``, which is a comma-separated list of regexes: ``s`` must not
    contain a comma)."""
    if "," in s:
        raise ValueError(f"{s!r}: Debezium's include lists cannot name a comma")
    return re.sub(r"([\\.\[\]{}()*+?^$|!-])", r"\\\1", s)


def debezium_postgres_config(pg, prefix: str, *, slot: str, tables: list[str] | None = None,
                             dbname: str = "postgres", publication: str | None = None,
                             **overrides: Any) -> dict[str, str]:
    """A Debezium PostgreSQL connector's config for PgCluster ``pg``: pgoutput, its own
    slot and publication (created for ``tables`` only: ``publication.autocreate.mode=
    filtered``), ``topic.prefix`` = ``prefix``, ``snapshot.mode=no_data`` (changes
    from the slot on), one task. ``tables`` are ``schema.table`` names as they are
    (matched exactly); ``overrides`` (``decimal.handling.mode="string"``, ...) win, with
    dots spelled as they are: pass them as ``**{"decimal.handling.mode": "string"}``."""
    config: dict[str, Any] = {
        "connector.class": DEBEZIUM_POSTGRES,
        "tasks.max": "1",
        "database.hostname": pg.host,
        "database.port": pg.port,
        "database.user": pg.user,
        "database.password": "unused",  # the test clusters trust loopback
        "database.dbname": dbname,
        "topic.prefix": prefix,
        "plugin.name": "pgoutput",
        "slot.name": slot,
        "publication.name": publication or slot,
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "no_data",
    }
    if tables is not None:
        config["table.include.list"] = ",".join(java_regex_literal(t) for t in tables)
    config.update(overrides)
    return _stringify(config)


def main(argv: list[str]) -> int:
    """``python3 -m walship_testlib connect fetch|classpath|plugin-path``."""
    cmd = argv[0] if argv else ""
    try:
        jars = ConnectJars()
        if cmd == "fetch":
            jars.fetch()
            log(f"Kafka Connect {jars.connect_version} jars in {jars.lib}; Debezium "
                f"{jars.debezium_version} in {jars.debezium_dir}")
        elif cmd == "classpath":
            print(jars.fetch().classpath())
        elif cmd == "plugin-path":
            print(jars.fetch().plugin_path)
        else:
            print(main.__doc__, file=sys.stderr)
            return 2
    except RuntimeError as e:
        log(f"ERROR: {e}")
        return 1
    return 0
