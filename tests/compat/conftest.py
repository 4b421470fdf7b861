"""Fixtures of the compatibility suite: the real Debezium PostgreSQL connector beside
walship, over one PostgreSQL cluster and one Kafka broker (see README.md).

- ``kafka``: one broker for the session (or ``$WALSHIP_KAFKA_BOOTSTRAP``'s);
- ``pg``: one throwaway cluster for the session (wal_level logical, walship preloaded);
- ``connect``: one Kafka Connect standalone worker with Debezium on its plugin path;
- ``compat_run``: every pair of scenarios.py streaming the one run of
  scripts/changes.sql, read back: ``{pair name: runner.PairRecords}``;
- ``report_dir``: where each test writes its full report and the records it compared
  (``$WALSHIP_COMPAT_REPORT_DIR``, else a new /tmp/walship-compat-* dir, kept).

If Kafka, PostgreSQL, Connect or Debezium cannot start, every test errors: the suite
fails, it never skips (a skipped test fails the run too).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))
sys.path.insert(0, str(HERE))

import walship_testlib as wt  # noqa: E402
from walship_testlib.connect import KafkaConnect  # noqa: E402

import runner  # noqa: E402
import scenarios  # noqa: E402

from walship_testlib import pytest_hooks  # noqa: E402
from walship_testlib.pytest_hooks import *  # noqa: E402,F401,F403 (timeouts, logs, no skips)

pytest_hooks.DEFAULT_TIMEOUT = int(os.environ.get("WALSHIP_COMPAT_TIMEOUT", "600"))


@pytest.fixture(scope="session")
def kafka():
    with wt.started(wt.KafkaBroker.from_env(start=False)) as broker:
        yield broker


@pytest.fixture(scope="session")
def pg():
    cluster = wt.PgCluster("compat")
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="session")
def connect(kafka):
    with wt.started(KafkaConnect(kafka.bootstrap, start=False)) as worker:
        yield worker


@pytest.fixture(scope="session")
def report_dir() -> Path:
    d = os.environ.get("WALSHIP_COMPAT_REPORT_DIR")
    path = Path(d) if d else Path(tempfile.mkdtemp(prefix="walship-compat-", dir="/tmp"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def compat_run(pg, kafka, connect, report_dir):
    records = runner.run_pairs(pg, kafka, connect, scenarios.PAIRS)
    runner.dump_records(records, report_dir)
    return records


