"""Fixtures for walship's integration tests (real PostgreSQL + real Kafka).

- ``kafka``: one Kafka broker for the whole session (the harness's ``KafkaBroker``), or the
  broker at ``$WALSHIP_KAFKA_BOOTSTRAP``. If it cannot start, every test that uses it
  errors: the suite fails, it never skips.
- ``pg``: a throwaway PostgreSQL cluster per test module, with walship preloaded.
  A module customizes it with ``PG_OPTIONS = {...}`` (keyword arguments of
  ``PgCluster``, e.g. ``{"settings": {"max_wal_senders": 4}}`` or
  ``{"shared_preload_libraries": ""}``).
- ``event_class``: the ``walship.v1.ChangeEvent`` message class.
- ``unique``: a short unique lowercase name for topics, tables, slots, streams.

Every test gets a 300 s timeout unless it has its own ``@pytest.mark.timeout``.
When a test fails, the tails of the PostgreSQL and Kafka logs are attached to its report.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import walship_testlib as wt  # noqa: E402
from walship_testlib.pytest_hooks import *  # noqa: E402,F401,F403 (timeouts, logs, no skips)


@pytest.fixture(scope="session")
def kafka():
    with wt.started(wt.KafkaBroker.from_env(start=False)) as broker:
        yield broker


@pytest.fixture(scope="module")
def pg(request):
    options = dict(getattr(request.module, "PG_OPTIONS", {}))
    options.setdefault("name", re.sub(r"[^a-z0-9]+", "_", request.module.__name__.split(".")[-1].lower())[:20])
    cluster = wt.PgCluster(**options)
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="session")
def event_class():
    return wt.load_event_class()


_counter = itertools.count(1)


@pytest.fixture
def unique(request) -> str:
    """e.g. ``t7_roundtrip_keys``: unique in the session, safe as a topic, table or slot name."""
    base = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
    base = re.sub(r"^test_", "", base)[:40]
    return f"t{next(_counter)}_{os.getpid() % 10000}_{base}".rstrip("_")


