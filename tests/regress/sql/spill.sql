-- A transaction larger than logical_decoding_work_mem (64kB in the test cluster) is
-- spilled to disk by the server and replayed from there at commit: every change
-- arrives, in order, TOAST-ed values included; nothing is streamed before COMMIT.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

SELECT setting AS work_mem FROM pg_settings WHERE name = 'logical_decoding_work_mem';

CREATE TABLE big (id integer PRIMARY KEY, payload text);
ALTER TABLE big ALTER COLUMN payload SET STORAGE EXTERNAL;
SELECT 'init' FROM pg_create_logical_replication_slot('spill', 'walship');

BEGIN;
INSERT INTO big SELECT i, repeat(md5(i::text), 10) FROM generate_series(1, 5000) i;
UPDATE big SET payload = repeat('x', 4000) WHERE id % 1000 = 0;  -- TOAST-ed, in WAL
DELETE FROM big WHERE id > 4990;
COMMIT;

SELECT count(*) AS events,
       count(*) FILTER (WHERE op = 'INSERT') AS inserts,
       count(*) FILTER (WHERE op = 'UPDATE') AS updates,
       count(*) FILTER (WHERE op = 'DELETE') AS deletes,
       count(DISTINCT xid) AS transactions,
       bool_and(prev_lsn IS NULL OR lsn > prev_lsn) AS in_wal_order
  FROM (SELECT e->>'op' AS op, e->'source'->>'xid' AS xid,
               (e->'source'->>'change_lsn')::numeric AS lsn,
               lag((e->'source'->>'change_lsn')::numeric) OVER (ORDER BY n) AS prev_lsn
          FROM (SELECT row_number() OVER () AS n, walship.decode_event(data) AS e
                  FROM pg_logical_slot_peek_binary_changes('spill', NULL, NULL)) s) t;

-- the server did spill
SELECT spill_txns > 0 AS spilled, spill_count > 0 AS spill_writes, stream_txns AS streamed
  FROM pg_stat_replication_slots WHERE slot_name = 'spill';

-- the rows after the transaction are what the events describe
SELECT count(*) AS rows_in_table,
       sum(length(payload)) AS payload_chars
  FROM big;
SELECT sum(length(c->'value'->>'string_value')) AS payload_chars_in_updates
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_get_binary_changes('spill', NULL, NULL)) s,
       jsonb_array_elements(e->'after'->'columns') c
 WHERE e->>'op' = 'UPDATE' AND c->>'name' = 'payload';

SELECT 'stop' FROM pg_drop_replication_slot('spill');
DROP TABLE big;
