-- Options: each one does what it says; an unknown option or a bad value is an
-- ERROR naming it.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE TABLE opt (id integer PRIMARY KEY, v text);
SELECT 'init' FROM pg_create_logical_replication_slot('options', 'walship');
INSERT INTO opt VALUES (1, 'a');
UPDATE opt SET id = 2;
DELETE FROM opt;

-- unknown options and bad values
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'no-such-option', 'on');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'format', 'xml');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'include-transaction', 'maybe');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'origin', 'local');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'tables', 'opt');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'topic-prefix', 'a/b');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'format', 'json', 'format', 'json');
-- option names are exact
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'FORMAT', 'json');
-- values are case-insensitive keywords; booleans take PostgreSQL's spellings
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL,
    'format', 'JSON', 'include-before', 'off', 'truncate', 'yes', 'partition-root', '0');

-- format
SELECT DISTINCT walship.decode_event(data) IS NOT NULL AS protobuf_by_default
  FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL);
SELECT DISTINCT walship.decode_event(data) IS NOT NULL AS protobuf
  FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'format', 'protobuf');
SELECT convert_from(data, 'UTF8')::jsonb->'payload'->>'op' AS json_with_schema
  FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'format', 'json');

-- include-before: the old row of an UPDATE or DELETE, on by default
SELECT e->>'op' AS op, e ? 'before' AS has_before, e->'key' IS NOT NULL AS has_key
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL,
                                                   'include-before', 'off')) s;
SELECT e->>'op' AS op, e->'before' AS before
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'format', 'json',
                                                   'json-schema', 'false',
                                                   'include-before', 'false')) s;

-- topic-prefix: Debezium's logical name (source.name); the database name by default
SELECT DISTINCT convert_from(data, 'UTF8')::jsonb->'source'->>'name' AS name
  FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'format', 'json',
                                           'json-schema', 'false', 'topic-prefix', 'shop');
SELECT DISTINCT convert_from(data, 'UTF8')::jsonb->'source'->>'name' = current_database() AS default_name
  FROM pg_logical_slot_peek_binary_changes('options', NULL, NULL, 'format', 'json',
                                           'json-schema', 'false');

-- options are checked even when there is nothing to decode
SELECT count(*) FROM pg_logical_slot_get_binary_changes('options', NULL, NULL);
SELECT count(*) FROM pg_logical_slot_get_binary_changes('options', NULL, NULL, 'format', 'yaml');

SELECT 'stop' FROM pg_drop_replication_slot('options');
DROP TABLE opt;
