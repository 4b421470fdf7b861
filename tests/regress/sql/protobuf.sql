-- Row changes as protobuf walship.v1.ChangeEvent (the default format), read with
-- walship.decode_event().
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE FUNCTION pg_temp.stable(event jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT event || jsonb_build_object('source',
               (event->'source') - '{xid,commit_lsn,change_lsn,commit_time_us}'::text[])
$$;

CREATE TABLE fruit (id integer PRIMARY KEY, name text NOT NULL, price numeric(6,2));
SELECT 'init' FROM pg_create_logical_replication_slot('protobuf', 'walship');

INSERT INTO fruit VALUES (1, 'apple', 1.25);
UPDATE fruit SET price = 1.50 WHERE id = 1;
UPDATE fruit SET id = 10 WHERE id = 1;
DELETE FROM fruit WHERE id = 10;

SELECT jsonb_pretty(pg_temp.stable(walship.decode_event(data)))
  FROM pg_logical_slot_peek_binary_changes('protobuf', NULL, NULL);

-- Source: the commit's LSN is what the SQL function reports, after the change's own.
BEGIN;
INSERT INTO fruit VALUES (2, 'pear', 2.00);
SELECT pg_current_xact_id()::text::bigint AS xid \gset
COMMIT;
SELECT (e->'source'->>'xid')::bigint = :xid AS xid_matches,
       (e->'source'->>'change_lsn')::numeric = (lsn - '0/0') AS change_lsn_is_slot_lsn,
       (e->'source'->>'change_lsn')::numeric < (e->'source'->>'commit_lsn')::numeric AS change_before_commit,
       (e->'source'->>'commit_time_us')::bigint
           BETWEEN (extract(epoch FROM now() - interval '1 hour') * 1000000)::bigint
               AND (extract(epoch FROM now() + interval '1 hour') * 1000000)::bigint AS commit_time
  FROM (SELECT lsn, walship.decode_event(data) AS e
          FROM pg_logical_slot_get_binary_changes('protobuf', NULL, NULL)) s
 WHERE e->>'op' = 'INSERT' AND e->'source'->>'xid' = :'xid';

-- decode_event refuses what is not one ChangeEvent, and never crashes.
SELECT walship.decode_event('');
SELECT walship.decode_event('\x00');
SELECT walship.decode_event('\xffffffffffffffffffff');
SELECT walship.decode_event(convert_to('{"op": "INSERT"}', 'UTF8'));
SELECT walship.decode_event(NULL) IS NULL AS null_in_null_out;

-- framing=varint prefixes each event with its length (a protobuf varint), for streams
-- of events.
INSERT INTO fruit VALUES (3, 'plum', 0.75);
SELECT CASE WHEN b0 < 128 THEN b0 = len - 1 ELSE (b0 - 128) + b1 * 128 = len - 2 END
           AS length_prefixed,
       walship.decode_event(substring(data FROM CASE WHEN b0 < 128 THEN 2 ELSE 3 END))->>'op'
           AS op
  FROM (SELECT data, get_byte(data, 0) AS b0, get_byte(data, 1) AS b1, length(data) AS len
          FROM pg_logical_slot_get_binary_changes('protobuf', NULL, NULL,
                                                  'framing', 'varint')) s;

SELECT 'stop' FROM pg_drop_replication_slot('protobuf');
DROP TABLE fruit;
