-- Logical messages (pg_logical_emit_message): off by default; messages=on streams all,
-- messages=<prefixes> those whose prefix matches.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE TABLE msg (id integer PRIMARY KEY);
SELECT 'init' FROM pg_create_logical_replication_slot('messages', 'walship');

BEGIN;
SELECT 'emitted' FROM pg_logical_emit_message(true, 'audit', 'in a transaction');
INSERT INTO msg VALUES (1);
SELECT 'emitted' FROM pg_logical_emit_message(true, 'app.event', convert_to('bytes: ' || chr(233), 'UTF8'));
COMMIT;
BEGIN;
SELECT 'emitted' FROM pg_logical_emit_message(true, 'audit', 'rolled back');
ROLLBACK;
-- a non-transactional message is decoded where it is written, committed or not
BEGIN;
SELECT 'emitted' FROM pg_logical_emit_message(false, 'audit', 'outside transactions');
ROLLBACK;
SELECT 'emitted' FROM pg_logical_emit_message(true, 'other', 'another prefix');
-- make sure the non-transactional message's WAL is flushed
SELECT 'flushed' FROM txid_current();

CREATE FUNCTION pg_temp.messages(VARIADIC options text[])
RETURNS TABLE (op text, prefix text, content text, transactional boolean, has_xid boolean)
LANGUAGE sql AS $$
    SELECT e->>'op', e->'message'->>'prefix',
           convert_from(decode(e->'message'->>'content', 'base64'), 'UTF8'),
           coalesce((e->'message'->>'transactional')::boolean, false),
           e->'source' ? 'xid'
      FROM (SELECT walship.decode_event(data) AS e
              FROM pg_logical_slot_peek_binary_changes('messages', NULL, NULL,
                                                       VARIADIC options)) s
$$;

SELECT * FROM pg_temp.messages('format', 'protobuf');
SELECT * FROM pg_temp.messages('messages', 'on');
SELECT * FROM pg_temp.messages('messages', 'audit');
SELECT * FROM pg_temp.messages('messages', 'app.*, other');
SELECT * FROM pg_temp.messages('messages', 'nosuch');
SELECT * FROM pg_temp.messages('messages', 'off');

-- JSON: Debezium's message event (op m), content in base64
SELECT e->>'op' AS op, e->'message' AS message, e->'source'->>'table' AS tbl
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('messages', NULL, NULL, 'format', 'json',
                                                  'json-schema', 'false', 'messages', 'audit')) s;

SELECT 'stop' FROM pg_drop_replication_slot('messages');
DROP TABLE msg;
