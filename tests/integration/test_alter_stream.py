"""walship.alter_stream as a user sees it: options and tables change in place, on the
same slot, without losing an event; tables that join are snapshotted, tables that leave
stop streaming; what is refused is explained and changes nothing; a rolled-back call
leaves the stream and its worker as they were; secrets stay hidden."""

from __future__ import annotations

import json
import os
import pwd
import threading

import psycopg
import pytest

import walship_testlib as wt

status = wt.stream_status

SECRET = "hunter2-Alt3rS3cret"


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION walship")
    pg.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
    pg.execute("CREATE TABLE others (id int PRIMARY KEY, v text)")
    pg.execute("CREATE TABLE nokey (a int)")
    pg.execute("CREATE TABLE full_ident (a int); ALTER TABLE full_ident REPLICA IDENTITY FULL")
    return pg


def message(err: psycopg.Error) -> str:
    d = err.diag
    return " | ".join(x for x in (d.message_primary, d.message_detail, d.message_hint,
                                  d.context) if x)


def alter(pg, name, tables=None, options=None, notices=None):
    """alter_stream in its own transaction; the NOTICEs it raised go to ``notices``."""
    with pg.connect() as conn:
        if notices is not None:
            conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("SELECT walship.alter_stream(%s, %s, %s::jsonb)",
                     [name, tables, None if options is None else json.dumps(options)])


def row(pg, name):
    return pg.execute("SELECT tables, table_oids::text[], options, enabled FROM walship.streams "
                      "WHERE name = %s", [name])[0]


def running(pg, name, other_than=None, timeout=30):
    """The stream's worker pid once it runs (a new worker: pid other than other_than)."""
    def up():
        s = status(pg, name) or {}
        return (s.get("state") == "running" and s["worker_pid"] not in (None, other_than)
                and s["worker_pid"])
    return wt.wait_for(up, timeout, 0.05, f"stream {name} running")


def create(pg, kafka, name, tables, options):
    pg.execute("SELECT walship.create_stream(%s, %s, %s, %s::jsonb)",
               [name, kafka.bootstrap, tables, json.dumps(options)])
    return running(pg, name)


def events(kafka, event_class, topics, **kw):
    """(topic, op, id, format) of every non-tombstone record; op c/u/d/r as Debezium's."""
    ops = {1: "c", 2: "u", 3: "d", 8: "r"}
    out = []
    for m in wt.consume_all(kafka.bootstrap, topics, **kw):
        if m.value is None:
            continue
        if m.value[:1] == b"{":
            d = json.loads(m.value)
            d = d.get("payload", d)
            r = d["after"] or d["before"]
            out.append((m.topic, d["op"], r["id"], "json"))
        else:
            ev = event_class.FromString(m.value)
            r = ev.after if ev.HasField("after") else ev.before
            ident = next(c.value.int64_value for c in r.columns if c.name == "id")
            out.append((m.topic, ops[ev.op], ident, "protobuf"))
    return out


# ----------------------------------------------------------------------------------------
# refused input


@pytest.fixture(scope="module")
def fixed(db, kafka):
    """A running stream that every refused alter_stream must leave as it is."""
    name = "fixed_stream"
    create(db, kafka, name, ["items"], {"topic_prefix": "fixed"})
    return name


@pytest.mark.parametrize("case, tables, options, sqlstate, says", [
    ("unknown_stream", None, {"format": "json"}, "42704", ['stream "nope" does not exist']),
    ("bad_name", None, {"format": "json"}, "42602", ['invalid stream name "Bad-Name"']),
    ("no_such_table", ["items", "no_such_table"], None, "42P01",
     ['table "no_such_table" of stream "fixed_stream" does not exist']),
    ("keyless_table", ["nokey"], None, "55000",
     ['table "public.nokey" of stream "fixed_stream" has no replica identity']),
    ("not_snapshottable", ["items", "full_ident"], None, "55000",
     ['table public.full_ident of stream "fixed_stream" cannot be snapshotted',
      'snapshot_mode "no_data"']),
    ("empty_tables", [], None, "22023", ["must not be empty", "Pass NULL to keep"]),
    ("null_table", ["items", None], None, "22004", ["must not contain NULL"]),
    ("failover_change", None, {"failover": True}, "0A000",
     ['option "failover" of stream "fixed_stream" cannot be changed',
      'replication slot "walship_fixed_stream"', "Drop the stream and create it again"]),
    ("bad_format", None, {"format": "xml"}, "22023",
     ['invalid option "format"', 'invalid value "xml"']),
    ("unknown_option", None, {"bogus_option": 1}, "22023",
     ['invalid option "bogus_option" for stream "fixed_stream"']),
    ("bad_kafka_property", None, {"kafka": {"acks": "1"}}, "22023",
     ['Kafka property "acks" must be "all"']),
    ("bad_kafka_combination", None, {"kafka": {"linger.ms": 100, "message.timeout.ms": 50}},
     "22023", ['invalid Kafka configuration for stream "fixed_stream"', "linger.ms"]),
    ("kafka_not_object", None, {"kafka": "compression.type=lz4"}, "22023",
     ['option "kafka" of stream "fixed_stream" must be a JSON object']),
    ("options_not_object", None, [], "22023",
     ['options of stream "fixed_stream" must be a JSON object']),
    ("tables_as_option", None, {"tables": "public.items"}, "22023",
     ["alter_stream's tables argument"]),
    ("two_spellings", None, {"topic_prefix": "a", "topic-prefix": "b"}, "22023",
     ['option "topic-prefix" of stream "fixed_stream" is given twice']),
    ("bad_snapshot_mode", None, {"snapshot_mode": "sometimes"}, "22023",
     ['invalid value for option "snapshot_mode"', '"initial" or "no_data"']),
    ("bad_partitions", None, {"partitions": 0}, "22023",
     ['invalid value for option "partitions"']),
])
def test_alter_stream_refuses_bad_input_and_changes_nothing(db, kafka, fixed, case, tables,
                                                            options, sqlstate, says):
    name = {"unknown_stream": "nope", "bad_name": "Bad-Name"}.get(case, fixed)
    if case == "failover_change" and db.scalar("SHOW server_version_num") < "170000":
        sqlstate, says = "0A000", ['option "failover" of stream "fixed_stream" needs '
                                   "PostgreSQL 17"]
    before = row(db, fixed)
    pid = running(db, fixed)
    with pytest.raises(psycopg.Error) as info:
        alter(db, name, tables, options)
    err = info.value
    assert err.diag.sqlstate == sqlstate, message(err)
    for text in says:
        assert text in message(err)
    assert row(db, fixed) == before
    assert db.scalar("SELECT count(*) FROM walship.snapshots WHERE stream = %s "
                     "AND table_name LIKE '%%full_ident'", [fixed]) == 0
    assert running(db, fixed) == pid


def test_alter_stream_needs_walship_admin(db, kafka, fixed):
    db.execute("CREATE ROLE alterer LOGIN")
    try:
        db.execute("GRANT EXECUTE ON FUNCTION walship.alter_stream(text, text[], jsonb) "
                   "TO alterer")
        with psycopg.connect(host=db.host, port=db.port, user="alterer", dbname="postgres",
                             autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
                conn.execute("SELECT walship.alter_stream(%s, options => '{\"format\": "
                             "\"json\"}')", [fixed])
        assert 'permission denied to alter stream "fixed_stream"' in message(info.value)
        assert "GRANT walship_admin TO alterer" in message(info.value)
    finally:
        db.execute("DROP OWNED BY alterer; DROP ROLE alterer")


def test_secrets_given_to_alter_stream_stay_hidden(db, kafka, fixed):
    """The statement's text (which holds the secret) is in no log line, not even of the
    error a bad option raises, and not in pg_stat_activity."""
    kafka_secret = {"kafka": {"sasl.username": "u", "sasl.password": SECRET,
                              "sasl.mechanism": "PLAIN"}}
    with pytest.raises(psycopg.Error) as info:
        alter(db, fixed, None, {**kafka_secret, "format": "xml"})
    assert SECRET not in message(info.value)
    with db.connect() as conn:
        conn.execute("SELECT walship.alter_stream(%s, NULL, %s::jsonb)",
                     [fixed, json.dumps(kafka_secret)])
        seen = conn.execute("SELECT query FROM pg_stat_activity WHERE pid = "
                            "pg_backend_pid()").fetchone()[0]
        assert SECRET not in seen
    assert SECRET not in db.log_text()
    assert "statement text hidden by walship" in db.log_text()
    # back as it was: the properties removed one by one
    alter(db, fixed, None, {"kafka": {"sasl.username": None, "sasl.password": None,
                                      "sasl.mechanism": None}})
    assert row(db, fixed)[2]["kafka"] == {}
    running(db, fixed)


# ----------------------------------------------------------------------------------------
# options


def test_options_merge_over_the_stored_ones(db, kafka, unique):
    """User keys replace, null removes (back to the default), kafka merges property by
    property; the catalog keeps the canonical form. A stopped stream just gets the row."""
    name = unique[:40]
    db.execute("SELECT walship.create_stream(%s, %s, ARRAY['items'], %s::jsonb)",
               [name, kafka.bootstrap, json.dumps({
                   "topic_prefix": name, "format": "json", "json_schema": False,
                   "kafka": {"linger.ms": 5, "compression.type": "lz4"}})])
    running(db, name)
    db.execute("SELECT walship.stop_stream(%s)", [name])
    chunk = row(db, name)[2]["snapshot_chunk_size"]  # the default, kept
    notices: list[str] = []
    alter(db, name, None, {"json-schema": None, "include_before": False, "partitions": 3,
                           "snapshot-mode": "no_data",
                           "kafka": {"linger.ms": None, "batch.num.messages": 1000}},
          notices)
    assert row(db, name)[2] == {
        "plugin": {"format": "json", "topic-prefix": name, "include-before": "false"},
        "kafka": {"compression.type": "lz4", "batch.num.messages": 1000},
        "partitions": 3, "on_refused": "stop", "failover": False,
        "snapshot_mode": "no_data", "snapshot_chunk_size": chunk, "delivery": "at_least_once"}
    assert notices == []
    alter(db, name, None, {"kafka": None, "partitions": None, "format": None,
                           "include_before": None, "topic_prefix": "moved"}, notices)
    assert row(db, name)[2] == {
        "plugin": {"topic-prefix": "moved"}, "kafka": {}, "on_refused": "stop",
        "failover": False, "snapshot_mode": "no_data", "snapshot_chunk_size": chunk, "delivery": "at_least_once"}
    assert any(f'stream "{name}" moves to topics prefixed "moved"' in n for n in notices)
    assert any("changes its event format from json to protobuf" in n for n in notices)
    # stopped: no worker was started, and the same again changes nothing
    s = status(db, name)
    assert s["state"] == "stopped" and s["worker_pid"] is None and not s["enabled"]
    before = row(db, name)
    alter(db, name, None, {"topic_prefix": "moved"})
    assert row(db, name) == before
    # nothing given: nothing to do, and it says so
    notices.clear()
    alter(db, name, None, None, notices)
    assert notices == [f'alter_stream of stream "{name}" changes nothing']
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_a_format_change_takes_effect_without_losing_an_event(db, kafka, unique, event_class):
    """protobuf -> json while rows are written before, during and after the change: every
    row arrives; those written once the new worker runs are JSON."""
    name = unique[:40]
    db.execute("CREATE TABLE fmt (id int PRIMARY KEY)")
    old_pid = create(db, kafka, name, ["fmt"], {"topic_prefix": name, "snapshot_mode": "no_data"})
    db.execute("INSERT INTO fmt SELECT g FROM generate_series(1, 100) g")
    wt.wait_caught_up(db, name)

    # a writer that never stops while the stream changes
    stop = threading.Event()
    written: list[int] = []

    def writer():
        with db.connect() as conn:
            i = 1000
            while not stop.is_set():
                i += 1
                conn.execute("INSERT INTO fmt VALUES (%s)", [i])
                written.append(i)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        notices: list[str] = []
        with db.connect(autocommit=False) as conn:
            conn.add_notice_handler(lambda d: notices.append(d.message_primary))
            conn.execute("INSERT INTO fmt SELECT g FROM generate_series(101, 110) g")
            conn.execute("SELECT walship.alter_stream(%s, options => %s::jsonb)",
                         [name, json.dumps({"format": "json", "json_schema": False})])
            conn.execute("INSERT INTO fmt SELECT g FROM generate_series(111, 120) g")
            # the old worker streams on while the transaction is open
            wt.wait_for(lambda: len(written) > 50, 30, 0.05, "rows written meanwhile")
            assert status(db, name)["worker_pid"] == old_pid
            conn.commit()
        assert notices == [f'stream "{name}" changes its event format from protobuf to json']
        new_pid = running(db, name, other_than=old_pid)
        mark = len(written)
        wt.wait_for(lambda: len(written) > mark + 50, 30, 0.05, "rows written after it")
    finally:
        stop.set()
        thread.join()
    assert status(db, name)["worker_pid"] == new_pid
    db.execute("INSERT INTO fmt SELECT g FROM generate_series(201, 300) g")
    wt.wait_caught_up(db, name)

    got = events(kafka, event_class, [f"{name}.public.fmt"])
    ids = {i for _, op, i, _ in got if op == "c"}
    assert ids == set(range(1, 121)) | set(written) | set(range(201, 301))
    fmt = {}
    for _, _, i, f in got:
        fmt.setdefault(i, set()).add(f)
    assert all(fmt[i] == {"protobuf"} for i in range(1, 101))
    assert all(fmt[i] == {"json"} for i in range(201, 301))
    # committed once the new worker ran (after the append that made len(written) > mark):
    # JSON only, the old worker was gone
    assert all(fmt[i] == {"json"} for i in written[mark + 1:])
    assert status(db, name)["state"] == "running"
    db.execute("SELECT walship.drop_stream(%s)", [name])


# ----------------------------------------------------------------------------------------
# tables


def test_tables_added_stream_and_tables_removed_stop(db, kafka, unique, event_class):
    """[a, b] -> [a, c]: c's changes stream from the commit on, b's stop; with
    snapshot_mode no_data nothing is snapshotted."""
    name = unique[:40]
    for t in ("ta", "tb", "tc"):
        db.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    db.execute("INSERT INTO tc VALUES (-1)")  # before: no_data sends no read of it
    old_pid = create(db, kafka, name, ["ta", "tb"],
                     {"topic_prefix": name, "format": "json", "json_schema": False,
                      "snapshot_mode": "no_data"})
    for t in ("ta", "tb", "tc"):
        db.execute(f"INSERT INTO {t} SELECT g FROM generate_series(1, 10) g")
    wt.wait_caught_up(db, name)

    alter(db, name, ["ta", "public.tc"])
    assert row(db, name)[0] == ["public.ta", "public.tc"]
    assert row(db, name)[1] == ["ta", "tc"]
    running(db, name, other_than=old_pid)
    for t in ("ta", "tb", "tc"):
        db.execute(f"INSERT INTO {t} SELECT g FROM generate_series(11, 20) g")
    wt.wait_caught_up(db, name)

    p = f"{name}.public."
    got = events(kafka, event_class, [p + "ta", p + "tb", p + "tc"], timeout=60)
    by = {}
    for topic, op, i, _ in got:
        by.setdefault(topic[len(p):], set()).add((op, i))
    assert by == {"ta": {("c", i) for i in range(1, 21)},
                  "tb": {("c", i) for i in range(1, 11)},
                  "tc": {("c", i) for i in range(11, 21)}}
    assert db.scalar("SELECT count(*) FROM walship.snapshots WHERE stream = %s", [name]) == 0
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_snapshots_follow_the_table_list(db, kafka, unique):
    """With snapshot_mode initial a table that joins is queued for a snapshot; one that
    leaves has its pending snapshot cancelled; a stream of every table gains none."""
    name = unique[:40]
    for t in ("sa", "sb", "sc"):
        db.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    create_stopped(db, kafka, name, ["sa", "sb"])

    def queued():
        return dict(db.execute("SELECT table_name, state FROM walship.snapshots "
                               "WHERE stream = %s", [name]))
    assert queued() == {"public.sa": "pending", "public.sb": "pending"}
    notices: list[str] = []
    alter(db, name, ["sa", "sc"], None, notices)
    assert queued() == {"public.sa": "pending", "public.sc": "pending"}
    assert notices == [f'the snapshot of table public.sb in stream "{name}" is cancelled: '
                       "the table leaves the stream"]
    # a table already being snapshotted cannot join twice; nothing changes then
    with pytest.raises(psycopg.errors.ObjectInUse):
        db.execute("SELECT walship.snapshot(%s, ARRAY['sc'])", [name])
    db.execute("SELECT walship.drop_stream(%s)", [name])

    # every table -> a list: nothing joins (nokey could not be snapshotted anyway)
    create_stopped(db, kafka, name, None, snapshot_mode="no_data")
    alter(db, name, ["sa"], {"snapshot_mode": "initial"})
    assert queued() == {}
    db.execute("SELECT walship.drop_stream(%s)", [name])


def create_stopped(pg, kafka, name, tables, snapshot_mode="initial"):
    """A stream created and stopped before its worker ran."""
    with pg.connect(autocommit=False) as conn:
        conn.execute("SELECT walship.create_stream(%s, %s, %s, %s::jsonb)",
                     [name, kafka.bootstrap, tables,
                      json.dumps({"topic_prefix": name, "format": "json",
                                  "snapshot_mode": snapshot_mode})])
        conn.execute("SELECT walship.stop_stream(%s)", [name])
    return name


def test_tables_added_are_snapshotted(db, kafka, unique, event_class):
    """Rows a table held before it joined arrive as read events, its later changes as
    changes; a table that was in the stream already is not read again."""
    name = unique[:40]
    db.execute("CREATE TABLE sn_a (id int PRIMARY KEY)")
    db.execute("CREATE TABLE sn_b (id int PRIMARY KEY)")
    db.execute("INSERT INTO sn_a SELECT g FROM generate_series(1, 20) g")
    db.execute("INSERT INTO sn_b SELECT g FROM generate_series(1, 50) g")
    old_pid = create(db, kafka, name, ["sn_a"],
                     {"topic_prefix": name, "format": "json", "json_schema": False,
                      "snapshot_chunk_size": 7})
    wt.wait_for(lambda: (status(db, name) or {}).get("snapshot_state") == "done", 60, 0.2,
                "the snapshot of sn_a")
    first = db.scalar("SELECT requested_at FROM walship.snapshots WHERE stream = %s", [name])
    alter(db, name, ["sn_a", "sn_b"])
    running(db, name, other_than=old_pid)
    db.execute("INSERT INTO sn_b SELECT g FROM generate_series(51, 60) g")
    wt.wait_for(lambda: (status(db, name) or {}).get("snapshot_tables_done") == 2, 60, 0.2,
                "the snapshot of sn_b")
    wt.wait_caught_up(db, name)
    assert dict(db.execute("SELECT table_name, state FROM walship.snapshots WHERE stream = %s",
                           [name])) == {"public.sn_a": "done", "public.sn_b": "done"}
    assert db.scalar("SELECT requested_at FROM walship.snapshots WHERE stream = %s "
                     "AND table_name = 'public.sn_a'", [name]) == first
    p = f"{name}.public."
    got = events(kafka, event_class, [p + "sn_a", p + "sn_b"], timeout=60)
    a_reads = [i for t, op, i, _ in got if t == p + "sn_a" and op == "r"]
    assert sorted(a_reads) == list(range(1, 21))  # once
    b_reads = {i for t, op, i, _ in got if t == p + "sn_b" and op == "r"}
    assert set(range(1, 51)) <= b_reads <= set(range(1, 61))
    assert {i for t, op, i, _ in got if t == p + "sn_b" and op == "c"} == set(range(51, 61))
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_a_table_that_leaves_mid_snapshot_stops_there(db, kafka, unique, event_class):
    """Its running snapshot is cancelled: no read and no change of it after the new worker
    starts; the stream runs on with the other table."""
    name = unique[:40]
    db.execute("CREATE TABLE big (id int PRIMARY KEY)")
    db.execute("CREATE TABLE small (id int PRIMARY KEY)")
    db.execute("INSERT INTO big SELECT g FROM generate_series(1, 20000) g")
    old_pid = create(db, kafka, name, ["big", "small"],
                     {"topic_prefix": name, "format": "json", "json_schema": False,
                      "snapshot_chunk_size": 5})
    wt.wait_for(lambda: (db.scalar("SELECT rows_emitted FROM walship.snapshots WHERE "
                                   "stream = %s AND table_name = 'public.big' AND "
                                   "state = 'running'", [name]) or 0) > 0, 60, 0.05,
                "the snapshot of big to be under way")
    notices: list[str] = []
    alter(db, name, ["small"], None, notices)
    assert notices == [f'the snapshot of table public.big in stream "{name}" is cancelled: '
                       "the table leaves the stream"]
    running(db, name, other_than=old_pid)
    db.execute("INSERT INTO big VALUES (-1)")
    db.execute("INSERT INTO small VALUES (1)")
    wt.wait_caught_up(db, name)
    p = f"{name}.public."
    before = events(kafka, event_class, [p + "big"], timeout=30)
    assert before and all(op == "r" for _, op, _, _ in before)
    assert len(before) < 20000
    assert [(op, i) for _, op, i, _ in events(kafka, event_class, [p + "small"], timeout=30)] \
        == [("c", 1)]
    # nothing more of big arrives
    db.execute("INSERT INTO small VALUES (2)")
    wt.wait_caught_up(db, name)
    assert len(events(kafka, event_class, [p + "big"], timeout=30)) == len(before)
    s = status(db, name)
    assert s["state"] == "running" and s["last_error"] is None, s
    assert db.scalar("SELECT count(*) FROM walship.snapshots WHERE stream = %s", [name]) == 1
    db.execute("SELECT walship.drop_stream(%s)", [name])


# ----------------------------------------------------------------------------------------
# transactions


def test_a_rolled_back_alter_stream_changes_nothing(db, kafka, unique, event_class):
    """BEGIN; alter_stream; ROLLBACK (and the same in a savepoint): the row, the
    snapshots and the worker are as they were, and it streams on in its format."""
    name = unique[:40]
    db.execute("CREATE TABLE rb (id int PRIMARY KEY)")
    db.execute("CREATE TABLE rb_other (id int PRIMARY KEY)")
    pid = create(db, kafka, name, ["rb"], {"topic_prefix": name})
    wt.wait_for(lambda: (status(db, name) or {}).get("snapshot_state") == "done", 60, 0.1,
                "the (empty) initial snapshot")
    before = row(db, name)
    snapshots = db.execute("SELECT * FROM walship.snapshots WHERE stream = %s", [name])
    change = {"format": "json", "topic_prefix": "elsewhere"}

    with db.connect(autocommit=False) as conn:
        conn.execute("SELECT walship.alter_stream(%s, ARRAY['rb_other'], %s::jsonb)",
                     [name, json.dumps(change)])
        conn.rollback()
        conn.execute("SAVEPOINT s")
        conn.execute("SELECT walship.alter_stream(%s, ARRAY['rb_other'], %s::jsonb)",
                     [name, json.dumps(change)])
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.commit()
    assert row(db, name) == before
    assert db.execute("SELECT * FROM walship.snapshots WHERE stream = %s", [name]) == snapshots
    db.execute("INSERT INTO rb SELECT g FROM generate_series(1, 20) g")
    wt.wait_caught_up(db, name)
    s = status(db, name)
    assert s["state"] == "running" and s["worker_pid"] == pid
    got = events(kafka, event_class, [f"{name}.public.rb"], expected_count=20, timeout=60)
    assert {(op, f) for _, op, _, f in got} == {("c", "protobuf")}
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_a_failing_stream_restarts_at_once_with_the_corrected_options(db, kafka, unique):
    """A stream that fails (its topics cannot be created: replication factor 3 on one
    broker) waits longer and longer between restarts; once alter_stream corrects it, it
    starts at once, and the event it stopped in front of arrives."""
    name = unique[:40]
    db.execute("CREATE TABLE fx (id int PRIMARY KEY)")
    create(db, kafka, name, ["fx"], {"topic_prefix": name, "format": "json",
                                     "json_schema": False, "replication_factor": 3})
    db.execute("INSERT INTO fx VALUES (1)")
    scheduled = f'walship stream "{name}" failed; restarting it in 4000 ms'
    wt.wait_for(lambda: scheduled in db.log_text(), 60, 0.1, "a 4 s backoff")
    assert status(db, name)["state"] == "error"
    alter(db, name, None, {"replication_factor": None})
    # well before the backoff ends
    wt.wait_for(lambda: (status(db, name) or {}).get("events_acked", 0) >= 1, 3, 0.05,
                "the corrected stream to deliver")
    got = wt.consume_all(kafka.bootstrap, [f"{name}.public.fx"], expected_count=1, timeout=30)
    assert [json.loads(m.value)["op"] for m in got if m.value] == ["c"]
    db.execute("SELECT walship.drop_stream(%s)", [name])


def test_a_secret_file_that_moved_is_named_anew(db, kafka, unique):
    """The stored configuration is compared without reading its secret files, so a file
    that is gone can be replaced; any other change still reads it, and says which."""
    name = unique[:40]
    secrets = db.base_dir / f"secrets_{name}"
    secrets.mkdir()
    old, new = secrets / "old.pw", secrets / "new.pw"
    for path in (old, new):
        path.write_text(SECRET + "\n")
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (secrets, old, new):
            os.chown(path, user.pw_uid, user.pw_gid)
    kafka_options = {"sasl.username": "u", "sasl.mechanism": "PLAIN",
                     "sasl.password": {"file": str(old)}}
    pid = create(db, kafka, name, ["items"], {"topic_prefix": name, "kafka": kafka_options})
    old.unlink()
    with pytest.raises(psycopg.Error) as info:
        alter(db, name, None, {"format": "json"})
    assert f'could not open file "{old}" of Kafka property "sasl.password"' in message(info.value)
    alter(db, name, None, {"kafka": {"sasl.password": {"file": str(new)}}})
    stored = db.scalar("SELECT options::text FROM walship.streams WHERE name = %s", [name])
    assert str(new) in stored and SECRET not in stored
    running(db, name, other_than=pid)
    assert SECRET not in db.log_text()
    db.execute("SELECT walship.drop_stream(%s)", [name])
