-- walship 0.1.0

\echo Use "CREATE EXTENSION walship" to load this file. \quit

-- ===========================================================================
-- Output plugin support (plugin/, extension/decode_event.c)
-- ===========================================================================

-- One protobuf walship.v1.ChangeEvent (format=protobuf) rendered as JSON.
CREATE FUNCTION walship.decode_event(event bytea)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'walship_decode_event'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION walship.decode_event(bytea) IS
'renders one protobuf walship.v1.ChangeEvent (output plugin format=protobuf) as jsonb';

-- ===========================================================================
-- End of output plugin support
-- ===========================================================================

-- ===========================================================================
-- Streams (extension/launcher.c, stream_*.c): catalog, control, status
-- Needs shared_preload_libraries = 'walship'; see walship.database.
-- ===========================================================================

-- Who may do what (README, "Security"):
--   walship_admin  creates, starts, stops and drops streams, reads walship.streams;
--                  granted by a superuser. The role is cluster-wide and outlives the
--                  extension, like the roles PostgreSQL predefines.
--   pg_monitor     reads walship.stream_status (never the options).
--   PUBLIC         calls walship.decode_event.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'walship_admin') THEN
        CREATE ROLE walship_admin NOLOGIN;
    END IF;
END
$$;
COMMENT ON ROLE walship_admin IS
'manages walship streams: create_stream, start_stream, stop_stream, drop_stream';
GRANT USAGE ON SCHEMA walship TO PUBLIC;

-- One row per stream. The launcher keeps one worker running per enabled row.
-- options may hold Kafka credentials (options->'kafka', or the paths of files that hold
-- them): only walship_admin reads the table, and only walship's functions, running as
-- its owner, change it. Status, logs and errors never show secret values.
CREATE TABLE walship.streams (
    name text PRIMARY KEY CHECK (name ~ '^[a-z0-9_]{1,55}$'),
    bootstrap_servers text NOT NULL,
    tables text[],                       -- NULL: every table; names as given, canonical
    -- the same tables by identity: a renamed table keeps streaming (regclass, so that
    -- pg_dump writes names and a restore finds the new OIDs); stream_status lists the
    -- dropped ones
    table_oids regclass[] CHECK (cardinality(table_oids) = cardinality(tables)),
    options jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE walship.streams IS
'walship streams: one logical slot walship_<name> and one background worker each';
SELECT pg_catalog.pg_extension_config_dump('walship.streams', '');
REVOKE ALL ON walship.streams FROM PUBLIC;

-- One row per table a stream snapshots or has snapshotted (docs/snapshots.md): the
-- relation read (a leaf partition, or the partitioned table with partition-root), and
-- how far its snapshot got. The worker moves last_key on once Kafka has acknowledged a
-- chunk, so after any crash it continues from there.
CREATE TABLE walship.snapshots (
    stream text NOT NULL REFERENCES walship.streams (name) ON DELETE CASCADE,
    table_oid regclass NOT NULL,
    table_name text NOT NULL,            -- "schema.table" when it was requested
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'running', 'done', 'failed')),
    -- the key of the last row of the last acknowledged chunk, each column's text form;
    -- NULL: from the start
    last_key text[],
    rows_emitted bigint NOT NULL DEFAULT 0,
    chunks bigint NOT NULL DEFAULT 0,
    -- times a worker continued this table where an earlier one left it
    resumes integer NOT NULL DEFAULT 0,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    error text,
    PRIMARY KEY (stream, table_oid)
);
COMMENT ON TABLE walship.snapshots IS
'walship snapshots: per stream and table, its state and the key it has reached';
SELECT pg_catalog.pg_extension_config_dump('walship.snapshots', '');
REVOKE ALL ON walship.snapshots FROM PUBLIC;

CREATE FUNCTION walship.create_stream(name text, bootstrap_servers text,
                                      tables text[] DEFAULT NULL,
                                      options jsonb DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'walship_create_stream'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION walship.create_stream(text, text, text[], jsonb) IS
'creates a stream: its slot walship_<name>, its catalog row, and starts its worker';

CREATE FUNCTION walship.alter_stream(name text, tables text[] DEFAULT NULL,
                                     options jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'walship_alter_stream'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION walship.alter_stream(text, text[], jsonb) IS
'changes a stream''s tables (added ones are snapshotted per snapshot_mode) or options; '
'its worker restarts from the slot when the transaction commits';

CREATE FUNCTION walship.snapshot(stream text, tables text[] DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'walship_snapshot'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION walship.snapshot(text, text[]) IS
'snapshots some (or all) tables of a stream again, online, while it streams';

CREATE FUNCTION walship.start_stream(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'walship_start_stream'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION walship.start_stream(text) IS
'enables a stream; its worker resumes from the slot';

CREATE FUNCTION walship.stop_stream(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'walship_stop_stream'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION walship.stop_stream(text) IS
'disables a stream and waits for its worker to flush to Kafka and exit';

CREATE FUNCTION walship.drop_stream(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'walship_drop_stream'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION walship.drop_stream(text) IS
'stops a stream, then drops its slot and its catalog row';

-- The shared-memory side of every stream; stream_status() adds catalog and slot.
CREATE FUNCTION walship._stream_runtime(
    OUT name text, OUT state text, OUT worker_pid integer,
    OUT events_produced bigint, OUT bytes_produced bigint, OUT events_acked bigint,
    OUT in_flight bigint, OUT last_commit_time timestamptz, OUT last_ack_time timestamptz,
    OUT last_error text, OUT last_error_time timestamptz, OUT worker_started_at timestamptz,
    OUT dead_letters bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'walship_stream_runtime'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION walship.stream_status(
    OUT name text, OUT state text, OUT enabled boolean, OUT worker_pid integer,
    OUT slot_name name, OUT confirmed_flush_lsn pg_lsn, OUT current_lsn pg_lsn,
    OUT lag_bytes numeric, OUT events_produced bigint, OUT bytes_produced bigint,
    OUT events_acked bigint, OUT in_flight bigint, OUT last_commit_time timestamptz,
    OUT last_ack_time timestamptz, OUT last_error text, OUT last_error_time timestamptz,
    OUT dead_letters bigint, OUT dropped_tables text[],
    OUT snapshot_state text, OUT snapshot_table text, OUT snapshot_rows bigint,
    OUT snapshot_tables_done integer, OUT snapshot_tables_total integer,
    OUT snapshot_finished_at timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE
AS $$
    -- first, so that it refuses without shared_preload_libraries even with no streams
    SELECT count(*) FROM walship._stream_runtime();
    WITH now_lsn AS (
        SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
                    ELSE pg_catalog.pg_current_wal_lsn() END AS lsn
    )
    SELECT s.name,
           CASE WHEN NOT s.enabled THEN
                    CASE WHEN r.worker_pid IS NOT NULL THEN 'stopping' ELSE 'stopped' END
                WHEN r.state IS NULL OR r.state = 'stopped' THEN 'starting'
                ELSE r.state END,
           s.enabled,
           r.worker_pid,
           ('walship_' || s.name)::name,
           ps.confirmed_flush_lsn,
           n.lsn,
           pg_catalog.pg_wal_lsn_diff(n.lsn, ps.confirmed_flush_lsn),
           coalesce(r.events_produced, 0), coalesce(r.bytes_produced, 0),
           coalesce(r.events_acked, 0), coalesce(r.in_flight, 0),
           r.last_commit_time, r.last_ack_time, r.last_error, r.last_error_time,
           coalesce(r.dead_letters, 0),
           -- tables are followed by OID: renamed ones keep streaming, dropped ones are here
           ARRAY(SELECT t.name FROM unnest(s.tables, s.table_oids) AS t(name, oid)
                  WHERE t.oid IS NOT NULL
                    AND NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = t.oid)),
           -- the latest snapshot: failed if a table failed, running while one is left
           CASE WHEN sn.total IS NULL THEN 'none'
                WHEN sn.failed > 0 THEN 'failed'
                WHEN sn.done < sn.total THEN 'running'
                ELSE 'done' END,
           sn.current_table, coalesce(sn.rows, 0), coalesce(sn.done, 0)::integer,
           coalesce(sn.total, 0)::integer,
           CASE WHEN sn.done = sn.total THEN sn.finished END
      FROM walship.streams s
      CROSS JOIN now_lsn n
      LEFT JOIN walship._stream_runtime() r ON r.name = s.name
      LEFT JOIN pg_catalog.pg_replication_slots ps ON ps.slot_name = 'walship_' || s.name
      LEFT JOIN LATERAL (
          SELECT count(*) AS total,
                 count(*) FILTER (WHERE x.state IN ('done', 'failed')) AS done,
                 count(*) FILTER (WHERE x.state = 'failed') AS failed,
                 sum(x.rows_emitted)::bigint AS rows,
                 max(x.finished_at) AS finished,
                 (SELECT y.table_name FROM walship.snapshots y
                   WHERE y.stream = s.name AND y.state = 'running'
                   ORDER BY y.started_at LIMIT 1) AS current_table
            FROM walship.snapshots x
           WHERE x.stream = s.name
          HAVING count(*) > 0) sn ON true
     ORDER BY s.name
$$;
COMMENT ON FUNCTION walship.stream_status() IS
'per-stream state, worker, slot position, lag, Kafka counters and last error';

CREATE VIEW walship.stream_status AS SELECT * FROM walship.stream_status();

-- create_stream stays executable by PUBLIC on purpose: it checks walship_admin itself,
-- after hiding the calling statement (its options may hold secrets), whereas a refused
-- EXECUTE would log the statement, secrets and all.
REVOKE ALL ON FUNCTION walship.alter_stream(text, text[], jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION walship.snapshot(text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION walship.start_stream(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION walship.stop_stream(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION walship.drop_stream(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION walship._stream_runtime() FROM PUBLIC;
REVOKE ALL ON FUNCTION walship.stream_status() FROM PUBLIC;
REVOKE ALL ON walship.stream_status FROM PUBLIC;
-- Stream administrators: the functions (which check the role again themselves) and
-- the catalog, read-only.
GRANT EXECUTE ON FUNCTION walship.alter_stream(text, text[], jsonb) TO walship_admin;
GRANT EXECUTE ON FUNCTION walship.snapshot(text, text[]) TO walship_admin;
GRANT EXECUTE ON FUNCTION walship.start_stream(text) TO walship_admin;
GRANT EXECUTE ON FUNCTION walship.stop_stream(text) TO walship_admin;
GRANT EXECUTE ON FUNCTION walship.drop_stream(text) TO walship_admin;
GRANT SELECT ON walship.streams TO walship_admin;
GRANT SELECT ON walship.snapshots TO walship_admin;
GRANT EXECUTE ON FUNCTION walship._stream_runtime() TO walship_admin;
GRANT EXECUTE ON FUNCTION walship.stream_status() TO walship_admin;
GRANT SELECT ON walship.stream_status TO walship_admin;
-- Monitoring roles see status (never options, which may hold secrets).
GRANT SELECT (name, enabled, tables, table_oids) ON walship.streams TO pg_monitor;
GRANT SELECT ON walship.snapshots TO pg_monitor;
GRANT EXECUTE ON FUNCTION walship._stream_runtime() TO pg_monitor;
GRANT EXECUTE ON FUNCTION walship.stream_status() TO pg_monitor;
GRANT SELECT ON walship.stream_status TO pg_monitor;

-- ===========================================================================
-- End of streams
-- ===========================================================================
