"""Apache Flink SQL reads walship's JSON topics with its own ``debezium-json`` format.

Flink is a consumer written for Debezium: its Kafka table source with
``'format' = 'debezium-json'`` turns each event into changelog rows (``c``/``r`` → +I,
``u`` → -U before, +U after, ``d`` → -D before; tombstones are skipped; any other ``op``
fails the job, or is dropped with ``'debezium-json.ignore-parse-errors'``). The Flink
program (tests/compat/flink, Flink 2.2 in a local mini-cluster, run by flink.sh) reads
each topic from the earliest offset to the latest (bounded), materializes the query's
changelog and prints the rows; these tests compare them with PostgreSQL's tables, row by
row, after a workload of inserts, updates, primary-key changes, deletes and a TRUNCATE.

What the tests establish (each asserted, none skipped):

- ``test_tables_equal_postgres``: with ``REPLICA IDENTITY FULL`` (which Flink requires of
  Debezium's PostgreSQL events, as its error message says), Flink's tables equal
  PostgreSQL's exactly, with ``json_schema`` on (``'debezium-json.schema-include' =
  'true'``) and off, and Flink saw every event (its +I/-U/+U/-D counts are the topic's
  c/u/d counts). Types: integer, bigint, smallint, numeric → DECIMAL, boolean, text,
  double, date (days), timestamp (µs), timestamptz → TIMESTAMP_LTZ (ISO-8601), jsonb,
  uuid, text[] → ARRAY<STRING>, bytea → BYTES; a composite primary key.
- ``test_truncate``: a TRUNCATE event (``op: "t"``) stops the Flink job (``Unknown "op"
  value "t"``). With ``ignore-parse-errors``, or with walship's ``truncate`` option off,
  the job runs and the table still holds every row the TRUNCATE removed.
- ``test_replica_identity_default``: an UPDATE of a table with the default replica
  identity has ``before: null``, and Flink refuses it (the job fails; with
  ``ignore-parse-errors`` the update is lost). A DELETE's ``before`` then has only the
  key: a retracting consumer keeps the row, Flink's ``ChangelogNormalize``
  (``table.exec.source.cdc-events-duplicate``) deletes it.
- ``test_transaction_and_message_topics``: those topics are not changelogs: with
  ``debezium-json`` the job fails; with Flink's plain ``json`` format they read fine.
- ``test_key_change_forms``: walship's current form of a primary-key change (one ``u``
  keyed by the new key, the old key in ``before``) is right for a retracting consumer on
  one partition only. Wherever Flink keeps a table by its primary key it drops the
  UPDATE_BEFORE rows of a CDC source (``DropUpdateBefore``: an upsert sink such as
  upsert-kafka, or ChangelogNormalize), so the old key is never deleted; on several
  partitions the ``u`` is in the new key's partition, so even a retracting consumer
  can see the retraction before the row. Debezium's form (``d`` of the old key, a
  tombstone, ``c`` of the new key; built here from walship's own events, or emitted by
  walship when it does) is right in every mode.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lib"))

import walship_testlib as wt  # noqa: E402

FLINK_SH = REPO / "tests" / "compat" / "flink" / "flink.sh"

pytestmark = pytest.mark.timeout(int(os.environ.get("WALSHIP_FLINK_TIMEOUT", "900")))


# --------------------------------------------------------------------------------------
# Fixtures: one broker and one PostgreSQL cluster for this module (the style of
# tests/integration/conftest.py), the Flink program built once.


@pytest.fixture(scope="module")
def kafka():
    broker = wt.KafkaBroker.from_env(start=False)
    try:
        broker.start()
    except BaseException:
        broker.cleanup()
        raise
    yield broker
    broker.cleanup()


@pytest.fixture(scope="module")
def pg():
    cluster = wt.PgCluster(name="compat_flink")
    cluster.execute("CREATE EXTENSION walship")
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="module")
def flink_program():
    """Compiles the Flink program (Maven, once; cached afterwards)."""
    t0 = time.monotonic()
    r = subprocess.run([str(FLINK_SH), "build"], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"flink.sh build failed:\n{r.stdout}\n{r.stderr}"
    print(f"flink program at {r.stdout.strip()} ({time.monotonic() - t0:.1f} s)")
    return r.stdout.strip()


def run_flink(*args: str, timeout: float = 600) -> dict:
    """Runs FlinkChangelog with ``args``; returns its results by name (``--collect``), by
    statement (``--sql`` INSERTs) and by query (``--explain``)."""
    t0 = time.monotonic()
    r = subprocess.run([str(FLINK_SH), "run", *args], capture_output=True, text=True,
                       timeout=timeout)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, f"FlinkChangelog exited {r.returncode}:\n{r.stdout}\n{r.stderr[-20000:]}"
    out = {}
    for line in r.stdout.splitlines():
        if not line.startswith("{"):
            continue
        o = json.loads(line)
        out[o.get("name") or o.get("sql") or ("explain:" + o.get("explain", ""))] = o
    print(f"Flink ran {len(out)} steps in {elapsed:.1f} s")
    return out


def flink_source(name: str, columns: str, topic: str, bootstrap: str, *,
                 fmt: str = "debezium-json", **options: str) -> str:
    """A bounded Kafka table over ``topic``, from the earliest offset to the latest one."""
    o = {"connector": "kafka", "topic": topic, "properties.bootstrap.servers": bootstrap,
         "scan.startup.mode": "earliest-offset", "scan.bounded.mode": "latest-offset",
         "format": fmt}
    if fmt == "debezium-json":
        o["debezium-json.timestamp-format.standard"] = "ISO-8601"
    o.update(options)
    with_ = ", ".join(f"'{k}' = '{v}'" for k, v in o.items())
    return f"CREATE TABLE {name} ({columns}) WITH ({with_})"


def canon(rows) -> list[str]:
    """Rows as sorted JSON texts: a multiset that compares Flink's and PostgreSQL's rows."""
    return sorted(json.dumps(list(r), ensure_ascii=False) for r in rows)


def assert_same_rows(what: str, flink_rows, expected_rows) -> None:
    f, e = collections.Counter(canon(flink_rows)), collections.Counter(canon(expected_rows))
    if f == e:
        return
    only_flink = sorted((f - e).elements())
    only_expected = sorted((e - f).elements())
    lines = [f"{what}: Flink's table differs from the expected rows "
             f"({sum(f.values())} rows in Flink, {sum(e.values())} expected)"]
    lines += [f"  only in Flink:    {r}" for r in only_flink[:50]]
    lines += [f"  only in expected: {r}" for r in only_expected[:50]]
    raise AssertionError("\n".join(lines))


def collected(results: dict, name: str) -> dict:
    r = results[name]
    assert r["ok"], f"Flink's job {name} failed:\n{r['error']}"
    return r


def failed(results: dict, name: str) -> str:
    r = results[name]
    assert not r["ok"], f"Flink's job {name} was expected to fail, and it ran: {r}"
    return r["error"]


def topic_events(bootstrap: str, topic: str) -> list:
    """The topic's messages in order (one partition), each (key JSON, payload or None)."""
    out = []
    for m in wt.consume_all(bootstrap, [topic], timeout=30):
        value = json.loads(m.value) if m.value is not None else None
        if value is not None and "payload" in value and "schema" in value:
            value = value["payload"]
        out.append((m, value))
    return out


def op_counts(events) -> collections.Counter:
    return collections.Counter("tombstone" if v is None else v["op"] for _, v in events)


# --------------------------------------------------------------------------------------
# The tables: PostgreSQL's definition, Flink's columns for the same topic (types that
# parse the Debezium JSON values as they are), and a SELECT that renders PostgreSQL's
# rows the way the Flink program prints Flink's (walship's Debezium type mapping).

TS_UTC = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

TABLES = {
    "accounts": dict(
        ddl="""CREATE TABLE accounts (
                 id integer PRIMARY KEY, owner text NOT NULL, balance numeric(12,2),
                 active boolean, opened date, updated_at timestamp(6), seen_at timestamptz,
                 big bigint, score double precision, attrs jsonb, uid uuid, tags text[],
                 photo bytea, lvl smallint)""",
        flink="""id INT, owner STRING, balance DECIMAL(12, 2), active BOOLEAN, opened INT,
                 updated_at BIGINT, seen_at TIMESTAMP_LTZ(6), big BIGINT, score DOUBLE,
                 attrs STRING, uid STRING, tags ARRAY<STRING>, photo BYTES, lvl SMALLINT,
                 PRIMARY KEY (id) NOT ENFORCED""",
        select="""SELECT id, owner, balance::text, active, opened - DATE '1970-01-01',
                    (extract(epoch FROM updated_at) * 1000000)::bigint, """
               + TS_UTC.format("seen_at") + """, big, score, attrs::text, uid::text, tags,
                    translate(encode(photo, 'base64'), E'\\n', ''), lvl
                  FROM accounts ORDER BY id""",
    ),
    "order_lines": dict(
        ddl="""CREATE TABLE order_lines (
                 region text, order_no integer, line_no smallint, qty integer NOT NULL,
                 price numeric(10,3), note varchar(40), shipped_on date,
                 PRIMARY KEY (region, order_no, line_no))""",
        flink="""region STRING, order_no INT, line_no SMALLINT, qty INT, price DECIMAL(10, 3),
                 note STRING, shipped_on INT, PRIMARY KEY (region, order_no, line_no) NOT ENFORCED""",
        select="""SELECT region, order_no, line_no, qty, price::text, note, shipped_on - DATE '1970-01-01'
                  FROM order_lines ORDER BY region, order_no, line_no""",
    ),
    "events": dict(  # the table that is truncated
        ddl="""CREATE TABLE events (id bigint PRIMARY KEY, kind text, happened_at timestamptz, body jsonb)""",
        flink="""id BIGINT, kind STRING, happened_at TIMESTAMP_LTZ(6), body STRING, PRIMARY KEY (id) NOT ENFORCED""",
        select="SELECT id, kind, " + TS_UTC.format("happened_at") + ", body::text FROM events ORDER BY id",
    ),
    "plain": dict(  # REPLICA IDENTITY DEFAULT: updates carry no old row
        ddl="CREATE TABLE plain (id integer PRIMARY KEY, v text)",
        flink="id INT, v STRING, PRIMARY KEY (id) NOT ENFORCED",
        select="SELECT id, v FROM plain ORDER BY id",
    ),
    "queue": dict(  # REPLICA IDENTITY DEFAULT, inserts and deletes only
        ddl="CREATE TABLE queue (id integer PRIMARY KEY, job text NOT NULL, tries integer)",
        flink="id INT, job STRING, tries INT, PRIMARY KEY (id) NOT ENFORCED",
        select="SELECT id, job, tries FROM queue ORDER BY id",
    ),
}
FULL_IDENTITY = ("accounts", "order_lines", "events")
MAIN_TABLES = ("accounts", "order_lines")

# stream "fj": JSON with schemas (walship's default), transactions and messages on;
# stream "fn": JSON without schemas, TRUNCATE events off.
STREAMS = {
    "fj": dict(tables=list(TABLES), schema_include="true",
               options={"format": "json", "include_transaction": True, "messages": "flink"}),
    "fn": dict(tables=list(FULL_IDENTITY), schema_include="false",
               options={"format": "json", "json_schema": False, "truncate": False}),
}


def pg_rows(pg, table: str) -> list:
    with pg.connect() as conn:
        return [list(r) for r in conn.execute(TABLES[table]["select"]).fetchall()]


def run_workload(pg) -> dict:
    """Inserts, non-key updates, primary-key changes, deletes, re-inserts of deleted keys,
    a transaction that does all of it to one row, and a TRUNCATE of ``events`` followed
    by more inserts. Returns the rows ``events`` held just before its TRUNCATE."""
    with pg.connect() as c:
        # -- accounts: 40 rows in 4 transactions, then single-row changes
        for t in range(4):
            with c.transaction():
                c.execute("""
                    INSERT INTO accounts
                    SELECT g,
                           'owner ' || g || CASE WHEN mod(g, 7) = 0 THEN E' Zoë "q" \\\\ 🚀\\n' ELSE '' END,
                           CASE WHEN mod(g, 5) = 0 THEN NULL ELSE (g * 12.34 - 100)::numeric(12,2) END,
                           CASE WHEN mod(g, 6) = 0 THEN NULL ELSE mod(g, 2) = 0 END,
                           DATE '1969-12-25' + g * 40,
                           TIMESTAMP '2024-02-29 23:59:59.999999' - g * INTERVAL '1 day 1.000001 s',
                           CASE WHEN mod(g, 4) = 0 THEN NULL
                                ELSE TIMESTAMPTZ '2024-01-02 03:04:05.123456+05:30' + g * INTERVAL '37 min' END,
                           9007199254740993 * (CASE WHEN mod(g, 2) = 0 THEN -1 ELSE 1 END) + g,
                           CASE mod(g, 3) WHEN 0 THEN 0.1 * g WHEN 1 THEN 1e21 ELSE -2.5e-7 END,
                           CASE WHEN mod(g, 3) = 0 THEN NULL
                                ELSE jsonb_build_object('g', g, 'list', jsonb_build_array(1, 'x', null)) END,
                           md5(g::text)::uuid,
                           CASE WHEN mod(g, 4) = 1 THEN NULL ELSE ARRAY['a' || g, 'with,comma', NULL] END,
                           CASE WHEN mod(g, 3) = 1 THEN NULL ELSE decode(md5(g::text), 'hex') END,
                           (g * 100 - 2000)::smallint
                      FROM generate_series(%s::int, %s::int) g""", [t * 10 + 1, t * 10 + 10])
        c.execute("UPDATE accounts SET balance = balance + 0.01, active = NOT active WHERE id % 3 = 0")
        c.execute("UPDATE accounts SET owner = 'renamed', attrs = '{\"deep\": {\"k\": [true, 1.5]}}', "
                  "tags = ARRAY[]::text[], photo = '\\x00ff'::bytea WHERE id = 8")
        c.execute("UPDATE accounts SET seen_at = NULL, updated_at = NULL, score = NULL, balance = NULL "
                  "WHERE id IN (9, 10)")
        c.execute("UPDATE accounts SET seen_at = '1999-12-31 23:59:59.5-08', opened = '1900-03-01' WHERE id = 11")
        # primary-key changes: alone, with other columns, chained in one transaction
        c.execute("UPDATE accounts SET id = id + 1000 WHERE id IN (1, 2, 3)")
        c.execute("UPDATE accounts SET id = 2004, balance = 4.44, owner = 'moved' WHERE id = 4")
        with c.transaction():
            c.execute("UPDATE accounts SET id = 3005 WHERE id = 5")
            c.execute("UPDATE accounts SET id = 4005, lvl = 7 WHERE id = 3005")
        c.execute("UPDATE accounts SET id = 1 WHERE id = 1001")  # a key moved back
        # deletes, one of a moved row; a deleted key inserted again
        c.execute("DELETE FROM accounts WHERE id IN (12, 13, 2004)")
        c.execute("INSERT INTO accounts (id, owner, balance) VALUES (12, 'back again', 0)")
        # one transaction: insert, update, move, delete one row; insert and update another
        with c.transaction():
            c.execute("INSERT INTO accounts (id, owner) VALUES (9001, 'short-lived')")
            c.execute("UPDATE accounts SET owner = 'still short-lived' WHERE id = 9001")
            c.execute("UPDATE accounts SET id = 9002 WHERE id = 9001")
            c.execute("DELETE FROM accounts WHERE id = 9002")
            c.execute("INSERT INTO accounts (id, owner, big) VALUES (9003, 'kept', -1)")
            c.execute("UPDATE accounts SET big = big - 1 WHERE id = 9003")
        c.execute("UPDATE accounts SET owner = owner WHERE id = 14")  # an update that changes nothing

        # -- order_lines: composite key (region, order_no, line)
        c.execute("""
            INSERT INTO order_lines
            SELECT r, o, l, o * l, (o * 1.125 + l)::numeric(10,3),
                   CASE WHEN l = 2 THEN NULL ELSE 'line ' || l || ' of ' || r END,
                   CASE WHEN l = 3 THEN NULL ELSE DATE '2023-12-30' + o END
              FROM unnest(ARRAY['north', 'south', 'Ωmega']) r, generate_series(1, 4) o,
                   generate_series(1, 3) l""")
        c.execute("UPDATE order_lines SET qty = qty + 100, note = 'bumped' WHERE order_no = 2")
        c.execute("UPDATE order_lines SET region = 'east' WHERE region = 'north' AND order_no = 3")
        c.execute("UPDATE order_lines SET line_no = line_no + 10 WHERE region = 'south' AND order_no = 1")
        c.execute("UPDATE order_lines SET order_no = 40, price = NULL WHERE region = 'Ωmega' AND order_no = 4 AND line_no = 1")
        c.execute("DELETE FROM order_lines WHERE order_no = 1 AND region = 'north'")
        c.execute("DELETE FROM order_lines WHERE region = 'east' AND line_no = 2")
        c.execute("INSERT INTO order_lines VALUES ('north', 1, 1, 5, 0.5, 'again', NULL)")

        # -- events: changes, then a TRUNCATE and inserts of new keys
        c.execute("""INSERT INTO events SELECT g, 'kind ' || (g % 3),
                         TIMESTAMPTZ '2024-03-10 01:59:59.999999-05' + g * INTERVAL '1 hour',
                         jsonb_build_object('n', g) FROM generate_series(1, 20) g""")
        c.execute("UPDATE events SET kind = 'updated', body = NULL WHERE id IN (2, 3)")
        c.execute("UPDATE events SET id = 120 WHERE id = 20")
        c.execute("DELETE FROM events WHERE id IN (4, 5)")
        before_truncate = pg_rows(pg, "events")
        c.execute("TRUNCATE events")
        c.execute("""INSERT INTO events SELECT g, 'after truncate', NULL, NULL
                       FROM generate_series(1001, 1010) g""")
        c.execute("UPDATE events SET kind = 'after truncate, updated' WHERE id = 1002")
        c.execute("DELETE FROM events WHERE id = 1003")

        # -- plain (replica identity default): inserts, then a non-key update
        c.execute("INSERT INTO plain VALUES (1, 'one'), (2, 'two')")
        c.execute("UPDATE plain SET v = 'uno' WHERE id = 1")
        # -- queue (replica identity default): inserts and deletes
        c.execute("INSERT INTO queue SELECT g, 'job ' || g, g % 2 FROM generate_series(1, 8) g")
        c.execute("DELETE FROM queue WHERE id IN (2, 5, 8)")

        # a logical message (to <prefix>.message)
        c.execute("SELECT pg_logical_emit_message(true, 'flink', 'hello from the workload')")
    return {"events_before_truncate": before_truncate}


@pytest.fixture(scope="module")
def streamed(kafka, pg):
    """The tables, the two streams, the workload, everything acknowledged by Kafka."""
    for name, t in TABLES.items():
        pg.execute(t["ddl"])
        if name in FULL_IDENTITY:
            pg.execute(f"ALTER TABLE {name} REPLICA IDENTITY FULL")
    for stream, s in STREAMS.items():
        pg.execute("SELECT walship.create_stream(%s, %s, %s, %s::jsonb)",
                   [stream, kafka.bootstrap, [f"public.{t}" for t in s["tables"]],
                    json.dumps({"topic_prefix": stream, **s["options"]})])
    info = run_workload(pg)
    for stream in STREAMS:
        wt.wait_caught_up(pg, stream)
    info["pg"] = {t: pg_rows(pg, t) for t in TABLES}
    return info


@pytest.fixture(scope="module")
def flink_main(kafka, streamed, flink_program):
    """One Flink run for the tests below: every source table, every collected query."""
    boot = kafka.bootstrap
    args = []
    for stream, s in STREAMS.items():
        for t in s["tables"]:
            args += ["--sql", flink_source(f"{stream}_{t}", TABLES[t]["flink"], f"{stream}.public.{t}",
                                           boot, **{"debezium-json.schema-include": s["schema_include"]})]
    ign = {"debezium-json.schema-include": "true", "debezium-json.ignore-parse-errors": "true"}
    args += ["--sql", flink_source("fj_events_ign", TABLES["events"]["flink"], "fj.public.events", boot, **ign),
             "--sql", flink_source("fj_plain_ign", TABLES["plain"]["flink"], "fj.public.plain", boot, **ign),
             "--sql", flink_source("fj_txn", "id STRING", "fj.transaction", boot,
                                   **{"debezium-json.schema-include": "true"}),
             "--sql", flink_source("fj_msg", "id STRING", "fj.message", boot,
                                   **{"debezium-json.schema-include": "true"}),
             # the same topics as plain JSON (Kafka Connect's envelope: schema + payload)
             "--sql", flink_source("fj_txn_json",
                                   "payload ROW<status STRING, id STRING, event_count BIGINT>",
                                   "fj.transaction", boot, fmt="json"),
             "--sql", flink_source("fj_msg_json",
                                   "payload ROW<op STRING, message ROW<prefix STRING, content BYTES>>",
                                   "fj.message", boot, fmt="json")]
    for stream, s in STREAMS.items():
        for t in s["tables"]:
            args += ["--collect", f"{stream}_{t}=SELECT * FROM {stream}_{t}"]
    args += ["--collect", "fj_events_ign=SELECT * FROM fj_events_ign",
             "--collect", "fj_plain_ign=SELECT * FROM fj_plain_ign",
             "--collect", "fj_txn=SELECT * FROM fj_txn",
             "--collect", "fj_msg=SELECT * FROM fj_msg",
             "--collect", "fj_txn_json=SELECT payload.status, payload.id, payload.event_count FROM fj_txn_json",
             "--collect", "fj_msg_json=SELECT payload.op, payload.message.prefix, payload.message.content FROM fj_msg_json",
             # Flink's keyed materialization of a CDC source (ChangelogNormalize by the key)
             "--set", "table.exec.source.cdc-events-duplicate=true",
             "--collect", "fj_queue_normalized=SELECT * FROM fj_queue",
             "--collect", "fj_plain_normalized=SELECT * FROM fj_plain"]
    return run_flink(*args)


# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["fj", "fn"], ids=["json-schema", "no-json-schema"])
@pytest.mark.parametrize("table", MAIN_TABLES)
def test_tables_equal_postgres(kafka, streamed, flink_main, stream, table):
    """Inserts, updates, primary-key changes, deletes: Flink's table is PostgreSQL's."""
    r = collected(flink_main, f"{stream}_{table}")
    assert r["anomalies"] == [], "retractions of rows Flink's table did not hold:\n" + "\n".join(r["anomalies"])
    assert_same_rows(f"{stream}.public.{table}", r["rows"], streamed["pg"][table])
    # Flink read every event of the topic: c -> +I, u -> -U and +U, d -> -D
    ops = op_counts(topic_events(kafka.bootstrap, f"{stream}.public.{table}"))
    kinds = collections.Counter(r["kinds"])
    assert ops["u"] > 0 and ops["d"] > 0, ops
    assert kinds == collections.Counter({"+I": ops["c"], "-U": ops["u"], "+U": ops["u"], "-D": ops["d"]}), \
        f"Flink's changelog {dict(kinds)} for the topic's events {dict(ops)}"


def test_truncate(streamed, flink_main):
    """Flink's debezium-json has no TRUNCATE: the job fails on ``op: "t"``; skipping the
    event (``ignore-parse-errors``, or walship's ``truncate`` off) keeps the rows that the
    TRUNCATE removed in Flink's table."""
    error = failed(flink_main, "fj_events")
    assert 'Unknown "op" value "t"' in error, error
    # PostgreSQL's rows now, and every row the TRUNCATE removed (keys that are not reused)
    expected = streamed["events_before_truncate"] + streamed["pg"]["events"]
    assert len({r[0] for r in expected}) == len(expected)
    for name in ("fj_events_ign", "fn_events"):  # ignore-parse-errors; walship's truncate=false
        r = collected(flink_main, name)
        assert r["anomalies"] == [], r["anomalies"]
        assert_same_rows(name, r["rows"], expected)
    assert streamed["events_before_truncate"], "the TRUNCATE removed rows"


def test_replica_identity_default(streamed, flink_main):
    """Default replica identity: an UPDATE's ``before`` is null and Flink refuses it; a
    DELETE's ``before`` has the key only (the other columns null), which only Flink's
    keyed ChangelogNormalize can apply."""
    for name in ("fj_plain", "fj_plain_normalized"):
        error = failed(flink_main, name)
        assert 'The "before" field of UPDATE message is null' in error, error
    # with ignore-parse-errors the UPDATE is lost: Flink still shows the old value
    r = collected(flink_main, "fj_plain_ign")
    assert_same_rows("fj_plain_ign", r["rows"], [[1, "one"], [2, "two"]])
    assert streamed["pg"]["plain"] == [[1, "uno"], [2, "two"]]

    # inserts and deletes: retracting [id, "", null] does not match [id, "job id", tries]
    r = collected(flink_main, "fj_queue")
    deleted = [[i, f"job {i}", i % 2] for i in (2, 5, 8)]
    assert_same_rows("fj_queue", r["rows"], streamed["pg"]["queue"] + deleted)
    assert len(r["anomalies"]) == 3, r["anomalies"]
    # ChangelogNormalize keeps the last row of each key and deletes it by the key
    r = collected(flink_main, "fj_queue_normalized")
    assert_same_rows("fj_queue_normalized", r["rows"], streamed["pg"]["queue"])


def test_transaction_and_message_topics(kafka, streamed, flink_main):
    """``<prefix>.transaction`` and ``<prefix>.message`` are not table changelogs:
    debezium-json fails on them (a transaction event has no ``op``; a message's is "m");
    Flink's plain json format reads them."""
    error = failed(flink_main, "fj_txn")
    assert "Corrupt Debezium JSON message" in error and "NullPointerException" in error, error
    error = failed(flink_main, "fj_msg")
    assert 'Unknown "op" value "m"' in error, error

    txn = collected(flink_main, "fj_txn_json")["rows"]
    events = topic_events(kafka.bootstrap, "fj.transaction")
    assert_same_rows("fj_txn_json", txn,
                     [[v["status"], v["id"], v["event_count"]] for _, v in events])
    assert {r[0] for r in txn} == {"BEGIN", "END"}
    msg = collected(flink_main, "fj_msg_json")["rows"]
    assert msg == [["m", "flink", base64.b64encode(b"hello from the workload").decode()]], msg


# --------------------------------------------------------------------------------------
# Primary-key changes: walship's form against Debezium's, one job per consumer shape.

MOVES_PARTITIONS = 3


def upsert_view(events) -> dict:
    """A table kept by its key from ``events`` in commit order, as Flink keeps one when it
    drops UPDATE_BEFORE: c/r/u write ``after`` under its own key, d deletes its key."""
    table = {}
    for _, v in events:
        if v is None:
            continue
        if v["op"] in ("c", "r", "u"):
            table[v["after"]["id"]] = [v["after"]["id"], v["after"]["v"]]
        elif v["op"] == "d":
            table.pop(v["before"]["id"], None)
    return table


def test_key_change_forms(kafka, pg, flink_program):
    boot = kafka.bootstrap
    pg.execute("CREATE TABLE moves (id integer PRIMARY KEY, v text); "
               "ALTER TABLE moves REPLICA IDENTITY FULL")
    pg.execute("SELECT walship.create_stream('fk', %s, ARRAY['public.moves'], %s::jsonb)",
               [boot, json.dumps({"topic_prefix": "fk", "format": "json",
                                  "partitions": MOVES_PARTITIONS})])
    with pg.connect() as c:
        c.execute("INSERT INTO moves SELECT g, 'v' || g FROM generate_series(1, 30) g")
        for i in range(1, 11):
            c.execute("UPDATE moves SET id = %s, v = v || '!' WHERE id = %s", [100 + i, i])
        c.execute("UPDATE moves SET id = 200 WHERE id = 11")   # a chain of moves
        c.execute("UPDATE moves SET id = 300 WHERE id = 200")
        c.execute("UPDATE moves SET id = 400 WHERE id = 12")   # moved, then deleted
        c.execute("DELETE FROM moves WHERE id = 400")
        c.execute("UPDATE moves SET id = 500 WHERE id = 13")   # moved away and back
        c.execute("UPDATE moves SET id = 13 WHERE id = 500")
        c.execute("UPDATE moves SET v = 'changed' WHERE id IN (14, 15)")
        c.execute("DELETE FROM moves WHERE id IN (20, 21, 22)")
        c.execute("INSERT INTO moves VALUES (21, 'again')")
    wt.wait_caught_up(pg, "fk")
    with pg.connect() as c:
        expected = [list(r) for r in c.execute("SELECT id, v FROM moves").fetchall()]

    topic = "fk.public.moves"
    events = commit_order(wt.consume_all(boot, [topic], timeout=30))
    single_u = [v for _, v in events if v and v["op"] == "u" and v["before"]["id"] != v["after"]["id"]]
    tombstones = sum(1 for _, v in events if v is None)
    form = "walship" if single_u else "debezium"
    print(f"walship's key changes: {len(single_u)} single 'u' events, {tombstones} tombstones "
          f"({form} form)")
    if form == "debezium":
        assert tombstones >= 14, "Debezium's form: a tombstone after each delete"

    # Debezium's form built from walship's events, in commit order, keys as walship's
    dbz_topic = topic + ".debezium"
    admin = kafka.admin()
    from confluent_kafka.admin import NewTopic
    from confluent_kafka import Producer
    for f in admin.create_topics([NewTopic(dbz_topic, MOVES_PARTITIONS, 1)]).values():
        f.result()
    producer = Producer({"bootstrap.servers": boot, "partitioner": "murmur2_random",
                         "enable.idempotence": True})
    dbz_events = []
    for m, v in events:
        key = json.loads(m.key)
        schema = json.loads(m.value)["schema"] if m.value is not None else None
        if v is not None and v["op"] == "u" and v["before"]["id"] != v["after"]["id"]:
            old_key = dict(key, payload={"id": v["before"]["id"]})
            dbz_events += [(old_key, schema, dict(v, op="d", after=None)), (old_key, None, None),
                           (key, schema, dict(v, op="c", before=None))]
        else:
            dbz_events.append((key, schema, v))
    for key, schema, v in dbz_events:
        producer.produce(dbz_topic, key=json.dumps(key, separators=(",", ":")).encode(),
                         value=None if v is None else json.dumps({"schema": schema, "payload": v}).encode())
    assert producer.flush(30) == 0

    cols = "id INT, v STRING, PRIMARY KEY (id) NOT ENFORCED"
    schema = {"debezium-json.schema-include": "true"}

    def upsert_sink(name):
        return (f"CREATE TABLE {name} (id INT, v STRING, PRIMARY KEY (id) NOT ENFORCED) WITH ("
                f"'connector' = 'upsert-kafka', 'topic' = 'fk.flink.{name}', "
                f"'properties.bootstrap.servers' = '{boot}', 'key.format' = 'json', "
                f"'value.format' = 'json')")

    res = run_flink(
        "--parallelism", "2",
        "--sql", flink_source("w", cols, topic, boot, **schema),
        "--sql", flink_source("d", cols, dbz_topic, boot, **schema),
        "--sql", upsert_sink("w_upsert"), "--sql", upsert_sink("d_upsert"),
        # a retracting consumer: every -U/-D must find its row
        "--collect", "w_retract=SELECT * FROM w",
        "--collect", "d_retract=SELECT * FROM d",
        # an upsert sink keyed by the primary key: Flink drops UPDATE_BEFORE on the way
        "--explain", "INSERT INTO w_upsert SELECT * FROM w",
        "--sql", "INSERT INTO w_upsert SELECT * FROM w",
        "--sql", "INSERT INTO d_upsert SELECT * FROM d",
        # the table kept by its key (ChangelogNormalize), as for at-least-once sources
        "--set", "table.exec.source.cdc-events-duplicate=true",
        "--collect", "w_normalized=SELECT * FROM w",
        "--collect", "d_normalized=SELECT * FROM d",
    )
    plan = res["explain:INSERT INTO w_upsert SELECT * FROM w"]["plan"]
    assert "DropUpdateBefore" in plan, plan

    def upsert_topic_rows(name):
        table = {}
        for m in wt.consume_all(boot, [f"fk.flink.{name}"], timeout=30):
            k = json.loads(m.key)["id"]
            if m.value is None:
                table.pop(k, None)
            else:
                v = json.loads(m.value)
                table[k] = [v["id"], v["v"]]
        return list(table.values())

    for name in ("INSERT INTO w_upsert SELECT * FROM w", "INSERT INTO d_upsert SELECT * FROM d"):
        assert res[name]["ok"], res[name]

    # Debezium's form: right for every consumer, on every partition
    r = collected(res, "d_retract")
    assert r["anomalies"] == [], r["anomalies"]
    assert_same_rows("Debezium's form, retracting", r["rows"], expected)
    assert_same_rows("Debezium's form, ChangelogNormalize", collected(res, "d_normalized")["rows"], expected)
    assert_same_rows("Debezium's form, upsert-kafka sink", upsert_topic_rows("d_upsert"), expected)

    # walship's events as they are
    kept = list(upsert_view(events).values())
    if form == "debezium":
        assert_same_rows("walship, retracting", collected(res, "w_retract")["rows"], expected)
        assert collected(res, "w_retract")["anomalies"] == []
        assert_same_rows("walship, ChangelogNormalize", collected(res, "w_normalized")["rows"], expected)
        assert_same_rows("walship, upsert-kafka sink", upsert_topic_rows("w_upsert"), expected)
        return
    # One 'u' per key change. Keyed consumers never delete the old key: Flink's table is
    # PostgreSQL's plus the rows under every key that was moved away and not used again.
    stale = collections.Counter(canon(kept)) - collections.Counter(canon(expected))
    assert collections.Counter(canon(expected)) - collections.Counter(canon(kept)) == collections.Counter()
    stale_ids = sorted(json.loads(s)[0] for s in stale.elements())
    assert stale_ids == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 200, 500], stale_ids
    assert_same_rows("walship, ChangelogNormalize", collected(res, "w_normalized")["rows"], kept)
    assert_same_rows("walship, upsert-kafka sink", upsert_topic_rows("w_upsert"), kept)
    # A retracting consumer: the 'u' travels in the new key's partition, so its -U can come
    # before the old key's +I from another partition: that retraction misses and the row
    # stays. Every difference from PostgreSQL is such a missed retraction.
    r = collected(res, "w_retract")
    missed = [json.loads(a.split(": ", 1)[1]) for a in r["anomalies"]]
    assert all(a.startswith("-U of a row") for a in r["anomalies"]), r["anomalies"]
    assert_same_rows("walship, retracting (PostgreSQL + missed retractions)", r["rows"], expected + missed)
    print(f"walship's form, retracting on {MOVES_PARTITIONS} partitions: {len(missed)} of "
          f"{len(single_u)} key changes left their old row behind")


def _lsn(text: bytes) -> int:
    hi, lo = text.decode().split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def commit_order(msgs) -> list:
    """A stream's messages from all partitions in commit order, each (message, payload or
    None): by the commit LSN (header ``walship.lsn``), then the change's LSN; a tombstone
    right after the delete before it in its partition."""
    keyed, last = [], {}
    for m in sorted(msgs, key=lambda m: (m.partition, m.offset)):
        if m.value is None:
            commit, change, _ = last[m.partition]
            rank = 1
        else:
            payload = json.loads(m.value)["payload"]
            commit, change = _lsn(m.header("walship.lsn")), payload["source"]["lsn"]
            rank = 2 if payload["op"] == "c" else 0  # Debezium's form: d, tombstone, c
        last[m.partition] = (commit, change, rank)
        keyed.append(((commit, change, rank), m))
    keyed.sort(key=lambda x: x[0])
    return [(m, json.loads(m.value)["payload"] if m.value is not None else None) for _, m in keyed]
