"""walship as an attacker would try it (README, "Security"):

- no stream setting can run a command in the server (librdkafka's kinit shell command);
- a Kafka secret never shows in the server log, pg_stat_activity, the status view, an
  error, a pg_dump of a role that is not walship_admin, or what logical decoding of
  walship's own catalog yields; a secret given in the file form appears nowhere at all;
- the privilege table of docs/security.md, role by role;
- a slot dropped or moved by someone else while its stream did not run is reported,
  with how to recover, instead of streaming on with a gap.
"""

from __future__ import annotations

import json
import os
import pwd
import threading
import time
from pathlib import Path

import psycopg
import pytest

import walship_testlib as wt

status = wt.stream_status

SECRET = "Inl1ne-S3cret-7a1f"        # given inline in a stream's options
FILE_SECRET = "F1le-S3cret-93cd"     # only ever in a file the server reads
HIDDEN = "statement text hidden by walship"

ROLES = {
    "sec_admin": "LOGIN IN ROLE walship_admin",  # neither superuser nor REPLICATION
    "sec_monitor": "LOGIN IN ROLE pg_monitor",
    "sec_plain": "LOGIN",
    "sec_repl": "LOGIN REPLICATION",
}


def connect(pg, user: str):
    return psycopg.connect(host=pg.host, port=pg.port, user=user, dbname="postgres",
                           autocommit=True, connect_timeout=10)


def run_as(pg, user: str, sql: str, params=None) -> list[tuple]:
    with connect(pg, user) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []


def error_of(pg, user: str, sql: str, params=None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        run_as(pg, user, sql, params)
    return info.value


def full_text(err: psycopg.Error) -> str:
    d = err.diag
    return " | ".join(x for x in (d.message_primary, d.message_detail, d.message_hint,
                                  d.context) if x)


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def wait_state(pg, name, state, timeout=30):
    return wt.wait_for(lambda: (s := status(pg, name)) and s["state"] == state and s,
                       timeout, 0.1, f"stream {name} to be {state}")


def pg_dump(pg, user: str):
    return pg._run([pg.bin("pg_dump"), "-h", pg.host, "-p", str(pg.port), "-U", user,
                    "-d", "postgres"], check=False, timeout=120)


def assert_no_secret_in_log(pg, *secrets):
    log = pg.log_text()
    for secret in secrets:
        assert secret not in log, f"{secret!r} is in the server log"


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION walship")
    pg.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
    for role, attributes in ROLES.items():
        pg.execute(f"CREATE ROLE {role} {attributes}")
    # a secret file as an administrator would keep it: readable by the server only
    secrets = pg.base_dir / "secrets"
    secrets.mkdir()
    (secrets / "kafka.pw").write_text(FILE_SECRET + "\n")
    (secrets / "empty").write_text("")
    (secrets / "bad_compression").write_text(FILE_SECRET)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (secrets, *secrets.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
    for path in secrets.iterdir():
        path.chmod(0o600)
    secrets.chmod(0o700)
    pg.secret_file = str(secrets / "kafka.pw")
    pg.secrets_dir = secrets
    return pg


# --------------------------------------------------------------------------------------
# No command runs from a stream's settings


def marker_path() -> Path:
    path = Path("/tmp") / f"walship-injected-{os.getpid()}-{time.monotonic_ns()}"
    assert not path.exists()
    return path


@pytest.mark.parametrize("prop, template", [
    ("sasl.kerberos.principal", "x; id > {marker}; #"),        # the report's exact input
    ("sasl.kerberos.principal", "$(id > {marker})"),
    ("sasl.kerberos.principal", "`id > {marker}`"),
    ("sasl.kerberos.principal", "x' && id > {marker} && '"),
    ("sasl.kerberos.principal", "x\nid > {marker}"),
    ("sasl.kerberos.principal", "--help; id > {marker}"),
    ("sasl.kerberos.keytab", "/x\"; id > {marker}; \""),
    ("sasl.kerberos.keytab", "/x$(id > {marker})"),
    ("sasl.kerberos.keytab", "/x' ; id > {marker} ; '"),
    ("sasl.kerberos.keytab", "x; id > {marker}"),
])
def test_kerberos_values_that_reach_a_shell_are_refused(db, kafka, prop, template):
    marker = marker_path()
    kafka_props = {"security.protocol": "sasl_plaintext", "sasl.kerberos.keytab": "/x",
                   "sasl.kerberos.principal": "x"}
    kafka_props[prop] = template.format(marker=marker)
    options = json.dumps({"kafka": kafka_props})
    # literal SQL, as in the report
    err = error_of(db, "postgres", f"SELECT walship.create_stream('inj', "
                                   f"{sql_literal(kafka.bootstrap)}, ARRAY['items'], "
                                   f"{sql_literal(options)})")
    text = full_text(err)
    assert f'Kafka property "{prop}"' in text and "shell" in text
    assert db.execute("SELECT count(*) FROM walship.streams")[0][0] == 0
    time.sleep(0.5)
    assert not marker.exists()


def test_a_catalog_row_written_behind_walships_back_cannot_run_a_command(db, kafka):
    """Even a superuser's direct INSERT into walship.streams goes through the same checks
    when the worker reads it: the stream fails, nothing runs."""
    marker = marker_path()
    options = {"kafka": {"security.protocol": "sasl_plaintext", "sasl.mechanism": "GSSAPI",
                         "sasl.kerberos.keytab": "/x",
                         "sasl.kerberos.principal": f"x; id > {marker}; #"}}
    db.execute("INSERT INTO walship.streams (name, bootstrap_servers, tables, options) "
               "VALUES ('behind', %s, ARRAY['public.items'], %s::jsonb)",
               [kafka.bootstrap, json.dumps(options)])
    db.execute("SELECT pg_create_logical_replication_slot('walship_behind', 'walship')")
    s = wait_state(db, "behind", "error")
    assert 'Kafka property "sasl.kerberos.principal"' in s["last_error"]
    time.sleep(1)
    assert not marker.exists()
    db.execute("SELECT walship.drop_stream('behind')")


def test_kinit_runs_walships_own_command_whatever_else_is_set(db, kafka):
    """With GSSAPI, librdkafka runs the kinit command at once. Only walship's template
    runs, substituting only the (checked) principal and keytab: a shell-laden value in
    any other property is inert."""
    marker = marker_path()
    evil = f"x; id > {marker}; #"
    options = {"kafka": {"security.protocol": "sasl_plaintext", "sasl.mechanism": "GSSAPI",
                         "sasl.kerberos.principal": "walship@EXAMPLE.COM",
                         "sasl.kerberos.keytab": "/nonexistent/walship.keytab",
                         "sasl.kerberos.service.name": evil, "sasl.username": evil,
                         "client.id": "x_id_marker"}}
    db.execute("SELECT walship.create_stream('kinit', %s, ARRAY['items'], %s::jsonb)",
               [kafka.bootstrap, json.dumps(options)])
    try:
        # kinit is not installed here: its failure shows walship's command was the one run
        # (the keytab's path shows as ***: names with "key" are treated as secrets)
        wt.wait_for(lambda: "kinit -R -t '***' -k 'walship@EXAMPLE.COM' || kinit -t '***' "
                            "-k 'walship@EXAMPLE.COM'" in db.log_text(),
                    30, 0.2, "librdkafka to run walship's kinit command")
        time.sleep(1)
        assert not marker.exists()
    finally:
        db.execute("SELECT walship.drop_stream('kinit')")


@pytest.mark.parametrize("prop, value, says", [
    ("sasl.kerberos.kinit.cmd", "id", "run a command"),
    ("plugin.library.paths", "/tmp/evil.so", "load code"),
    ("ssl.engine.location", "/tmp/evil.so", "load code"),
    ("ssl.providers", "/tmp/evil", "not paths"),
    ("internal.termination.signal", "9", "signals"),
    ("offset.store.path", "/tmp/offsets", "writes no files"),
    ("offset.store.method", "file", "writes no files"),
])
def test_properties_that_load_code_write_files_or_signal_are_refused(db, kafka, prop, value,
                                                                     says):
    err = error_of(db, "postgres", "SELECT walship.create_stream('refused', %s, NULL, %s)",
                   [kafka.bootstrap, json.dumps({"kafka": {prop: value}})])
    assert f'Kafka property "{prop}"' in full_text(err) and says in full_text(err)


# --------------------------------------------------------------------------------------
# No secret in the log, in pg_stat_activity, in errors


def test_inline_secrets_stay_out_of_the_log_and_errors(db, kafka):
    options = json.dumps({"kafka": {"sasl.username": "walship", "sasl.password": SECRET,
                                    "sasl.mechanism": "PLAIN"}})
    call = (f"walship.create_stream('logged', {sql_literal(kafka.bootstrap)}, ARRAY['items'], "
            f"{sql_literal(options)})")
    # creating the slot logs "logical decoding found consistent point" with STATEMENT
    db.psql(f"SELECT {call};")
    wait_state(db, "logged", "running")
    log = db.log_text()
    at = log.index("logical decoding found consistent point")
    assert f"STATEMENT:  walship.create_stream(...) -- {HIDDEN}" in log[at:at + 2000]
    assert_no_secret_in_log(db, SECRET)

    # every ERROR raised inside create_stream, at top level and through SPI (a DO block,
    # whose errors carry the calling statement as CONTEXT)
    again = f"SELECT {call};"  # the stream exists already
    bad_table = call.replace("'logged'", "'other'").replace("ARRAY['items']", "ARRAY['no_such']")
    in_do = f"DO $$ BEGIN PERFORM {bad_table}; END $$;"
    for sql in (again, in_do):
        out = db._run([db.bin("psql"), "-X", "-h", db.host, "-p", str(db.port), "-U", "postgres",
                       "-d", "postgres", "-c", sql], check=False)
        assert out.returncode != 0 and "ERROR" in out.stderr
        assert SECRET not in out.stderr
    log = db.log_text()
    assert 'stream "logged" already exists' in log
    assert 'table "no_such" of stream "other" does not exist' in log
    assert_no_secret_in_log(db, SECRET)

    # the status view and its errors
    assert SECRET not in json.dumps(status(db, "logged"), default=str)
    db.execute("SELECT walship.drop_stream('logged')")


def test_pg_stat_activity_never_shows_a_secret(db, kafka):
    """Creating a slot waits for running transactions: the statement is in
    pg_stat_activity for as long as one runs, and pg_monitor members read it."""
    options = json.dumps({"kafka": {"sasl.password": SECRET}})
    sql = (f"SELECT walship.create_stream('watched', {sql_literal(kafka.bootstrap)}, NULL, "
           f"{sql_literal(options)})")
    blocker = db.connect(autocommit=False)
    creator = db.connect()
    monitor = connect(db, "sec_monitor")
    failure: list[BaseException] = []
    try:
        blocker.execute("SELECT pg_current_xact_id()")  # holds an xid the slot waits for
        pid = creator.info.backend_pid

        def create():
            try:
                creator.execute(sql)
            except BaseException as e:  # reported below
                failure.append(e)

        thread = threading.Thread(target=create)
        thread.start()
        row = wt.wait_for(lambda: (r := monitor.execute(
            "SELECT query, wait_event_type FROM pg_stat_activity WHERE pid = %s",
            [pid]).fetchone()) and r[1] == "Lock" and r, 30, 0.05,
            "create_stream to wait for the running transaction")
        assert SECRET not in row[0]
        assert HIDDEN in row[0]
        blocker.commit()
        thread.join(60)
        assert not thread.is_alive() and not failure, failure
        # after the call, too, the session shows no secret until its next statement
        row = monitor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s",
                              [pid]).fetchone()
        assert SECRET not in row[0]
    finally:
        blocker.close()
        creator.close()
        monitor.close()
    assert_no_secret_in_log(db, SECRET)
    db.execute("SELECT walship.drop_stream('watched')")


# --------------------------------------------------------------------------------------
# The file form


def test_a_secret_in_a_file_appears_nowhere(db, kafka):
    # slots that see the catalog's changes from before the stream is created
    db.execute("SELECT pg_create_logical_replication_slot('sec_td', 'test_decoding')")
    db.execute("SELECT pg_create_logical_replication_slot('sec_ws', 'walship')")
    options = {"kafka": {"sasl.username": "walship", "sasl.mechanism": "PLAIN",
                         "sasl.password": {"file": db.secret_file}}}
    db.execute("SELECT walship.create_stream('filed', %s, ARRAY['items'], %s::jsonb)",
               [kafka.bootstrap, json.dumps(options)])
    wait_state(db, "filed", "running")
    db.execute("INSERT INTO items VALUES (1, 'through a stream with a file secret')")
    wt.wait_for(lambda: status(db, "filed")["events_acked"] >= 1, 60, 0.1, "an ack")

    # the catalog holds the path, never the content
    stored = db.scalar("SELECT options::text FROM walship.streams WHERE name = 'filed'")
    assert db.secret_file in stored and FILE_SECRET not in stored
    assert FILE_SECRET not in json.dumps(status(db, "filed"), default=str)
    dump = pg_dump(db, "postgres")
    assert dump.returncode == 0, dump.stderr
    assert db.secret_file in dump.stdout and FILE_SECRET not in dump.stdout + dump.stderr

    # decoding the catalog's changes: test_decoding shows the row (with the path only);
    # walship's plugin never emits its own catalog, whatever it is asked
    td = "\n".join(r[0] for r in db.execute(
        "SELECT data FROM pg_logical_slot_get_changes('sec_td', NULL, NULL)"))
    assert "walship.streams" in td and FILE_SECRET not in td
    for opts in ("'format', 'json'", "'format', 'protobuf'",
                 "'format', 'json', 'tables', 'walship.*'"):
        out = b"".join(bytes(r[0]) for r in db.execute(
            f"SELECT data FROM pg_logical_slot_peek_binary_changes('sec_ws', NULL, NULL, {opts})"))
        assert b"streams" not in out and FILE_SECRET.encode() not in out
        assert db.secret_file.encode() not in out
    db.execute("SELECT pg_drop_replication_slot('sec_td'), pg_drop_replication_slot('sec_ws')")
    assert_no_secret_in_log(db, FILE_SECRET)
    db.execute("SELECT walship.drop_stream('filed')")


def test_the_walship_plugin_never_emits_inline_secrets_of_its_catalog(db, kafka):
    db.execute("SELECT pg_create_logical_replication_slot('sec_ws2', 'walship')")
    db.execute("SELECT walship.create_stream('inline', %s, ARRAY['items'], %s::jsonb)",
               [kafka.bootstrap, json.dumps({"kafka": {"sasl.password": SECRET}})])
    db.execute("SELECT walship.stop_stream('inline')")
    db.execute("SELECT walship.drop_stream('inline')")
    for opts in ("'format', 'json'", "'format', 'protobuf'", "'format', 'json', 'tables', "
                 "'walship.streams'", "'format', 'json', 'include-transaction', 'true'"):
        out = b"".join(bytes(r[0]) for r in db.execute(
            f"SELECT data FROM pg_logical_slot_peek_binary_changes('sec_ws2', NULL, NULL, {opts})"))
        assert SECRET.encode() not in out and b"walship.streams" not in out
    db.execute("SELECT pg_drop_replication_slot('sec_ws2')")


@pytest.mark.parametrize("value, says", [
    ({"file": "relative/kafka.pw"}, "is not an absolute path"),
    ({"file": "/nonexistent/kafka.pw"}, 'could not open file "/nonexistent/kafka.pw" of Kafka '
                                        'property "sasl.password"'),
    ({"file": 42}, 'must be a string, number, boolean or {"file": "/path"}'),
    ({"path": "/x"}, 'must be a string, number, boolean or {"file": "/path"}'),
    ({"file": "/x", "other": 1}, 'must be a string, number, boolean or {"file": "/path"}'),
    (["/x"], 'must be a string, number, boolean or {"file": "/path"}'),
    ("EMPTY", "is empty"),
    ("FIFO", "is not a regular file"),  # it could block the server, or swallow a log pipe
])
def test_file_form_mistakes_are_named_at_create_stream(db, kafka, value, says):
    if value == "EMPTY":
        value = {"file": str(db.secrets_dir / "empty")}
    if value == "FIFO":
        fifo = db.secrets_dir / "fifo"
        if not fifo.exists():
            os.mkfifo(fifo)
        value = {"file": str(fifo)}
    err = error_of(db, "postgres", "SELECT walship.create_stream('badfile', %s, NULL, %s)",
                   [kafka.bootstrap, json.dumps({"kafka": {"sasl.password": value}})])
    assert says in full_text(err) and 'stream "badfile"' in full_text(err)
    assert db.execute("SELECT count(*) FROM walship.streams")[0][0] == 0


def test_a_bad_value_read_from_a_file_is_named_but_not_shown(db, kafka):
    path = str(db.secrets_dir / "bad_compression")
    err = error_of(db, "postgres", "SELECT walship.create_stream('badvalue', %s, NULL, %s)",
                   [kafka.bootstrap, json.dumps({"kafka": {"compression.type": {"file": path}}})])
    text = full_text(err)
    assert 'Kafka property "compression.type"' in text and path in text
    assert FILE_SECRET not in text
    assert_no_secret_in_log(db, FILE_SECRET)


# --------------------------------------------------------------------------------------
# Privileges, role by role (the table in docs/security.md)


def test_privileges_role_by_role(db, kafka):
    stream_options = json.dumps({"kafka": {"sasl.password": SECRET}})
    create = "SELECT walship.create_stream('owned', %s, ARRAY['public.items'], %s::jsonb)"
    denied = psycopg.errors.InsufficientPrivilege

    # walship_admin, without superuser or REPLICATION: the whole life cycle
    run_as(db, "sec_admin", create, [kafka.bootstrap, stream_options])
    wait_state(db, "owned", "running")
    assert run_as(db, "sec_admin", "SELECT options->'kafka'->>'sasl.password' "
                                   "FROM walship.streams")[0][0] == SECRET
    assert run_as(db, "sec_admin", "SELECT state FROM walship.stream_status")[0][0] == "running"
    run_as(db, "sec_admin", "SELECT walship.stop_stream('owned')")
    run_as(db, "sec_admin", "SELECT walship.start_stream('owned')")
    # ... but only through the functions, which check what reaches the catalog
    for sql in ("UPDATE walship.streams SET options = '{}'",
                "INSERT INTO walship.streams (name, bootstrap_servers) VALUES ('x', 'h:1')",
                "DELETE FROM walship.streams"):
        with pytest.raises(denied):
            run_as(db, "sec_admin", sql)

    # the functions write the catalog as its owner: the caller's search_path must not
    # choose what they run (an "=" of walship_admin's own, before pg_catalog)
    db.execute("CREATE SCHEMA admin_own AUTHORIZATION sec_admin")
    with connect(db, "sec_admin") as conn:
        conn.execute("""
            CREATE FUNCTION admin_own.text_eq(a text, b text) RETURNS boolean
            LANGUAGE plpgsql AS $$
            BEGIN
                EXECUTE 'ALTER ROLE sec_admin SUPERUSER';
                RETURN a OPERATOR(pg_catalog.=) b;
            END $$""")
        conn.execute("CREATE OPERATOR admin_own.= (LEFTARG = text, RIGHTARG = text, "
                     "FUNCTION = admin_own.text_eq)")
        conn.execute("SET search_path = admin_own, pg_catalog")
        conn.execute("SELECT walship.stop_stream('owned')")
        conn.execute("SELECT walship.start_stream('owned')")
        # the operator is live: called as sec_admin it tries, and fails, to escalate
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT 'x'::text = 'x'::text")
    assert db.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = 'sec_admin'") is False
    db.execute("DROP SCHEMA admin_own CASCADE")

    # pg_monitor: the status view and the names, never the options
    rows = run_as(db, "sec_monitor", "SELECT name, state, last_error FROM walship.stream_status")
    assert [r[0] for r in rows] == ["owned"] and SECRET not in json.dumps(rows, default=str)
    assert run_as(db, "sec_monitor", "SELECT name, enabled FROM walship.streams") == \
        [("owned", True)]

    # not walship_admin (monitor, plain, REPLICATION): no management, no options
    for role in ("sec_monitor", "sec_plain", "sec_repl"):
        for sql, params in ((create, [kafka.bootstrap, stream_options]),
                            ("SELECT walship.start_stream('owned')", None),
                            ("SELECT walship.stop_stream('owned')", None),
                            ("SELECT walship.drop_stream('owned')", None),
                            ("SELECT options FROM walship.streams", None)):
            err = error_of(db, role, sql, params)
            assert isinstance(err, denied), (role, sql, err)
            assert SECRET not in full_text(err)
    for role in ("sec_plain", "sec_repl"):
        with pytest.raises(denied):
            run_as(db, role, "SELECT * FROM walship.stream_status")
    # refused, with the secret in the statement's text: it is not logged either
    err = error_of(db, "sec_plain", f"SELECT walship.create_stream('mine', 'h:1', NULL, "
                                    f"{sql_literal(stream_options)})")
    assert isinstance(err, denied) and 'permission denied to create stream "mine"' in str(err)
    assert "GRANT walship_admin TO sec_plain" in full_text(err)

    # everyone may decode events
    db.execute("SELECT pg_create_logical_replication_slot('sec_event', 'walship')")
    db.execute("INSERT INTO items VALUES (42, 'an event')")
    event = bytes(db.execute("SELECT data FROM pg_logical_slot_get_binary_changes("
                             "'sec_event', NULL, NULL, 'tables', 'public.items')")[0][0])
    db.execute("SELECT pg_drop_replication_slot('sec_event')")
    for role in ROLES:
        decoded = run_as(db, role, "SELECT walship.decode_event(%s)", [event])[0][0]
        assert decoded["source"]["table"] == "items"

    # EXECUTE granted by mistake still does not make a stream administrator
    db.execute("GRANT EXECUTE ON FUNCTION walship.stop_stream(text) TO sec_plain")
    err = error_of(db, "sec_plain", "SELECT walship.stop_stream('owned')")
    assert isinstance(err, denied)
    assert 'permission denied to stop stream "owned"' in full_text(err)
    assert "GRANT walship_admin TO sec_plain" in full_text(err)
    db.execute("REVOKE EXECUTE ON FUNCTION walship.stop_stream(text) FROM sec_plain")

    # pg_dump as a role that is not walship_admin (but reads the application's tables):
    # no secret, the catalog is refused
    db.execute("GRANT SELECT ON items TO sec_monitor, sec_plain, sec_repl")
    for role in ("sec_monitor", "sec_plain", "sec_repl"):
        dump = pg_dump(db, role)
        assert SECRET not in dump.stdout + dump.stderr, role
        assert dump.returncode != 0 and "permission denied for table streams" in dump.stderr
    # walship_admin dumps the catalog, as a superuser does
    db.execute("GRANT SELECT ON items TO sec_admin")
    dump = pg_dump(db, "sec_admin")
    assert dump.returncode == 0, dump.stderr
    assert "COPY walship.streams" in dump.stdout and "owned" in dump.stdout
    assert_no_secret_in_log(db, SECRET)

    run_as(db, "sec_admin", "SELECT walship.drop_stream('owned')")
    assert db.execute("SELECT count(*) FROM pg_replication_slots")[0][0] == 0


# --------------------------------------------------------------------------------------
# A slot dropped or moved by someone else


def test_a_slot_advanced_behind_a_stopped_stream_is_reported(db, kafka):
    db.execute("SELECT walship.create_stream('moved', %s, ARRAY['items'])", [kafka.bootstrap])
    wait_state(db, "moved", "running")
    db.execute("SELECT walship.stop_stream('moved')")
    db.execute("INSERT INTO items SELECT g, 'skipped' FROM generate_series(100, 199) g")
    run_as(db, "sec_repl", "SELECT pg_replication_slot_advance('walship_moved', "
                           "pg_current_wal_lsn())")
    db.execute("SELECT walship.start_stream('moved')")
    s = wait_state(db, "moved", "error")
    assert 'replication slot "walship_moved" of stream "moved" was moved outside walship' \
        in s["last_error"]
    assert "never sent to Kafka" in s["last_error"]
    assert "walship.drop_stream('moved')" in s["last_error"]  # how to recover
    # it does not stream on with the gap after its restarts either
    first = s["last_error_time"]
    wt.wait_for(lambda: status(db, "moved")["last_error_time"] > first, 15, 0.2, "a retry")
    assert status(db, "moved")["state"] == "error"
    assert "was moved outside walship" in status(db, "moved")["last_error"]
    db.execute("SELECT walship.drop_stream('moved')")
    db.execute("DELETE FROM items")


def test_a_slot_advanced_before_its_stream_ever_ran_is_reported(db, kafka):
    with db.connect(autocommit=False) as conn:
        conn.execute("SELECT walship.create_stream('never_ran', %s, ARRAY['items'])",
                     [kafka.bootstrap])
        conn.execute("SELECT walship.stop_stream('never_ran')")
        conn.commit()
    db.execute("INSERT INTO items VALUES (300, 'skipped')")
    run_as(db, "sec_repl", "SELECT pg_replication_slot_advance('walship_never_ran', "
                           "pg_current_wal_lsn())")
    db.execute("SELECT walship.start_stream('never_ran')")
    s = wait_state(db, "never_ran", "error")
    assert "was moved outside walship" in s["last_error"]
    db.execute("SELECT walship.drop_stream('never_ran')")
    db.execute("DELETE FROM items")


def test_a_slot_dropped_behind_a_stopped_stream_is_reported(db, kafka):
    db.execute("SELECT walship.create_stream('gone', %s, ARRAY['items'])", [kafka.bootstrap])
    wait_state(db, "gone", "running")
    db.execute("SELECT walship.stop_stream('gone')")
    run_as(db, "sec_repl", "SELECT pg_drop_replication_slot('walship_gone')")
    db.execute("SELECT walship.start_stream('gone')")
    s = wait_state(db, "gone", "error")
    assert 'replication slot "walship_gone" of stream "gone" was dropped outside walship' \
        in s["last_error"]
    assert "walship.drop_stream('gone')" in s["last_error"]
    db.execute("SELECT walship.drop_stream('gone')")
    # a new stream of the same name starts afresh
    db.execute("SELECT walship.create_stream('gone', %s, ARRAY['items'])", [kafka.bootstrap])
    wait_state(db, "gone", "running")
    db.execute("SELECT walship.drop_stream('gone')")


def test_untouched_slots_resume_after_stops_restarts_and_crashes(db, kafka, unique):
    """No false alarm: the slot is where the stream left it after a stop, a clean server
    restart while stopped, and a crash while running."""
    topic = f"{unique}.public.items"
    db.execute("SELECT walship.create_stream('kept', %s, ARRAY['items'], %s::jsonb)",
               [kafka.bootstrap, json.dumps({"topic_prefix": unique, "format": "json",
                                             "json_schema": False})])
    wait_state(db, "kept", "running")
    db.execute("INSERT INTO items VALUES (1, 'a')")
    wt.wait_caught_up(db, "kept")
    db.execute("SELECT walship.stop_stream('kept')")
    db.execute("INSERT INTO items VALUES (2, 'b')")
    db.execute("SELECT walship.start_stream('kept')")
    wait_state(db, "kept", "running")
    wt.wait_caught_up(db, "kept")

    db.execute("SELECT walship.stop_stream('kept')")
    db.execute("INSERT INTO items VALUES (3, 'c')")
    db.restart("fast")
    db.execute("SELECT walship.start_stream('kept')")
    wait_state(db, "kept", "running", timeout=60)
    wt.wait_caught_up(db, "kept")

    db.restart("immediate")
    db.execute("INSERT INTO items VALUES (4, 'd')")
    wait_state(db, "kept", "running", timeout=60)
    wt.wait_caught_up(db, "kept")
    # acknowledged: all of it is in the topic (with duplicates after the crash)
    keys = {json.loads(m.key)["id"] for m in wt.consume_all(kafka.bootstrap, topic, timeout=60)}
    assert keys == {1, 2, 3, 4}
    db.execute("SELECT walship.drop_stream('kept')")
    db.execute("DELETE FROM items")
