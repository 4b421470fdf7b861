-- include-transaction: BEGIN and COMMIT events around each transaction's events
-- (Debezium's transaction metadata: status BEGIN / END with event_count).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE TABLE tx (id integer PRIMARY KEY);
CREATE TABLE tx_other (id integer PRIMARY KEY);
SELECT 'init' FROM pg_create_logical_replication_slot('transaction', 'walship');

BEGIN;
INSERT INTO tx VALUES (1), (2);
SELECT 'emitted' FROM pg_logical_emit_message(true, 'note', 'hello');
UPDATE tx SET id = 3 WHERE id = 2;
COMMIT;
INSERT INTO tx_other VALUES (1);          -- a transaction with only filtered changes
CREATE TABLE tx_ddl (id integer);         -- a transaction without row changes
BEGIN;
INSERT INTO tx VALUES (10);
SAVEPOINT s;
INSERT INTO tx VALUES (11);
ROLLBACK TO SAVEPOINT s;
INSERT INTO tx VALUES (12);
COMMIT;
BEGIN;
INSERT INTO tx VALUES (99);
ROLLBACK;                                 -- never decoded

SELECT e->>'op' AS op, e->'source'->>'table' AS tbl, e->>'event_count' AS event_count,
       e->'source' ? 'xid' AS has_xid
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('transaction', NULL, NULL,
                                                   'include-transaction', 'on',
                                                   'messages', 'on',
                                                   'exclude-tables', 'public.tx_other')) s;

-- The boundaries carry the transaction's xid and commit LSN like its events do; a
-- COMMIT goes out at the end of the commit record, so a client confirms whole transactions.
SELECT count(DISTINCT e->'source'->>'xid') AS transactions,
       count(DISTINCT e->'source'->>'commit_lsn') AS commit_lsns,
       bool_and(e->>'op' <> 'COMMIT' OR (e->'source'->>'commit_lsn')::numeric = lsn - '0/0')
           AS commit_at_commit_lsn
  FROM (SELECT lsn, walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('transaction', NULL, NULL,
                                                   'include-transaction', 'on',
                                                   'exclude-tables', 'public.tx_other')) s;

-- off by default
SELECT DISTINCT walship.decode_event(data)->>'op' AS op
  FROM pg_logical_slot_peek_binary_changes('transaction', NULL, NULL);

-- JSON: Debezium's transaction events
SELECT e->>'status' AS status, e->>'event_count' AS event_count, e->>'op' AS op,
       e->'after' AS after, e->'id' IS NOT NULL AS has_id
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('transaction', NULL, NULL, 'format', 'json',
                                                  'json-schema', 'false',
                                                  'include-transaction', 'on',
                                                  'tables', 'public.tx')) s;

SELECT 'stop' FROM pg_drop_replication_slot('transaction');
DROP TABLE tx, tx_other, tx_ddl;
