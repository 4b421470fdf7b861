"""What every part of the harness shares: free loopback ports, polling, log tails, and
the registry of servers this process started (stopped at exit and on SIGTERM)."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import sys
import time
import weakref
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
LIB_DIR = REPO_ROOT / "tests" / "lib"


def log(msg: str) -> None:
    print(f"walship_testlib: {msg}", file=sys.stderr, flush=True)


def keep_tmp() -> bool:
    """``WALSHIP_KEEP_TMP=1``: keep the temp dirs of clusters and brokers."""
    return os.environ.get("WALSHIP_KEEP_TMP", "") not in ("", "0", "false", "no")


def free_ports(n: int, host: str = "127.0.0.1", first: int = 0) -> list[int]:
    """``n`` distinct TCP ports that were free a moment ago on ``host`` (all bound at
    once, so no two are the same); ``first`` asks for that port as the first one."""
    socks = []
    try:
        for want in [first] + [0] * (n - 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, want))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    return free_ports(1, host)[0]


@contextlib.contextmanager
def started(resource):
    """``resource.start()``, then yield it; ``cleanup()`` always, also when it fails to
    start (a fixture that yields from this fails loudly, never skips)."""
    try:
        resource.start()
        yield resource
    finally:
        resource.cleanup()


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


def tail(path: Path | str, lines: int = 60) -> str:
    """The last ``lines`` lines of a (log) file."""
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


class Resource:
    """A server this process starts (a PostgreSQL cluster, a broker, a Kafka cluster):
    a context manager, stopped at interpreter exit and on SIGTERM if still running.

    Subclasses define ``start()``, ``cleanup()`` and ``_started()``; ``_register``
    at the end of their ``__init__`` starts them (cleaning up when that fails)."""

    def _register(self, start: bool) -> None:
        _LIVE.add(self)
        _install_sigterm_handler()
        if start:
            try:
                self.start()
            except BaseException:
                self.cleanup()
                raise

    def _unregister(self) -> None:
        _LIVE.discard(self)

    def _started(self) -> bool:
        raise NotImplementedError

    def start(self):
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        if not self._started():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def _atexit(self) -> None:
        self.cleanup()
