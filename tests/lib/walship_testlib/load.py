"""A load of database transactions at a steady rate, in a thread of its own, that lives
through crashes of the server: the part the fault suite's and the snapshot tests' loads
share. A subclass says what one transaction is (``_transaction``)."""

from __future__ import annotations

import threading
import time


class PacedLoad:
    """Commits ``_transaction(conn)`` about ``rate`` times a second until stop().

    A transaction that fails (a crash, a shutdown) is counted in ``failures`` and the
    connection is made again: whether it committed, the database will say. A load that
    falls behind (a pause) does not burst to catch up. ``started`` and ``stopped`` are
    the monotonic times of start() and stop(); an error of the thread is raised by
    stop()."""

    def __init__(self, pg, rate: float, name: str, what: str):
        self.pg = pg
        self.rate = rate
        self.what = what  # "the load generator": for stop()'s errors
        self.commits = 0
        self.failures = 0
        self.started = 0.0
        self.stopped = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)
        self.stopped = time.monotonic()
        if self._thread.is_alive():
            raise AssertionError(f"{self.what} did not stop")
        if self.error is not None:
            raise AssertionError(f"{self.what} failed: {self.error!r}")

    def _transaction(self, conn) -> None:
        raise NotImplementedError

    def _connect(self):
        while not self._stop.is_set():
            try:
                return self.pg.connect()
            except Exception:
                time.sleep(0.2)  # the server is restarting
        return None

    def _run(self) -> None:
        try:
            conn = self._connect()
            begin = time.monotonic()
            done = 0
            while conn is not None and not self._stop.is_set():
                try:
                    self._transaction(conn)
                    self.commits += 1
                except Exception:
                    self.failures += 1
                    try:
                        conn.close()
                    except Exception:
                        pass
                    time.sleep(0.2)
                    conn = self._connect()
                    continue
                done += 1
                delay = begin + done / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -2:
                    begin, done = time.monotonic(), 0
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
        except BaseException as exc:  # reported by stop()
            self.error = exc
