"""Reusable helpers for walship's integration tests, demo and benchmarks.

Everything here works the same from pytest and from a plain script:

    import sys; sys.path.insert(0, "tests/lib")
    from walship_testlib import PgCluster, KafkaBroker, consume_all, load_event_class

    with KafkaBroker() as kafka, PgCluster() as pg:
        pg.execute("CREATE EXTENSION walship")
        ...
        msgs = consume_all(kafka.bootstrap, ["demo.public.t"], expected_count=3)
        ChangeEvent = load_event_class()
        print(ChangeEvent.FromString(msgs[0].value))

- ``PgCluster``: a throwaway ``initdb`` in a temp dir under /tmp on a free port, with
  logical decoding settings, ``shared_preload_libraries='walship'`` and the output
  plugin allow-list when the server knows it. Runs as the ``postgres`` OS user when
  this process is root.
- ``KafkaBroker``: a real Apache Kafka broker (KRaft, one node) through
  ``tests/kafka/kafka.sh``; or, with ``WALSHIP_KAFKA_BOOTSTRAP`` set, a broker that
  already runs (e.g. one started by hand with ``kafka.sh start``).
- ``KafkaCluster``: a real 3-node (``n``) KRaft Kafka cluster through ``kafka.sh
  cluster-start``, for fault tests: ``kill(k)``/``stop(k)``/``start(k)``/``pause(k)`` a
  node, ``leader_of(topic, p)``, ``wait_isr(topic, n)``.
- ``consume_all``: read topics from the beginning without a consumer group.
- ``load_event_class``: the ``walship.v1.ChangeEvent`` class built at run time from a
  descriptor set (no generated ``_pb2`` module, so no protoc/runtime version coupling).
- ``java_murmur2`` / ``java_partition``: where a Java producer (and librdkafka's
  ``murmur2_random``) puts a key.

Environment knobs: ``PG_CONFIG`` (which pg_config), ``WALSHIP_PG_BINDIR``,
``WALSHIP_KEEP_TMP=1`` (keep temp dirs), ``WALSHIP_KAFKA_BOOTSTRAP`` (use a running
broker), ``WALSHIP_KAFKA_SH`` (another kafka.sh), ``WALSHIP_DESC`` (descriptor set).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = Path(os.environ.get("WALSHIP_KAFKA_SH", REPO_ROOT / "tests" / "kafka" / "kafka.sh"))
PROTO_ROOT = REPO_ROOT / "plugin" / "proto"
PROTO_FILE = "walship/v1/change_event.proto"
EVENT_MESSAGE = "walship.v1.ChangeEvent"
DEFAULT_OUTPUT_PLUGINS = ("pgoutput", "test_decoding", "walship")

__all__ = [
    "PgCluster",
    "KafkaBroker",
    "KafkaCluster",
    "KafkaMessage",
    "consume_all",
    "load_event_class",
    "find_descriptor_set",
    "decode_event",
    "event_to_dict",
    "format_lsn",
    "stream_status",
    "wait_caught_up",
    "java_murmur2",
    "java_partition",
    "free_port",
    "pg_config",
    "server_has_setting",
    "wait_for",
]


def _log(msg: str) -> None:
    print(f"walship_testlib: {msg}", file=sys.stderr, flush=True)


def _keep_tmp() -> bool:
    return os.environ.get("WALSHIP_KEEP_TMP", "") not in ("", "0", "false", "no")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate()`` until it returns a truthy value (returned) or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _tail(path: Path | str, lines: int = 60) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode("utf-8", errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(data.splitlines()[-lines:])


# Everything this process started, stopped at interpreter exit if still running.
_LIVE: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _on_sigterm(signum, frame):
    # `timeout`, CI runners and process managers stop with SIGTERM, which by default
    # ends Python without running finally blocks, fixture teardowns or atexit, leaving
    # servers running. Turn it into KeyboardInterrupt: pytest then tears down and exits.
    raise KeyboardInterrupt(f"signal {signum}")


def _install_sigterm_handler() -> None:
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


@atexit.register
def _stop_leftovers() -> None:
    for obj in list(_LIVE):
        try:
            obj._atexit()
        except Exception as e:  # pragma: no cover - best effort
            print(f"walship_testlib: atexit cleanup of {obj!r} failed: {e}", file=sys.stderr)


# --------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def pg_config(what: str) -> str:
    """``pg_config --<what>`` of the server under test (``$PG_CONFIG``, else pg_config on PATH)."""
    exe = os.environ.get("PG_CONFIG", "pg_config")
    try:
        out = subprocess.run([exe, f"--{what}"], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError(
            f"{exe} not found: install postgresql-server-dev-15 or set PG_CONFIG") from None
    return out.stdout.strip()


def _pg_bindir() -> Path:
    return Path(os.environ.get("WALSHIP_PG_BINDIR") or pg_config("bindir"))


@functools.lru_cache(maxsize=None)
def _described_settings(bindir: str) -> frozenset[str] | None:
    """Names of all settings the server binary knows (``postgres --describe-config``)."""
    try:
        out = subprocess.run([str(Path(bindir) / "postgres"), "--describe-config"],
                             check=True, capture_output=True, text=True, timeout=60,
                             **_as_postgres_kwargs())
    except (OSError, subprocess.SubprocessError):
        return None
    return frozenset(line.split("\t", 1)[0] for line in out.stdout.splitlines() if line)


def server_has_setting(name: str, bindir: str | Path | None = None) -> bool | None:
    """True/False if the server binary knows setting ``name``; None if it could not tell."""
    names = _described_settings(str(bindir or _pg_bindir()))
    return None if names is None else name in names


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _as_postgres_kwargs() -> dict:
    """subprocess keyword arguments that run a command as the 'postgres' OS user when we
    are root (PostgreSQL refuses to run as root), nothing otherwise."""
    if not _running_as_root():
        return {}
    import pwd

    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root but there is no 'postgres' OS user "
                           "(install postgresql-15 or run as a normal user)") from None
    env = dict(os.environ, HOME=pw.pw_dir, USER="postgres", LOGNAME="postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": env}


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


class PgCluster:
    """A throwaway PostgreSQL cluster: ``initdb`` in a temp dir, a free 127.0.0.1 port.

    >>> with PgCluster() as pg:
    ...     pg.execute("select 1")

    ``shared_preload_libraries`` defaults to ``'walship'`` (pass ``''`` for a cluster
    without it); ``settings`` adds or overrides postgresql.conf lines; ``output_plugins``
    is written to ``output_plugin_libraries`` only when the server has that setting.
    """

    def __init__(
        self,
        name: str = "walship",
        *,
        port: int | None = None,
        shared_preload_libraries: str | Sequence[str] = "walship",
        logical_decoding_work_mem: str = "64kB",
        output_plugins: Sequence[str] | None = DEFAULT_OUTPUT_PLUGINS,
        settings: Mapping[str, Any] | None = None,
        bindir: str | Path | None = None,
        base_dir: str | Path | None = None,
        keep: bool | None = None,
        start: bool = True,
    ):
        self.name = name
        self.bindir = Path(bindir) if bindir else _pg_bindir()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"
        if not isinstance(shared_preload_libraries, str):
            shared_preload_libraries = ", ".join(shared_preload_libraries)
        self.shared_preload_libraries = shared_preload_libraries
        self.logical_decoding_work_mem = logical_decoding_work_mem
        self.output_plugins = tuple(output_plugins) if output_plugins else ()
        self.extra_settings = dict(settings or {})
        self.keep = _keep_tmp() if keep is None else keep
        self.base_dir = Path(tempfile.mkdtemp(prefix=f"walship-pg-{name}-",
                                              dir=str(base_dir) if base_dir else "/tmp"))
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "postgres.log"
        self.socket_dir = self.base_dir
        self.has_output_plugin_libraries: bool | None = None
        self._running = False
        self._initialized = False
        if _running_as_root():
            pw = _as_postgres_kwargs()
            os.chown(self.base_dir, pw["user"], pw["group"])
        _LIVE.add(self)
        _install_sigterm_handler()
        if start:
            try:
                self.init()
                self.start()
            except BaseException:
                self.cleanup()
                raise

    def __repr__(self) -> str:
        return f"<PgCluster {self.name} port={self.port} dir={self.base_dir}>"

    # -- context manager -----------------------------------------------------------
    def __enter__(self) -> "PgCluster":
        if not self._initialized:
            self.init()
        if not self._running:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- running commands --------------------------------------------------------------
    def _run(self, args: Sequence[str], *, check: bool = True, timeout: float = 120,
             input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                              timeout=timeout, check=check, input=input,
                              cwd=str(self.base_dir), **_as_postgres_kwargs())

    def bin(self, program: str) -> str:
        return str(self.bindir / program)

    # -- life cycle --------------------------------------------------------------------
    def init(self) -> None:
        """initdb and write the configuration."""
        if self._initialized:
            return
        self._check_preload_installed()
        try:
            self._run([self.bin("initdb"), "-D", self.data_dir, "-U", self.user,
                       "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"initdb failed for {self}:\n{e.stdout}\n{e.stderr}") from None
        self.has_output_plugin_libraries = self._probe_output_plugin_libraries()
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write("\n# --- walship test cluster (tests/lib/walship_testlib.py) ---\n")
            for key, value in self.settings().items():
                f.write(f"{key} = {_conf_value(value)}\n")
        self._initialized = True

    @classmethod
    def standby_of(cls, primary: "PgCluster", slot: str, name: str = "standby",
                   settings: Mapping[str, Any] | None = None, **kwargs) -> "PgCluster":
        """A physical standby of ``primary``: pg_basebackup over the physical slot ``slot``
        (which must exist), streaming from it (``primary_conninfo`` names a database, as
        slot synchronization needs), started. ``settings`` adds postgresql.conf lines."""
        standby = cls(name, start=False, settings=settings, **kwargs)
        try:
            standby._check_preload_installed()
            standby._run([standby.bin("pg_basebackup"), "-D", standby.data_dir,
                          "-h", str(primary.socket_dir), "-p", str(primary.port),
                          "-U", primary.user, "-X", "stream", "-S", slot, "--no-sync"],
                         timeout=300)
            standby.has_output_plugin_libraries = primary.has_output_plugin_libraries
            conf = standby.settings()
            conf["primary_conninfo"] = (f"host={primary.socket_dir} port={primary.port} "
                                        f"user={primary.user} dbname=postgres")
            conf["primary_slot_name"] = slot
            conf["hot_standby"] = True
            with open(standby.data_dir / "postgresql.conf", "a") as f:
                f.write("\n# --- walship test standby (tests/lib/walship_testlib.py) ---\n")
                for key, value in conf.items():
                    f.write(f"{key} = {_conf_value(value)}\n")
            (standby.data_dir / "standby.signal").touch()
            if _running_as_root():
                pw = _as_postgres_kwargs()
                os.chown(standby.data_dir / "standby.signal", pw["user"], pw["group"])
            standby._initialized = True
            standby.start()
        except BaseException:
            standby.cleanup()
            raise
        return standby

    def promote(self, timeout: float = 60) -> None:
        """pg_ctl promote: the standby becomes a primary (waits until it accepts writes)."""
        self._run([self.bin("pg_ctl"), "-D", self.data_dir, "-w", "-t", str(int(timeout)),
                   "promote"], timeout=timeout + 30)

    def settings(self) -> dict[str, Any]:
        """The postgresql.conf lines this cluster writes."""
        s: dict[str, Any] = {
            "listen_addresses": self.host,
            "port": self.port,
            "unix_socket_directories": str(self.socket_dir),
            "wal_level": "logical",
            "max_replication_slots": 20,
            "max_wal_senders": 20,
            "max_worker_processes": 32,
            "logical_decoding_work_mem": self.logical_decoding_work_mem,
            "shared_preload_libraries": self.shared_preload_libraries,
            "timezone": "UTC",
            "log_timezone": "UTC",
            "lc_messages": "C",
            "fsync": False,  # throwaway cluster; crash tests kill processes, not the OS
            "log_line_prefix": "%m [%p] %q%a ",
            "log_min_messages": "info",
        }
        if self.output_plugins and self.has_output_plugin_libraries:
            s["output_plugin_libraries"] = ", ".join(self.output_plugins)
        s.update(self.extra_settings)
        return s

    def _probe_output_plugin_libraries(self) -> bool:
        known = server_has_setting("output_plugin_libraries", self.bindir)
        if known is not None:
            return known
        # Fallback: ask the server binary about the setting against the new data dir;
        # it fails on an unknown setting.
        r = self._run([self.bin("postgres"), "-C", "output_plugin_libraries",
                       "-D", self.data_dir], check=False)
        return r.returncode == 0

    def _check_preload_installed(self) -> None:
        libs = [x.strip() for x in self.shared_preload_libraries.split(",") if x.strip()]
        if "walship" in libs:
            so = Path(pg_config("pkglibdir")) / "walship.so"
            if not so.exists():
                raise RuntimeError(
                    f"shared_preload_libraries='walship' but {so} is not installed: "
                    "build and install walship first (cmake -S . -B build && "
                    "cmake --build build && cmake --install build), or pass "
                    "shared_preload_libraries='' for a cluster without it")

    def start(self, timeout: float = 60) -> None:
        if not self._initialized:
            self.init()
        if self._running:
            return
        with open(self.log_path, "a") as f:
            f.write(f"===== walship_testlib: start {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        if _running_as_root():
            pw = _as_postgres_kwargs()
            os.chown(self.log_path, pw["user"], pw["group"])
        r = self._run([self.bin("pg_ctl"), "-D", self.data_dir, "-l", self.log_path,
                       "-w", "-t", str(int(timeout)), "start"], check=False, timeout=timeout + 30)
        if r.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL did not start ({self}):\n{r.stdout}{r.stderr}\n"
                f"----- {self.log_path} -----\n{_tail(self.log_path)}")
        self._running = True

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server: mode 'smart', 'fast' or 'immediate' (a crash: no checkpoint)."""
        if not self._running:
            return
        r = self._run([self.bin("pg_ctl"), "-D", self.data_dir, "-m", mode, "-w",
                       "-t", str(int(timeout)), "stop"], check=False, timeout=timeout + 30)
        if r.returncode != 0 and self.pid is not None:
            raise RuntimeError(f"pg_ctl stop -m {mode} failed ({self}):\n{r.stdout}{r.stderr}")
        self._running = False

    def restart(self, mode: str = "fast") -> None:
        """Stop (``mode`` 'fast' or 'immediate') and start again on the same port."""
        self.stop(mode)
        self.start()

    def crash(self) -> None:
        """An immediate stop: every backend is killed, recovery runs on the next start."""
        self.stop("immediate")

    def reload(self) -> None:
        self._run([self.bin("pg_ctl"), "-D", self.data_dir, "reload"])

    @property
    def running(self) -> bool:
        return self._running

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, or None when it does not run."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def cleanup(self) -> None:
        """Stop the server if it runs (immediate) and remove the temp dir (unless keep)."""
        try:
            if self._running:
                self.stop("immediate")
        finally:
            _LIVE.discard(self)
            if self.keep:
                _log(f"keeping {self.base_dir} (log {self.log_path})")
            else:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def _atexit(self) -> None:
        self.cleanup()

    # -- debugging ------------------------------------------------------------------------
    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- SQL -----------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def connect(self, dbname: str = "postgres", autocommit: bool = True, **kwargs):
        """A psycopg 3 connection (autocommit by default)."""
        import psycopg

        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(host=self.host, port=self.port, user=self.user,
                               dbname=dbname, autocommit=autocommit, **kwargs)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None,
                dbname: str = "postgres") -> list[tuple]:
        """Run one statement in its own autocommit connection; return its rows (or [])."""
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []

    def scalar(self, sql: str, params=None, dbname: str = "postgres") -> Any:
        rows = self.execute(sql, params, dbname)
        return rows[0][0] if rows else None

    def psql(self, sql: str, dbname: str = "postgres", check: bool = True) -> str:
        """Run SQL through psql (-X, ON_ERROR_STOP); return its stdout."""
        r = self._run([self.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                       "-p", str(self.port), "-U", self.user, "-d", dbname, "-f", "-"],
                      input=sql, check=False)
        if check and r.returncode != 0:
            raise RuntimeError(f"psql failed ({r.returncode}):\n{r.stderr}")
        return r.stdout

    def createdb(self, dbname: str) -> None:
        from psycopg import sql as _sql

        with self.connect() as conn:
            conn.execute(_sql.SQL("CREATE DATABASE {}").format(_sql.Identifier(dbname)))


# --------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------


class KafkaBroker:
    """A real single-node Kafka broker from ``tests/kafka/kafka.sh``.

    ``KafkaBroker()`` starts one in a new temp dir (``start=False`` to delay);
    ``KafkaBroker(bootstrap="127.0.0.1:9092")`` (or ``WALSHIP_KAFKA_BOOTSTRAP``) wraps
    a broker that already runs and never stops it. ``stop()``/``start()`` keep the dir,
    so a restarted broker has the same port and data; ``kill()`` is a crash.
    """

    def __init__(self, workdir: str | Path | None = None, *, bootstrap: str | None = None,
                 start: bool = True, keep: bool | None = None,
                 env: Mapping[str, str] | None = None, start_timeout: float = 90):
        self.external = bootstrap is not None
        self._bootstrap = bootstrap
        self.keep = _keep_tmp() if keep is None else keep
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self._own_dir = workdir is None and not self.external
        # the temp dir is made by start(): an object that never starts leaves nothing behind
        self.workdir: Path | None = Path(workdir) if workdir else None
        self._running = False
        _LIVE.add(self)
        _install_sigterm_handler()
        if start:
            try:
                self.start()
            except BaseException:
                self.cleanup()
                raise

    @classmethod
    def from_env(cls, **kwargs) -> "KafkaBroker":
        """A broker from ``WALSHIP_KAFKA_BOOTSTRAP`` if set, else a new one."""
        bootstrap = os.environ.get("WALSHIP_KAFKA_BOOTSTRAP")
        return cls(bootstrap=bootstrap, **kwargs) if bootstrap else cls(**kwargs)

    def __repr__(self) -> str:
        return f"<KafkaBroker {self._bootstrap or '?'} dir={self.workdir}>"

    def __enter__(self) -> "KafkaBroker":
        if not self._running:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def _sh(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        env = dict(os.environ, WALSHIP_KAFKA_START_TIMEOUT=str(int(self.start_timeout)))
        env.update(self.env)
        return subprocess.run(["bash", str(KAFKA_SH), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL)

    @property
    def bootstrap(self) -> str:
        if not self._bootstrap:
            raise RuntimeError(f"{self!r} has not started")
        return self._bootstrap

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
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="walship-kafka-", dir="/tmp"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        # The first run resolves jars with Maven: allow for that on top of the broker's
        # own start timeout (which kafka.sh enforces).
        try:
            r = self._sh("start", str(self.workdir), timeout=self.start_timeout + 900)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"kafka.sh start timed out: {e}") from None
        if r.returncode != 0:
            self.keep = True  # leave the broker's dir and log for a post-mortem
            raise RuntimeError(
                f"Kafka broker did not start (kafka.sh start {self.workdir} exited "
                f"{r.returncode}; its dir is kept):\n{r.stderr}\n{r.stdout}")
        self._bootstrap = r.stdout.strip().splitlines()[-1]
        self._running = True
        for line in r.stderr.splitlines():
            _log(line)
        _log(f"Kafka on {self._bootstrap} after {time.monotonic() - t0:.1f}s")
        return self._bootstrap

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after 30 s). The dir and data stay."""
        if self.external or not self._running:
            return
        r = self._sh("stop", str(self.workdir), timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"kafka.sh stop failed:\n{r.stderr}")
        self._running = False

    def kill(self) -> None:
        """SIGKILL the broker (a crash). ``start()`` brings it back on the same port."""
        if self.external:
            raise RuntimeError("cannot kill an external broker")
        if not self._running:
            return
        r = self._sh("kill", str(self.workdir), timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"kafka.sh kill failed:\n{r.stderr}")
        self._running = False

    def restart(self) -> str:
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        try:
            if self._running and not self.external:
                self.stop()
        finally:
            self._running = False
            _LIVE.discard(self)
            if self.workdir and self._own_dir:
                if self.keep:
                    _log(f"keeping {self.workdir} (log {self.log_path})")
                else:
                    shutil.rmtree(self.workdir, ignore_errors=True)
                    self.workdir = None

    def _atexit(self) -> None:
        if self._running and not self.external and self.workdir:
            # quick: no graceful shutdown at interpreter exit
            subprocess.run(["bash", str(KAFKA_SH), "kill", str(self.workdir)],
                           capture_output=True, timeout=60)
            self._running = False
        self.cleanup()

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines) if self.log_path else "(external broker: no log)"

    # -- clients ---------------------------------------------------------------------------
    def admin(self, **conf):
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap, **conf})

    def producer(self, **conf):
        from confluent_kafka import Producer

        return Producer({"bootstrap.servers": self.bootstrap, **conf})

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
        fs = self.admin().delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
        for f in fs.values():
            f.result(timeout=timeout)


class KafkaCluster:
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

    def __init__(self, n: int = 3, workdir: str | Path | None = None, *, start: bool = True,
                 keep: bool | None = None, env: Mapping[str, str] | None = None,
                 start_timeout: float = 90):
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self.n = n
        self.keep = _keep_tmp() if keep is None else keep
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self._own_dir = workdir is None
        # the temp dir is made by start(): an object that never starts leaves nothing behind
        self.workdir: Path | None = Path(workdir) if workdir else None
        self._bootstrap: str | None = None
        self._started = False
        self._paused: set[int] = set()
        _LIVE.add(self)
        _install_sigterm_handler()
        if start:
            try:
                self.start()
            except BaseException:
                self.cleanup()
                raise

    def __repr__(self) -> str:
        return f"<KafkaCluster n={self.n} {self._bootstrap or '?'} dir={self.workdir}>"

    def __enter__(self) -> "KafkaCluster":
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def _env(self) -> dict:
        env = dict(os.environ, WALSHIP_KAFKA_START_TIMEOUT=str(int(self.start_timeout)))
        env.update(self.env)
        return env

    def _sh(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(KAFKA_SH), *args], capture_output=True, text=True,
                              timeout=timeout, env=self._env(), stdin=subprocess.DEVNULL)

    def _sh_nodes(self, command: str, nodes: Sequence[int], timeout: float) -> None:
        """``kafka.sh <command> <dir>/nodeK`` for every node at once; raises if one fails."""
        procs = [(k, subprocess.Popen(["bash", str(KAFKA_SH), command, str(self.node_dir(k))],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=self._env(), stdin=subprocess.DEVNULL))
                 for k in nodes]
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
                _log(f"node{k}: {line}")
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

    # -- state ---------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """Every node's address, ``127.0.0.1:P1,127.0.0.1:P2,...`` (down nodes too)."""
        if not self._bootstrap:
            raise RuntimeError(f"{self!r} has not started")
        return self._bootstrap

    @property
    def nodes(self) -> list[int]:
        return list(range(1, self.n + 1))

    def node_dir(self, k: int) -> Path:
        if self.workdir is None:
            raise RuntimeError(f"{self!r} has not started")
        return self.workdir / f"node{self._nodes([k])[0]}"

    def node_bootstrap(self, k: int) -> str:
        """Node k's own address (127.0.0.1:PORT), whether it runs or not."""
        for line in (self.node_dir(k) / "server.properties").read_text().splitlines():
            if line.startswith("listeners=PLAINTEXT://"):
                return line.split("//", 1)[1].split(",", 1)[0]
        raise RuntimeError(f"no PLAINTEXT listener in {self.node_dir(k)}/server.properties")

    def node_pid(self, k: int) -> int | None:
        """The pid of node k's JVM if it runs (paused counts as running), else None."""
        d = self.node_dir(k)
        try:
            pid = int((d / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return None
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f"kafka.Kafka\0{d.resolve()}/server.properties".encode() not in f.read():
                    return None  # a recycled pid
        except (OSError, IndexError):
            return None
        return pid

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
        return "\n".join(f"----- node{j}: {self.log_path(j)} -----\n{_tail(self.log_path(j), lines)}"
                         for j in ([k] if k is not None else self.nodes))

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, *nodes: int) -> str:
        """Start the nodes (all at once) that do not run: by default every node, the
        first time in a new dir; returns the bootstrap list. A node that was stopped or
        killed comes back on its ports and data; it is ready when it serves metadata."""
        nodes = self._nodes(nodes)
        if not nodes or not self._started:
            if self.workdir is None:
                self.workdir = Path(tempfile.mkdtemp(prefix="walship-kafka-cluster-", dir="/tmp"))
            self.workdir.mkdir(parents=True, exist_ok=True)
            t0 = time.monotonic()
            # The first run resolves jars with Maven: allow for that on top of the nodes'
            # own start timeout (which kafka.sh enforces).
            try:
                r = self._sh("cluster-start", str(self.workdir), str(self.n),
                             timeout=2 * self.start_timeout + 900)
            except subprocess.TimeoutExpired as e:
                raise RuntimeError(f"kafka.sh cluster-start timed out: {e}") from None
            if r.returncode != 0:
                self.keep = True
                raise RuntimeError(
                    f"Kafka cluster did not start (kafka.sh cluster-start {self.workdir} exited "
                    f"{r.returncode}; its dir is kept):\n{r.stderr}\n{r.stdout}")
            self._bootstrap = r.stdout.strip().splitlines()[-1]
            self._started = True
            self._paused.clear()
            for line in r.stderr.splitlines():
                _log(line)
            _log(f"Kafka cluster on {self._bootstrap} after {time.monotonic() - t0:.1f}s")
            if not nodes:
                return self._bootstrap
        todo = [k for k in nodes if not self.is_running(k)]
        if todo:
            t0 = time.monotonic()
            self._sh_nodes("start", todo, timeout=self.start_timeout + 60)
            _log(f"node(s) {todo} up after {time.monotonic() - t0:.1f}s")
        return self.bootstrap

    def _stop(self, how: str, nodes: Sequence[int]) -> None:
        if not self._started:
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
            if self._started and self.running_nodes:
                keeping = self.keep or not self._own_dir
                if keeping and 2 * len(self.running_nodes) > self.n:
                    self.stop()
                else:
                    self.kill()
        finally:
            self._started = False
            _LIVE.discard(self)
            if self.workdir and self._own_dir:
                if self.keep:
                    _log(f"keeping {self.workdir} (logs {self.workdir}/node*/kafka.log)")
                else:
                    shutil.rmtree(self.workdir, ignore_errors=True)
                    self.workdir = None

    close = cleanup

    def _atexit(self) -> None:
        if self._started and self.workdir:
            # quick: no graceful shutdown at interpreter exit
            for k in list(self._paused):
                self.resume(k)
            subprocess.run(["bash", str(KAFKA_SH), "cluster-kill", str(self.workdir)],
                           capture_output=True, timeout=60)
            self._started = False
        self.cleanup()

    # -- clients and metadata --------------------------------------------------------------
    def admin(self, **conf):
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap, **conf})

    def producer(self, **conf):
        from confluent_kafka import Producer

        return Producer({"bootstrap.servers": self.bootstrap, **conf})

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


@dataclasses.dataclass
class KafkaMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int | None

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (None if absent)."""
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        return found

    @property
    def headers_dict(self) -> dict[str, bytes | None]:
        return dict(self.headers)


def consume_all(bootstrap: str, topics: str | Iterable[str], expected_count: int | None = None,
                timeout: float = 30.0, *, linger: float = 0.0,
                isolation_level: str = "read_committed", exact: bool = False,
                on_message=None, **conf) -> list[KafkaMessage]:
    """Read ``topics`` from the beginning (no consumer group, every partition assigned).

    Waits for topics that do not exist yet. With ``expected_count``, returns as soon as
    that many messages arrived (then keeps reading ``linger`` seconds to catch extras)
    and raises ``AssertionError`` if fewer came within ``timeout`` — or, with
    ``exact=True``, if more came. Without it, reads until every partition of every
    topic is at its end (and the topics exist), or ``timeout``.

    Messages come in arrival order: per partition in offset order. ``on_message`` is
    called with each message as it arrives (the demo prints them).
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition, OFFSET_BEGINNING

    if isinstance(topics, str):
        topics = [topics]
    topics = list(topics)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"walship-test-{os.getpid()}-{time.monotonic_ns()}",  # required, unused
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation_level,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
        **conf,
    })
    out: list[KafkaMessage] = []
    assigned: set[tuple[str, int]] = set()
    at_eof: set[tuple[str, int]] = set()
    deadline = time.monotonic() + timeout
    next_metadata = 0.0
    linger_until: float | None = None
    try:
        while True:
            now = time.monotonic()
            missing_topics = [t for t in topics if not any(a[0] == t for a in assigned)]
            if now >= next_metadata and (missing_topics or expected_count is not None):
                md = consumer.list_topics(timeout=5)
                new = []
                for t in topics:
                    tm = md.topics.get(t)
                    if tm is None or tm.error is not None:
                        continue
                    for p in tm.partitions:
                        if (t, p) not in assigned:
                            assigned.add((t, p))
                            new.append(TopicPartition(t, p, OFFSET_BEGINNING))
                if new:
                    consumer.incremental_assign(new)
                next_metadata = now + 1.0
            if expected_count is not None:
                if len(out) >= expected_count:
                    if linger_until is None:
                        linger_until = now + linger
                    if now >= linger_until:
                        break
                elif now >= deadline:
                    break
            else:
                if not missing_topics and assigned and at_eof >= assigned:
                    break
                if now >= deadline:
                    break
            if not assigned:
                time.sleep(0.1)
                continue
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add((msg.topic(), msg.partition()))
                    continue
                if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART,
                                  KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC):
                    continue
                raise RuntimeError(f"consume error: {err}")
            at_eof.discard((msg.topic(), msg.partition()))
            ts_type, ts = msg.timestamp()
            out.append(KafkaMessage(
                topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                key=msg.key(), value=msg.value(),
                headers=[(k, v) for k, v in (msg.headers() or [])],
                timestamp_ms=ts if ts_type else None))
            if on_message is not None:
                on_message(out[-1])
    finally:
        consumer.close()
    if expected_count is not None:
        if len(out) < expected_count:
            raise AssertionError(
                f"consume_all: got {len(out)} of {expected_count} messages from {topics} "
                f"within {timeout:.0f}s (partitions seen: {sorted(assigned)})")
        if exact and len(out) > expected_count:
            raise AssertionError(
                f"consume_all: expected exactly {expected_count} messages from {topics}, "
                f"got {len(out)}")
    return out


# --------------------------------------------------------------------------------------
# Partitioning (Java clients / librdkafka murmur2_random)
# --------------------------------------------------------------------------------------


def _i32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - 0x100000000 if x & 0x80000000 else x


def java_murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (a signed 32-bit int, exactly as Java computes it)."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        j = i * 4
        k = data[j] | (data[j + 1] << 8) | (data[j + 2] << 16) | (data[j + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest >= 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return _i32(h)


def java_partition(key: bytes, num_partitions: int) -> int:
    """The partition of a keyed record in Java's producer: toPositive(murmur2(key)) % n.
    librdkafka's ``murmur2``/``murmur2_random`` partitioners choose the same."""
    return (java_murmur2(key) & 0x7FFFFFFF) % num_partitions


# --------------------------------------------------------------------------------------
# Event schema
# --------------------------------------------------------------------------------------


def find_descriptor_set() -> Path | None:
    """Where the walship descriptor set is: ``$WALSHIP_DESC``, the installed one
    (``$(pg_config --sharedir)/walship/walship.desc``, what the server under test
    uses), else the newest ``build*/walship.desc`` of this checkout."""
    env = os.environ.get("WALSHIP_DESC")
    if env:
        return Path(env)
    try:
        installed = Path(pg_config("sharedir")) / "walship" / "walship.desc"
        if installed.is_file():
            return installed
    except RuntimeError:
        pass
    built = sorted((p for p in REPO_ROOT.glob("build*/walship.desc") if p.is_file()),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    return built[0] if built else None


def _compile_descriptor_set() -> Path:
    protoc = shutil.which("protoc")
    if not protoc:
        raise FileNotFoundError(
            "no walship.desc (set WALSHIP_DESC, install walship, or build it) and no protoc "
            f"to compile {PROTO_ROOT / PROTO_FILE}")
    out = Path(tempfile.mkdtemp(prefix="walship-desc-")) / "walship.desc"
    subprocess.run([protoc, f"--proto_path={PROTO_ROOT}", "--include_imports",
                    f"--descriptor_set_out={out}", PROTO_FILE], check=True)
    return out


@functools.lru_cache(maxsize=None)
def _load_class(path: str, mtime: float, message: str):
    from google.protobuf import descriptor_pb2, descriptor_pool

    fds = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    desc = pool.FindMessageTypeByName(message)
    try:
        from google.protobuf.message_factory import GetMessageClass
    except ImportError:  # protobuf < 4.22
        from google.protobuf import message_factory

        return message_factory.MessageFactory(pool).GetPrototype(desc)
    return GetMessageClass(desc)


def load_event_class(descriptor_set_path: str | Path | None = None,
                     message: str = EVENT_MESSAGE):
    """The ``walship.v1.ChangeEvent`` message class, built at run time from a descriptor
    set (``find_descriptor_set()`` if no path is given; if none exists, compiled from
    plugin/proto with protoc)."""
    path = Path(descriptor_set_path) if descriptor_set_path else find_descriptor_set()
    if path is None:
        path = _compile_descriptor_set()
    if not path.is_file():
        raise FileNotFoundError(f"descriptor set {path} does not exist")
    return _load_class(str(path.resolve()), path.stat().st_mtime, message)


def stream_status(pg: "PgCluster", name: str, conn=None) -> dict | None:
    """The stream's row of walship.stream_status as a dict; None when there is none.
    Pass ``conn`` when polling fast: a new connection per call forks a backend."""
    if conn is None:
        with pg.connect() as conn:
            return stream_status(pg, name, conn)
    cur = conn.execute("SELECT * FROM walship.stream_status WHERE name = %s", [name])
    row = cur.fetchone()
    return None if row is None else dict(zip([c.name for c in cur.description], row))


def wait_caught_up(pg: "PgCluster", name: str, timeout: float = 120) -> None:
    """Everything committed so far is confirmed by the stream: Kafka acknowledged it."""
    target = pg.scalar("SELECT pg_current_wal_lsn()")

    def done():
        s = stream_status(pg, name) or {}
        return (s.get("state") == "running" and s["in_flight"] == 0
                and s["confirmed_flush_lsn"] is not None
                and pg.scalar("SELECT %s::pg_lsn <= %s::pg_lsn",
                              [target, s["confirmed_flush_lsn"]]))

    wait_for(done, timeout, 0.1, f"stream {name} to confirm {target}")


def format_lsn(lsn: int) -> str:
    """An LSN as PostgreSQL prints it: 0/16B3748."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def decode_event(data: bytes, event_class=None):
    """Parse one protobuf event (a Kafka message value)."""
    cls = event_class or load_event_class()
    return cls.FromString(data)


def event_to_dict(event) -> dict:
    """A ChangeEvent as a plain dict (proto field names, enums as names, 64-bit ints as
    ints, unset fields omitted)."""
    from google.protobuf import json_format

    d = json_format.MessageToDict(event, preserving_proto_field_name=True)
    return _ints(d, event.DESCRIPTOR)


def _ints(d: Any, desc) -> Any:
    # MessageToDict renders 64-bit integers as strings (JSON); turn them back into ints.
    from google.protobuf.descriptor import FieldDescriptor as F

    int64 = {F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64}
    if not isinstance(d, dict):
        return d
    for f in desc.fields:
        if f.name not in d:
            continue
        v = d[f.name]
        if f.type == F.TYPE_MESSAGE:
            d[f.name] = [_ints(x, f.message_type) for x in v] if isinstance(v, list) \
                else _ints(v, f.message_type)
        elif f.type in int64:
            d[f.name] = [int(x) for x in v] if isinstance(v, list) else int(v)
    return d
