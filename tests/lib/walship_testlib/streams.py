"""walship's streams as the tests watch them: ``walship.stream_status``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .common import wait_for

if TYPE_CHECKING:
    from .cluster import PgCluster


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
