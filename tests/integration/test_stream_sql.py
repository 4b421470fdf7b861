"""walship.create_stream / start / stop / drop and walship.stream_status, as a user sees
them: what is refused (and how it is explained), what a failed or rolled-back call
leaves behind (nothing), what the status view shows, and that secrets stay hidden."""

from __future__ import annotations

import json
import subprocess
import time

import psycopg
import pytest

import walship_testlib as wt

status = wt.stream_status

SECRET = "hunter2-Sup3rS3cret"


def sql_error(pg, sql, params=None, dbname="postgres") -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        pg.execute(sql, params, dbname=dbname)
    return info.value


def message(err: psycopg.Error) -> str:
    d = err.diag
    return " | ".join(x for x in (d.message_primary, d.message_detail, d.message_hint,
                                  d.context) if x)




def wait_state(pg, name, state, timeout=30):
    return wt.wait_for(lambda: (s := status(pg, name)) and s["state"] == state and s,
                       timeout, 0.1, f"stream {name} to be {state}")


def slots(pg) -> list[str]:
    return [r[0] for r in pg.execute("SELECT slot_name FROM pg_replication_slots ORDER BY 1")]


def streams(pg) -> list[str]:
    return [r[0] for r in pg.execute("SELECT name FROM walship.streams ORDER BY 1")]


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION walship")
    pg.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
    pg.execute("CREATE TABLE nokey (a int)")
    pg.execute("CREATE TABLE full_ident (a int); ALTER TABLE full_ident REPLICA IDENTITY FULL")
    pg.execute("CREATE VIEW items_view AS SELECT * FROM items")
    pg.execute("CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)")
    return pg


@pytest.mark.parametrize("args, sqlstate, says", [
    (("Bad-Name", None), "42602", ['invalid stream name "Bad-Name"', "a-z, 0-9 and _"]),
    (("x" * 56, None), "42602", ["invalid stream name", "1 to 55 characters"]),
    (("", None), "42602", ['invalid stream name ""']),
    (("s", None, ["no_such_table"]), "42P01",
     ['table "no_such_table" of stream "s" does not exist']),
    (("s", None, ["nokey"]), "55000",
     ['table "public.nokey" of stream "s" has no replica identity', "REPLICA IDENTITY FULL"]),
    (("s", None, ["items_view"]), "42809", ['"public.items_view" of stream "s" is not a table']),
    (("s", None, ["scratch"]), "42809", ['table "public.scratch" of stream "s" is unlogged']),
    (("s", None, ["pg_class"]), "42809", ["is a system catalog"]),
    (("s", None, ["walship.streams"]), "42809", ["one of walship's own tables"]),
    (("s", None, []), "22023", ["must not be empty", "Pass NULL to stream every table"]),
    (("s", None, None, {"bogus_option": 1}), "22023",
     ['invalid option "bogus_option" for stream "s"', 'unrecognized option "bogus-option"',
      "valid options are: format"]),
    (("s", None, None, {"format": "xml"}), "22023",
     ['invalid option "format"', 'invalid value "xml"', "expected protobuf or json"]),
    (("s", None, None, {"tables": "public.items"}), "22023", ["create_stream's tables argument"]),
    (("s", None, None, {"framing": "varint"}), "22023", ['option "framing" cannot be set']),
    (("s", None, None, {"partitions": 0}), "22023",
     ['invalid value for option "partitions"', "an integer from 1 to 100000"]),
    # accepted once, then failing for ever in the worker: now refused at create_stream
    (("s", None, None, {"partitions": 1000000000}), "22023",
     ['invalid value for option "partitions"', "from 1 to 100000, got 1000000000"]),
    (("s", None, None, {"replication_factor": 40000}), "22023",
     ['invalid value for option "replication_factor"', "from 1 to 32767"]),
    (("s", None, None, {"kafka": {"max.in.flight": "6x"}}), "22023",
     ['Kafka property "max.in.flight" must be a whole number from 1 to 5']),
    (("s", None, None, {"kafka": {"retries": "0y"}}), "22023",
     ['Kafka property "retries" must be a whole number']),
    (("s", None, None, {"kafka": {"socket.timeout.ms": "6000x"}}), "22023",
     ['"socket.timeout.ms" "6000x": expected a whole number']),
    (("s", None, None, {"kafka": {"linger.ms": 100, "message.timeout.ms": 50}}), "22023",
     ['invalid Kafka configuration for stream "s"', "linger.ms"]),
    (("s", "nohost:99999", None), "22023",
     ['invalid broker "nohost:99999"', "port must be a number from 1 to 65535"]),
    (("s", "kafka1:9092,:9092", None), "22023", ['invalid broker ":9092"', "host is missing"]),
    (("s", "::1:9092", None), "22023", ["IPv6 address in brackets"]),
    (("s", None, [""]), "42602", ['invalid table name "" in the tables of stream "s"']),
    (("s", None, ['"unterminated']), "42602", ['invalid table name ""unterminated"']),
    (("s", None, ["public.t1; drop table t1"]), "42602",
     ['invalid table name "public.t1; drop table t1"', "double-quoting"]),
    (("s", None, None, {"kafka": {"no.such.property": "1"}}), "22023",
     ['unknown Kafka property "no.such.property"']),
    (("s", None, None, {"kafka": {"acks": "1"}}), "22023", ['Kafka property "acks" must be "all"']),
    (("s", None, None, {"kafka": {"bootstrap.servers": "x:1"}}), "22023",
     ["conflicts with the bootstrap_servers argument"]),
    (("s", None, None, {"kafka": "compression.type=lz4"}), "22023",
     ['option "kafka" of stream "s" must be a JSON object']),
    (("s", None, None, []), "22023", ['options of stream "s" must be a JSON object']),
    (("s", "", None), "22023", ['bootstrap_servers of stream "s" must not be empty']),
    (("s", "host one:9092", None), "22023", ["invalid bootstrap_servers"]),
])
def test_create_stream_refuses_bad_input_and_changes_nothing(db, kafka, args, sqlstate, says):
    name, servers, *rest = args
    tables = rest[0] if rest else None
    options = json.dumps(rest[1]) if len(rest) > 1 else "{}"
    err = sql_error(db, "SELECT walship.create_stream(%s, %s, %s, %s::jsonb)",
                    [name, kafka.bootstrap if servers is None else servers, tables, options])
    assert err.diag.sqlstate == sqlstate, message(err)
    for text in says:
        assert text in message(err)
    assert streams(db) == [] and slots(db) == []


def test_bad_kafka_property_is_named_but_no_secret_is_echoed(db, kafka):
    # the secret is both a secret property's value and a bad value of another property
    options = {"kafka": {"sasl.password": SECRET, "compression.type": SECRET}}
    err = sql_error(db, "SELECT walship.create_stream('s', %s, NULL, %s::jsonb)",
                    [kafka.bootstrap, json.dumps(options)])
    text = message(err)
    assert 'Kafka property "compression.type"' in text
    assert SECRET not in text
    assert SECRET not in db.log_text()
    options = {"kafka": {"ssl.key.password": SECRET, "ssl.key.location": 42,
                         "socket.timeout.ms": SECRET}}
    text = message(sql_error(db, "SELECT walship.create_stream('s', %s, NULL, %s::jsonb)",
                             [kafka.bootstrap, json.dumps(options)]))
    assert "socket.timeout.ms" in text and SECRET not in text
    assert streams(db) == [] and slots(db) == []


def test_create_stream_must_come_before_writes_and_rolls_back_cleanly(db, kafka):
    with db.connect(autocommit=False) as conn:
        conn.execute("INSERT INTO items VALUES (1000, 'x')")
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT walship.create_stream('early', %s)", [kafka.bootstrap])
        assert "create_stream must run before its transaction writes anything" in message(info.value)
        assert "transaction of its own" in message(info.value)
        conn.rollback()
        # created, then rolled back: the slot goes with it
        conn.execute("SELECT walship.create_stream('rolled_back', %s)", [kafka.bootstrap])
        assert "walship_rolled_back" in slots(db)
        conn.rollback()
        # in a savepoint that rolls back, inside a transaction that commits
        conn.execute("SAVEPOINT a")
        conn.execute("SELECT walship.create_stream('in_savepoint', %s)", [kafka.bootstrap])
        conn.execute("ROLLBACK TO SAVEPOINT a")
        conn.commit()
    assert streams(db) == [] and slots(db) == []


def test_stream_lifecycle_and_status(db, kafka, unique):
    name = unique[:50]
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY['items'], "
               "'{\"topic_prefix\": \"sql\"}')", [name, kafka.bootstrap])
    row = db.execute("SELECT bootstrap_servers, tables, options, enabled FROM walship.streams "
                     "WHERE name = %s", [name])[0]
    # the options' canonical form: plugin options as the worker hands them to the plugin
    assert row == (kafka.bootstrap, ["public.items"],
                   {"plugin": {"topic-prefix": "sql"}, "kafka": {}, "on_refused": "stop",
                    "failover": False, "snapshot_mode": "initial",
                    "snapshot_chunk_size": 4096, "delivery": "at_least_once"}, True)
    assert f"walship_{name}" in slots(db)
    assert db.scalar("SELECT plugin FROM pg_replication_slots WHERE slot_name = %s",
                     [f"walship_{name}"]) == "walship"

    s = wait_state(db, name, "running")
    assert s["worker_pid"] and s["slot_name"] == f"walship_{name}"
    assert set(s) >= {"name", "state", "worker_pid", "slot_name", "confirmed_flush_lsn",
                      "current_lsn", "lag_bytes", "events_produced", "bytes_produced",
                      "events_acked", "in_flight", "last_commit_time", "last_ack_time",
                      "last_error", "last_error_time"}
    backend = db.scalar("SELECT backend_type FROM pg_stat_activity WHERE pid = %s",
                        [s["worker_pid"]])
    assert backend == "walship stream"

    db.execute("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 10) g")
    s = wt.wait_for(lambda: (x := status(db, name))["events_acked"] == 10 and x["lag_bytes"] == 0
                    and x, 60, 0.1, "10 acked events and no lag")
    assert s["events_produced"] == 10 and s["in_flight"] == 0 and s["bytes_produced"] > 0
    assert s["last_commit_time"] is not None and s["last_ack_time"] is not None
    assert s["last_error"] is None
    msgs = wt.consume_all(kafka.bootstrap, "sql.public.items", expected_count=10, timeout=30)
    assert [m.header("walship.lsn") for m in msgs][0] is not None

    # stop: the worker exits, the stream says stopped, the slot stays
    pid = s["worker_pid"]
    db.execute("SELECT walship.stop_stream(%s)", [name])
    s = status(db, name)
    assert s["state"] == "stopped" and s["worker_pid"] is None and not s["enabled"]
    wt.wait_for(lambda: db.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                  [pid]) == 0, 10, 0.05, "the worker to leave")
    db.execute("INSERT INTO items VALUES (11, 'while stopped')")
    time.sleep(0.5)
    assert status(db, name)["lag_bytes"] > 0

    # start: it resumes from the slot
    db.execute("SELECT walship.start_stream(%s)", [name])
    wait_state(db, name, "running")
    wt.wait_for(lambda: status(db, name)["lag_bytes"] == 0, 60, 0.1, "lag 0 after start")
    msgs = wt.consume_all(kafka.bootstrap, "sql.public.items", expected_count=11, timeout=30,
                          linger=0.5, exact=True)

    # stop in a transaction that rolls back: the worker comes back
    with db.connect(autocommit=False) as conn:
        conn.execute("SELECT walship.stop_stream(%s)", [name])
        conn.rollback()
    wait_state(db, name, "running")

    # drop in a transaction that rolls back: nothing is lost
    with db.connect(autocommit=False) as conn:
        conn.execute("SELECT walship.drop_stream(%s)", [name])
        conn.rollback()
    assert f"walship_{name}" in slots(db)
    wait_state(db, name, "running")

    db.execute("SELECT walship.drop_stream(%s)", [name])
    assert status(db, name) is None and f"walship_{name}" not in slots(db)
    assert name not in streams(db)
    err = sql_error(db, "SELECT walship.drop_stream(%s)", [name])
    assert f'stream "{name}" does not exist' in message(err)
    err = sql_error(db, "SELECT walship.start_stream('no_such_stream')")
    assert err.diag.sqlstate == "42704"


def test_duplicate_names_and_stale_slots(db, kafka):
    db.execute("SELECT walship.create_stream('dup', %s, ARRAY['items'])", [kafka.bootstrap])
    err = sql_error(db, "SELECT walship.create_stream('dup', %s)", [kafka.bootstrap])
    assert err.diag.sqlstate == "42710" and 'stream "dup" already exists' in message(err)
    db.execute("SELECT walship.drop_stream('dup')")
    db.execute("SELECT pg_create_logical_replication_slot('walship_taken', 'test_decoding')")
    err = sql_error(db, "SELECT walship.create_stream('taken', %s)", [kafka.bootstrap])
    assert 'replication slot "walship_taken" for stream "taken" already exists' in message(err)
    assert "pg_drop_replication_slot" in message(err)
    db.execute("SELECT pg_drop_replication_slot('walship_taken')")
    assert streams(db) == [] and slots(db) == []


def test_secrets_stay_out_of_status_logs_and_reach(db, kafka, unique):
    name = unique[:50]
    # sasl.password without a SASL protocol: librdkafka keeps it and warns about it
    options = {"kafka": {"sasl.username": "walship", "sasl.password": SECRET,
                         "sasl.mechanism": "PLAIN"}}
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY['items'], %s::jsonb)",
               [name, kafka.bootstrap, json.dumps(options)])
    wait_state(db, name, "running")
    db.execute("INSERT INTO items VALUES (5000, 'secret test')")
    wt.wait_for(lambda: status(db, name)["events_acked"] >= 1, 60, 0.1, "an ack")
    s = status(db, name)
    assert SECRET not in json.dumps(s, default=str)
    assert SECRET not in db.log_text()

    # the catalog keeps it, for superusers only; monitoring roles see status
    db.execute("CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
    db.execute("CREATE ROLE nobody LOGIN")
    with psycopg.connect(host=db.host, port=db.port, user="watcher", dbname="postgres",
                         autocommit=True) as conn:
        rows = conn.execute("SELECT name, state FROM walship.stream_status").fetchall()
        assert (name, "running") in rows
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT options FROM walship.streams")
    with psycopg.connect(host=db.host, port=db.port, user="nobody", dbname="postgres",
                         autocommit=True) as conn:
        for sql in ("SELECT * FROM walship.streams",
                    "SELECT walship.create_stream('x', 'localhost:1')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    db.execute("SELECT walship.drop_stream(%s)", [name])
    db.execute("DROP ROLE watcher; DROP ROLE nobody")


def test_streams_live_in_walship_database(db, kafka):
    db.createdb("elsewhere")
    db.execute("CREATE EXTENSION walship", dbname="elsewhere")
    err = sql_error(db, "SELECT walship.create_stream('s', %s)", [kafka.bootstrap],
                    dbname="elsewhere")
    text = message(err)
    assert 'walship streams are managed in database "postgres", not "elsewhere"' in text
    assert "walship.database" in text
    assert slots(db) == []


def test_server_settings_are_checked_with_hints(kafka):
    """wal_level, then output_plugin_libraries (on servers that have it), each refused
    with a hint that says what to change; once both are right the stream runs."""
    has_allow_list = wt.server_has_setting("output_plugin_libraries")
    plugins = ("pgoutput", "test_decoding") if has_allow_list else None
    with wt.PgCluster("settings", settings={"wal_level": "replica"},
                      output_plugins=plugins) as pg:
        pg.execute("CREATE EXTENSION walship")
        pg.execute("CREATE TABLE t (id int PRIMARY KEY)")
        err = sql_error(pg, "SELECT walship.create_stream('s', %s)", [kafka.bootstrap])
        assert "walship streams need wal_level = logical" in message(err)
        assert "Set wal_level = logical and restart the server" in message(err)

        pg.execute("ALTER SYSTEM SET wal_level = logical")
        pg.restart()
        if has_allow_list:
            err = sql_error(pg, "SELECT walship.create_stream('s', %s)", [kafka.bootstrap])
            text = message(err)
            assert 'output plugin "walship" is not allowed by output_plugin_libraries' in text
            assert "Add walship to output_plugin_libraries" in text
            assert "reload" in text
            pg.execute("ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, walship")
            pg.reload()
            time.sleep(0.5)
        pg.execute("SELECT walship.create_stream('s', %s, ARRAY['t'])", [kafka.bootstrap])
        wait_state(pg, "s", "running")


def test_without_shared_preload_libraries(kafka):
    """The plugin and decode_event work; stream functions refuse with a hint."""
    with wt.PgCluster("nopreload", shared_preload_libraries="") as pg:
        pg.execute("CREATE EXTENSION walship")
        for sql in ("SELECT walship.create_stream('s', 'localhost:9092')",
                    "SELECT walship.start_stream('s')", "SELECT walship.stop_stream('s')",
                    "SELECT * FROM walship.stream_status"):
            text = message(sql_error(pg, sql))
            assert "walship streams need walship in shared_preload_libraries" in text, sql
            assert "Add walship to shared_preload_libraries" in text
        # a stream can always be removed
        err = sql_error(pg, "SELECT walship.drop_stream('s')")
        assert 'stream "s" does not exist' in message(err)
        # the output plugin alone keeps working
        pg.execute("CREATE TABLE t (id int PRIMARY KEY)")
        pg.execute("SELECT pg_create_logical_replication_slot('plain', 'walship')")
        pg.execute("INSERT INTO t VALUES (1)")
        n = pg.scalar("SELECT count(*) FROM pg_logical_slot_get_binary_changes('plain', NULL, NULL)")
        assert n == 1
        assert "walship launcher" not in pg.log_text()


def test_failed_worker_is_restarted_with_backoff(db, kafka, unique):
    """A worker that fails (here: its slot was dropped behind walship's back) shows the
    error and is started again, 1 s, 2 s, 4 s ... apart, until it works again."""
    name = unique[:50]
    slot_name = f"walship_{name}"
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY['items'])", [name, kafka.bootstrap])
    pid = wait_state(db, name, "running")["worker_pid"]

    # terminated alone (not stopped): the launcher starts it again
    db.execute("SELECT pg_terminate_backend(%s)", [pid])
    wt.wait_for(lambda: (s := status(db, name))["state"] == "running" and s["worker_pid"] != pid,
                30, 0.1, "a new worker")

    db.execute("SELECT walship.stop_stream(%s)", [name])
    db.execute("SELECT pg_drop_replication_slot(%s)", [slot_name])
    db.execute("SELECT walship.start_stream(%s)", [name])
    s = wait_state(db, name, "error")
    assert f'replication slot "{slot_name}" of stream "{name}" was dropped outside walship' \
        in s["last_error"]
    assert f"walship.drop_stream('{name}')" in s["last_error"]  # the hint: how to recover
    first_error = s["last_error_time"]
    # it keeps trying, further and further apart
    wt.wait_for(lambda: status(db, name)["last_error_time"] > first_error, 10, 0.1, "a retry")
    wt.wait_for(lambda: db.log_text().count(f'walship stream "{name}" failed; restarting it in')
                >= 2, 10, 0.1, "the launcher to schedule a second restart")
    assert f'walship stream "{name}" failed; restarting it in 2000 ms' in db.log_text()

    # a slot made by hand starts later than where the stream stopped: still refused,
    # since what was committed in between would be missing from Kafka
    db.execute("SELECT pg_create_logical_replication_slot(%s, 'walship')", [slot_name])
    wt.wait_for(lambda: "was moved outside walship" in (status(db, name)["last_error"] or ""),
                30, 0.1, "the hand-made slot to be refused")
    # dropped and created again, the stream runs; the last error stays visible meanwhile
    db.execute("SELECT walship.drop_stream(%s)", [name])
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY['items'])", [name, kafka.bootstrap])
    wait_state(db, name, "running", timeout=60)
    db.execute("INSERT INTO items VALUES (7000, 'back')")
    wt.wait_for(lambda: status(db, name)["events_acked"] >= 1, 60, 0.1, "an ack")
    db.execute("SELECT walship.drop_stream(%s)", [name])
    assert slot_name not in slots(db)


def test_drop_extension_drops_streams_and_slots(kafka):
    with wt.PgCluster("dropext") as pg:
        pg.execute("CREATE EXTENSION walship")
        pg.execute("CREATE TABLE t (id int PRIMARY KEY)")
        pg.execute("SELECT walship.create_stream('a', %s, ARRAY['t'])", [kafka.bootstrap])
        pg.execute("SELECT walship.create_stream('b', %s)", [kafka.bootstrap])
        pid = wait_state(pg, "a", "running")["worker_pid"]
        # rolled back: everything stays
        with pg.connect(autocommit=False) as conn:
            conn.execute("DROP EXTENSION walship")
            conn.rollback()
        assert slots(pg) == ["walship_a", "walship_b"]
        wait_state(pg, "a", "running")
        pg.execute("DROP EXTENSION walship")
        assert slots(pg) == []
        wt.wait_for(lambda: pg.scalar("SELECT count(*) FROM pg_stat_activity "
                                      "WHERE backend_type = 'walship stream'") == 0,
                    10, 0.1, "stream workers to exit")
        assert pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]) == 0
        # and it can come back
        pg.execute("CREATE EXTENSION walship")
        pg.execute("SELECT walship.create_stream('a', %s, ARRAY['t'])", [kafka.bootstrap])
        wait_state(pg, "a", "running")


OPTIONS_HINT = ('Options of the walship output plugin are name=value pairs; see "Output plugin '
                'options" in walship\'s documentation.')


@pytest.mark.parametrize("plugin_options, stream_options, sqlstate, text", [
    ([("format", "xml")], {"format": "xml"}, "22023",
     'invalid value "xml" for option "format": expected protobuf or json'),
    ([("include-before", "maybe")], {"include_before": "maybe"}, "22023",
     'invalid value "maybe" for option "include-before"'),
    ([("uuid-as-text", "text")], {"uuid_as_text": "text"}, "22023",
     'invalid value "text" for option "uuid-as-text": expected a boolean'),
    ([("source-commit-lsn", "always")], {"source_commit_lsn": "always"}, "22023",
     'invalid value "always" for option "source-commit-lsn": expected a boolean'),
    ([("exclude-tables", "public.a"), ("exclude-tables", "public.b")],
     {"exclude_tables": "public.a", "exclude-tables": "public.b"}, "42601",
     'conflicting or redundant options: "exclude-tables"'),
])
def test_a_bad_option_reads_the_same_everywhere(db, kafka, plugin_options, stream_options,
                                                sqlstate, text):
    """The same bad option gives the same message, SQLSTATE and hint from the SQL decoding
    functions, pg_recvlogical and create_stream (which adds only the stream as context)."""
    slot = "same_error"
    db.execute("SELECT pg_create_logical_replication_slot(%s, 'walship')", [slot])
    try:
        args = ", ".join(["%s"] * (2 * len(plugin_options)))
        flat = [x for pair in plugin_options for x in pair]
        sql_err = sql_error(db, f"SELECT count(*) FROM pg_logical_slot_peek_binary_changes("
                                f"%s, NULL, NULL, {args})", [slot, *flat])
        recv = subprocess.run(
            [db.bin("pg_recvlogical"), "-h", db.host, "-p", str(db.port), "-U", db.user,
             "-d", "postgres", "-S", slot, "--start", "--no-loop", "-f", "/dev/null",
             *[a for k, v in plugin_options for a in ("-o", f"{k}={v}")]],
            capture_output=True, text=True, timeout=60)
    finally:
        db.execute("SELECT pg_drop_replication_slot(%s)", [slot])
    stream_err = sql_error(db, "SELECT walship.create_stream('s', %s, NULL, %s::jsonb)",
                           [kafka.bootstrap, json.dumps(stream_options)])

    for err in (sql_err, stream_err):
        assert err.diag.sqlstate == sqlstate, message(err)
        assert err.diag.message_primary.startswith(text), message(err)
        assert err.diag.message_hint == OPTIONS_HINT, message(err)
    assert sql_err.diag.message_primary == stream_err.diag.message_primary
    assert "for stream \"s\"" in stream_err.diag.context
    assert recv.returncode != 0
    assert text in recv.stderr and OPTIONS_HINT in recv.stderr, recv.stderr
    assert streams(db) == [] and slots(db) == []
