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

DEFAULT_TIMEOUT = int(os.environ.get("WALSHIP_COMPAT_TIMEOUT", "600"))


@pytest.fixture(scope="session")
def kafka():
    broker = wt.KafkaBroker.from_env(start=False)
    try:
        broker.start()
    except BaseException:
        broker.cleanup()
        raise
    yield broker
    broker.cleanup()


@pytest.fixture(scope="session")
def pg():
    cluster = wt.PgCluster("compat")
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="session")
def connect(kafka):
    worker = KafkaConnect(kafka.bootstrap, start=False)
    try:
        worker.start()
    except BaseException:
        worker.cleanup()
        raise
    yield worker
    worker.cleanup()


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


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when not in ("call", "setup") or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    for name in ("pg", "kafka", "connect"):
        obj = funcargs.get(name)
        if obj is None:
            continue
        try:
            report.sections.append((f"{name} log tail ({getattr(obj, 'log_path', '')})",
                                    obj.log_tail(60)))
        except Exception as e:  # never hide the real failure
            report.sections.append((f"{name} log tail", f"(unavailable: {e})"))


# A skipped test did not run: the suite must not pass as green with one.
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _skipped:
        terminalreporter.write_line(
            f"walship: {len(_skipped)} test(s) skipped; skipped tests fail this suite: "
            + ", ".join(_skipped), red=True)
