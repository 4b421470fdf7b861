-- Row changes in Debezium's JSON envelope (format=json): what a Debezium consumer reads.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

-- An event with the values that change from run to run (times, xid, LSNs) taken out.
CREATE FUNCTION pg_temp.stable(event jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT (event - '{ts_ms,ts_us,ts_ns}'::text[])
        || jsonb_build_object('source',
               (event->'source') - '{ts_ms,ts_us,ts_ns,txId,lsn,sequence}'::text[])
$$;

CREATE TABLE fruit (id integer PRIMARY KEY, name text NOT NULL, price numeric(6,2));
SELECT 'init' FROM pg_create_logical_replication_slot('basic', 'walship');

INSERT INTO fruit VALUES (1, 'apple', 1.25);
UPDATE fruit SET price = 1.50 WHERE id = 1;
DELETE FROM fruit WHERE id = 1;

SELECT e->>'op' AS op, e->'before' AS before, e->'after' AS after
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_peek_binary_changes('basic', NULL, NULL,
                                                   'format', 'json', 'json-schema', 'false')) s;

-- The whole envelope of the insert, source block included.
SELECT jsonb_pretty(pg_temp.stable(convert_from(data, 'UTF8')::jsonb))
  FROM pg_logical_slot_peek_binary_changes('basic', NULL, NULL,
                                           'format', 'json', 'json-schema', 'false')
 LIMIT 1;

-- With the schema (the default), as Kafka Connect's JsonConverter writes it.
SELECT e->'schema'->>'name' AS schema_name, e->'payload'->>'op' AS op,
       e->'payload'->'after' AS after
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_peek_binary_changes('basic', NULL, NULL, 'format', 'json')) s;

-- JSON is text: the textual SQL function works too, and gives the same events.
SELECT count(*) AS same_events
  FROM pg_logical_slot_peek_changes('basic', NULL, NULL,
                                    'format', 'json', 'json-schema', 'false') t
  JOIN pg_logical_slot_peek_binary_changes('basic', NULL, NULL,
                                           'format', 'json', 'json-schema', 'false') b
    ON t.lsn = b.lsn AND t.xid = b.xid
   AND pg_temp.stable(t.data::jsonb) = pg_temp.stable(convert_from(b.data, 'UTF8')::jsonb);

-- Protobuf is binary: the textual function refuses it.
SELECT count(*) FROM pg_logical_slot_peek_changes('basic', NULL, NULL);

SELECT count(*) AS consumed FROM pg_logical_slot_get_binary_changes('basic', NULL, NULL);

-- Every event of a transaction carries the end LSN of its commit record: the LSN a
-- consumer confirms. Source names the transaction and the change's own WAL record.
BEGIN;
INSERT INTO fruit VALUES (2, 'pear', 2.00), (3, 'plum', 0.75);
SELECT pg_current_xact_id()::text::bigint AS xid \gset
COMMIT;

SELECT count(*) AS events,
       count(DISTINCT lsn) AS distinct_lsns,
       bool_and(xid::text::bigint = :xid) AS xid_matches,
       bool_and((e->'source'->>'txId')::bigint = :xid) AS source_txid_matches,
       bool_and((e->'source'->>'lsn')::numeric = (lsn - '0/0')) AS lsn_is_change_lsn,
       bool_and(e->'source'->>'db' = current_database()) AS source_db,
       bool_and(e->'source'->>'name' = current_database()) AS logical_name
  FROM (SELECT lsn, xid, convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('basic', NULL, NULL,
                                                  'format', 'json', 'json-schema', 'false')) s;

-- Defaults that fail when evaluated (the server stores them unevaluated) never stop
-- decoding: walship reads defaults, it does not run them (a's is its text, at the
-- column's scale, as Debezium reads it; b's is no literal: none).
CREATE TABLE odd_defaults (id int PRIMARY KEY, a numeric(5,2) DEFAULT 123456,
                           b int DEFAULT (1/0), c numeric(10,2) DEFAULT 1.5);
INSERT INTO odd_defaults VALUES (1, 1, 2, 3);
SELECT e->'payload'->'after' AS after,
       (SELECT f->'default' FROM jsonb_array_elements(e->'schema'->'fields'->1->'fields') f
         WHERE f->>'field' = 'c') AS c_default,
       (SELECT count(*) FROM jsonb_array_elements(e->'schema'->'fields'->1->'fields') f
         WHERE f->>'field' IN ('a', 'b') AND f ? 'default') AS odd_with_default
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('basic', NULL, NULL, 'format', 'json')) s;
DROP TABLE odd_defaults;

SELECT 'stop' FROM pg_drop_replication_slot('basic');
DROP TABLE fruit;
