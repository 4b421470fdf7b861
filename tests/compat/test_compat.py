"""walship's format=json against the real Debezium PostgreSQL connector: the same
changes (scripts/changes.sql), streamed by both at once from the same cluster to the same
broker, compared record by record (compare.py): topic, key (schema and payload), value
(schema and payload), headers, and the JSON bytes. Only the differences
allowed_differences.py lists are normalized; any other difference fails, and the
failure lists every kind of difference, grouped, with Debezium's and walship's values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import compare
import runner
import scenarios
from scenarios import PAIRS_BY_NAME


def compare_run(compat_run, name: str, focus=None) -> compare.Comparison:
    pr = compat_run[name]
    return compare.compare_pair(name, pr.pair.describe(), pr.debezium, pr.walship,
                                dbz_prefix=pr.pair.dbz_prefix, wsh_prefix=pr.pair.wsh_prefix,
                                focus=focus)


def fail_with(comparison: compare.Comparison, report_dir: Path, name: str) -> None:
    text = comparison.report()
    (report_dir / f"differences-{name}.txt").write_text(text + "\n")
    (report_dir / f"differences-{name}.json").write_text(
        json.dumps(comparison.as_json(), indent=1, ensure_ascii=False) + "\n")
    if comparison.differences:
        pytest.fail(f"{text}\n\n(full list: {report_dir}/differences-{name}.txt and .json; "
                    f"the records: {report_dir}/records-{name}-*.jsonl)", pytrace=False)


def test_debezium_and_walship_saw_every_table(compat_run, connect):
    """The harness itself: in every pair both engines wrote to every table's topic (a
    table missing from an include list would otherwise compare as 'nothing to compare')."""
    missing = []
    parents = set(scenarios.PARTITIONS)
    for name, pr in compat_run.items():
        for engine, prefix, msgs in (("Debezium", pr.pair.dbz_prefix, pr.debezium),
                                     ("walship", pr.pair.wsh_prefix, pr.walship)):
            topics = {m.topic for m in msgs}
            for schema, table in pr.pair.tables():
                if (schema, table) in parents:
                    continue
                t = runner.topic_name(prefix, schema, table)
                if t not in topics:
                    missing.append(f"{name}: {engine} wrote nothing to {t}")
            if f"{prefix}.message" not in topics:
                missing.append(f"{name}: {engine} wrote no logical message ({prefix}.message)")
            if pr.pair.transactions and f"{prefix}.transaction" not in topics:
                missing.append(f"{name}: {engine} wrote no transaction event")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("name", ["string", "precise", "double"])
def test_records_equal_debeziums(compat_run, connect, report_dir, name):
    """Every record of every topic, decimal_handling = decimal.handling.mode = ``name``."""
    assert PAIRS_BY_NAME[name].decimal == name
    fail_with(compare_run(compat_run, name), report_dir, name)


def test_control_debezium_equals_itself(compat_run, connect, report_dir):
    """The harness's control: a second Debezium connector in walship's place must compare
    equal to the first, every record; else the comparison (or the allow-list) is wrong."""
    fail_with(compare_run(compat_run, "control"), report_dir, "control")


def _transaction_focus(topic: str, path: str) -> bool:
    """The transaction topic whole, and the envelope's transaction block elsewhere (the
    rest of those records is test_records_equal_debeziums[string]'s)."""
    return (topic.endswith(".transaction")
            or path.startswith(("value.payload.transaction", "value.schema.fields[transaction]")))


def test_transaction_metadata_equals_debeziums(compat_run, connect, report_dir):
    """include_transaction vs provide.transaction.metadata: BEGIN/END events on
    <prefix>.transaction, and each change event's transaction block."""
    fail_with(compare_run(compat_run, "txmeta", focus=_transaction_focus), report_dir, "txmeta")
