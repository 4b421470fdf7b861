"""pytest hooks every walship test suite shares (tests/integration, tests/compat): a
conftest imports them by name (``from walship_testlib.pytest_hooks import *``).

- every test gets ``WALSHIP_TEST_TIMEOUT`` seconds (300) unless it has its own
  ``@pytest.mark.timeout``;
- a failed test's report carries the log tails of the servers its fixtures started
  (fixtures named ``pg``, ``cluster``, ``kafka``, ``connect``);
- a skipped test did not run: it fails the suite (never green with one);
- ``figures``: a fixture that takes measured lines (the fault suite's committed /
  duplicates / lost), printed at the end of the run so that CI's output carries them.
"""

from __future__ import annotations

import os

import pytest

DEFAULT_TIMEOUT = int(os.environ.get("WALSHIP_TEST_TIMEOUT", "300"))
LOG_FIXTURES = ("pg", "cluster", "kafka", "connect")

_figures: list[str] = []
_skipped: list[str] = []


@pytest.fixture
def figures():
    return _figures.append


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
    for name in LOG_FIXTURES:
        obj = funcargs.get(name)
        if obj is None or not hasattr(obj, "log_tail"):
            continue
        try:
            report.sections.append((f"{name} log tail ({getattr(obj, 'log_path', '')})",
                                    obj.log_tail(80)))
        except Exception as e:  # never hide the real failure
            report.sections.append((f"{name} log tail", f"(unavailable: {e})"))


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _figures:
        terminalreporter.section("walship figures")
        for line in _figures:
            terminalreporter.write_line(line)
    if _skipped:
        terminalreporter.write_line(
            f"walship: {len(_skipped)} test(s) skipped; skipped tests fail this suite: "
            + ", ".join(_skipped), red=True)


__all__ = ["figures", "pytest_collection_modifyitems", "pytest_runtest_makereport",
           "pytest_runtest_logreport", "pytest_sessionfinish", "pytest_terminal_summary"]
