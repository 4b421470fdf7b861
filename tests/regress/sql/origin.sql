-- Replication origins: changes replayed by a replication tool carry their origin;
-- origin=none leaves them out (to break replication loops).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE TABLE orig (id integer PRIMARY KEY, v text);
SELECT 'init' FROM pg_create_logical_replication_slot('origin', 'walship');
SELECT 'created' FROM pg_replication_origin_create('upstream');

INSERT INTO orig VALUES (1, 'local');
SELECT 'setup' FROM pg_replication_origin_session_setup('upstream');
BEGIN;
SELECT 'xact' FROM pg_replication_origin_xact_setup('0/ABCDEF', now());
INSERT INTO orig VALUES (2, 'replayed');
SELECT 'emitted' FROM pg_logical_emit_message(true, 'replayed', 'message');
COMMIT;
SELECT 'reset' FROM pg_replication_origin_session_reset();
INSERT INTO orig VALUES (3, 'local again');

CREATE FUNCTION pg_temp.events(VARIADIC options text[])
RETURNS TABLE (op text, id text, origin text) LANGUAGE sql AS $$
    SELECT e->>'op', e->'after'->'columns'->0->'value'->>'int64_value', e->'source'->>'origin'
      FROM (SELECT walship.decode_event(data) AS e
              FROM pg_logical_slot_peek_binary_changes('origin', NULL, NULL,
                                                       VARIADIC options)) s
$$;

SELECT * FROM pg_temp.events('messages', 'on');
SELECT * FROM pg_temp.events('messages', 'on', 'origin', 'any');
SELECT * FROM pg_temp.events('messages', 'on', 'origin', 'none');

-- JSON: Debezium's source block has no origin; origin=none filters all the same
SELECT e->'after'->>'id' AS id, e->'source' ? 'origin' AS has_origin
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('origin', NULL, NULL, 'format', 'json',
                                                  'json-schema', 'false')) s;

SELECT 'stop' FROM pg_drop_replication_slot('origin');
SELECT 'dropped' FROM pg_replication_origin_drop('upstream');
DROP TABLE orig;
