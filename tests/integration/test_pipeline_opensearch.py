"""The OpenSearch pipeline (pipelines/opensearch): PostgreSQL → walship → Kafka → the sink
(walship_opensearch.Sink, a Kafka consumer) → one OpenSearch 2.19.6 node, in both formats.

After the stream's snapshot and after each of two workload rounds, every document of the
indexes must equal PostgreSQL's row, column by column: numerics exact, doubles (NaN,
infinities, -0), timestamps to the microsecond, bytea, jsonb, uuid, arrays, NULLs,
unchanged TOAST values (also through chains of key changes), deletes and truncates; every
``_id`` must be its row's key. Two sinks consume each stream: one in Kafka's order, one
that drains everything and applies one partition after the other in reverse order (key
changes then arrive before the delete of the old key, rows of other partitions before a
truncate): both must be exact, which shows the result does not depend on how partitions
interleave. OpenSearch must start (jars from Maven Central, cached): if it cannot, the
test fails, it never skips.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

PIPELINE_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "opensearch"
sys.path.insert(0, str(PIPELINE_DIR))
sys.path.insert(0, str(PIPELINE_DIR.parent / "common"))

import walship_opensearch as wos  # noqa: E402
import workload  # noqa: E402

PG_OPTIONS = {"name": "pipe_opensearch"}
ORDERS = ("kafka", "adversarial")

_spec = importlib.util.spec_from_file_location("walship_opensearch_run", PIPELINE_DIR / "run.py")
pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline)


@pytest.fixture(scope="module")
def opensearch():
    with wos.OpenSearchServer() as node:   # raises (the test errors) when it cannot start
        yield node


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_opensearch_copy_is_exact(pg, kafka, opensearch, fmt, figures):
    t0 = time.monotonic()
    pl = pipeline.Pipeline(pg, kafka, opensearch.client, fmt, orders=ORDERS)
    try:
        pl.setup()
        report = []
        for r in range(0, 3):          # 0: the snapshot; 1, 2: workload rounds
            if r:
                workload.round_(pg, pl.schema, r)
            waited = pl.sync()
            for order in ORDERS:
                rows, values, diffs = pl.compare(order)
                what = "snapshot" if r == 0 else f"round {r}"
                assert not diffs, f"{fmt}/{order}, {what}: {len(diffs)} differences:\n" + "\n".join(diffs[:40])
                assert rows > 0
            report.append(f"{what}: {rows} rows, {values} values x {len(ORDERS)} sinks EQUAL "
                          f"(consumed in {waited:.1f} s)")
        # at-least-once: everything delivered again, from the beginning, changes nothing
        replayed = pl.replay("kafka")
        rows, values, diffs = pl.compare("kafka")
        assert not diffs, f"{fmt}, after a replay of every topic: {len(diffs)} differences:\n" + "\n".join(diffs[:40])
        assert replayed["stale"] > 0, replayed
        report.append(f"replay of every topic from offset 0 into the same indexes: EQUAL "
                      f"({replayed['stale']} stale writes refused by version, "
                      f"{replayed.get('below_truncate', 0)} changes below a truncate dropped)")
        # the rounds exercised what they are meant to (else the comparison proves little)
        for order in ORDERS:
            st = pl.sinks[order].stats
            assert st["r"] >= 350 and st["c"] >= 200 and st["d"] >= 40 and st["tombstone"] >= 40, (order, st)
            assert st["unchanged_toast_updates"] > 50 and st["unchanged_toast_values"] > 100, (order, st)
            assert st["key_change_creates"] >= 30 and st["key_change_carries"] > 10, (order, st)
            assert st["t"] >= 2 and st["truncated_docs"] > 0, (order, st)
            assert st["unresolved_toast"] == 0, (order, st)
        # the adversarial order did put key-change creates before their deletes
        assert pl.sinks["adversarial"].stats["waits"] > 0, pl.sinks["adversarial"].stats
        st = pl.sinks["kafka"].stats
        figures(f"opensearch pipeline [{fmt}]: " + "; ".join(report) +
                f"; sink: {st['r']} snapshot reads, {st['c']} creates, {st['u']} updates "
                f"({st['unchanged_toast_values']} unchanged TOAST values kept), {st['d']} deletes, "
                f"{st['key_change_creates']} key-change creates ({st['key_change_carries']} carried TOAST values), "
                f"{st['t']} truncates; {time.monotonic() - t0:.1f} s")
    finally:
        pl.close()
