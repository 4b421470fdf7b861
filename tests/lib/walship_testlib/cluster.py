"""Throwaway PostgreSQL clusters: ``initdb`` in a temp dir under /tmp on a free loopback
port, with logical decoding settings, ``shared_preload_libraries='walship'`` and the
output plugin allow-list when the server knows it; run as the ``postgres`` OS user when
this process is root. The regression runner, the integration tests, the benchmarks and
the demo all start their clusters here.

Environment: ``PG_CONFIG`` (which pg_config), ``WALSHIP_PG_BINDIR``, ``WALSHIP_KEEP_TMP=1``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from .common import Resource, free_port, keep_tmp, log, tail

DEFAULT_OUTPUT_PLUGINS = ("pgoutput", "test_decoding", "walship")


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


class PgCluster(Resource):
    """A throwaway PostgreSQL cluster: ``initdb`` in a temp dir, a free 127.0.0.1 port.

    >>> with PgCluster() as pg:
    ...     pg.execute("select 1")

    ``shared_preload_libraries`` defaults to ``'walship'`` (pass ``''`` for a cluster
    without it); ``settings`` adds or overrides postgresql.conf lines; ``output_plugins``
    is written to ``output_plugin_libraries`` only when the server has that setting;
    ``logical_decoding_work_mem=None`` leaves that setting at the server's default;
    ``extra_conf`` is appended to postgresql.conf as it is (raw lines).
    """

    def __init__(
        self,
        name: str = "walship",
        *,
        port: int | None = None,
        shared_preload_libraries: str | Sequence[str] = "walship",
        logical_decoding_work_mem: str | None = "64kB",
        output_plugins: Sequence[str] | None = DEFAULT_OUTPUT_PLUGINS,
        settings: Mapping[str, Any] | None = None,
        bindir: str | Path | None = None,
        base_dir: str | Path | None = None,
        keep: bool | None = None,
        start: bool = True,
        extra_conf: str = "",
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
        self.extra_conf = extra_conf
        self.keep = keep_tmp() if keep is None else keep
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
        self._register(start)

    def __repr__(self) -> str:
        return f"<PgCluster {self.name} port={self.port} dir={self.base_dir}>"

    def _started(self) -> bool:
        return self._running

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
        self._write_conf("cluster", self.settings())
        self._initialized = True

    def _write_conf(self, what: str, settings: Mapping[str, Any]) -> None:
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write(f"\n# --- walship test {what} (tests/lib/walship_testlib/cluster.py) ---\n")
            for key, value in settings.items():
                f.write(f"{key} = {_conf_value(value)}\n")
            if self.extra_conf:
                f.write(self.extra_conf.rstrip("\n") + "\n")

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
            standby._write_conf("standby", conf)
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
            "shared_preload_libraries": self.shared_preload_libraries,
            "timezone": "UTC",
            "log_timezone": "UTC",
            "lc_messages": "C",
            "fsync": False,  # throwaway cluster; crash tests kill processes, not the OS
            "log_line_prefix": "%m [%p] %q%a ",
            "log_min_messages": "info",
        }
        if self.logical_decoding_work_mem is not None:
            s["logical_decoding_work_mem"] = self.logical_decoding_work_mem
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
                f"----- {self.log_path} -----\n{tail(self.log_path)}")
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
            self._unregister()
            if self.keep:
                log(f"keeping {self.base_dir} (log {self.log_path})")
            else:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- debugging ------------------------------------------------------------------------
    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

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
