-- TRUNCATE: one event per streamed table truncated, each naming every streamed table
-- truncated together; truncate=off drops them.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE TABLE parent (id integer PRIMARY KEY);
CREATE TABLE child (id integer PRIMARY KEY, parent_id integer REFERENCES parent);
CREATE TABLE other (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
SELECT 'init' FROM pg_create_logical_replication_slot('truncate', 'walship');

INSERT INTO parent VALUES (1);
TRUNCATE parent CASCADE;
TRUNCATE other RESTART IDENTITY;
TRUNCATE child, other;

CREATE FUNCTION pg_temp.truncates(VARIADIC options text[])
RETURNS TABLE (op text, tbl text, truncated jsonb) LANGUAGE sql AS $$
    SELECT e->>'op', e->'source'->>'table', e->'source'->'truncated_tables'
      FROM (SELECT walship.decode_event(data) AS e
              FROM pg_logical_slot_peek_binary_changes('truncate', NULL, NULL,
                                                       VARIADIC options)) s
$$;

SELECT * FROM pg_temp.truncates('format', 'protobuf');
SELECT * FROM pg_temp.truncates('truncate', 'off');
SELECT * FROM pg_temp.truncates('tables', 'public.child');

-- JSON: none by default (Debezium's skipped.operations=t) ...
SELECT count(*) AS truncates
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_peek_binary_changes('truncate', NULL, NULL, 'format', 'json',
                                                   'json-schema', 'false')) s
 WHERE e->>'op' = 't';
-- ... and with truncate=on, Debezium's op t, no rows
SELECT e->>'op' AS op, e->'source'->>'table' AS tbl, e->'before' AS before, e->'after' AS after
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('truncate', NULL, NULL, 'format', 'json',
                                                  'json-schema', 'false', 'truncate', 'on')) s;

SELECT 'stop' FROM pg_drop_replication_slot('truncate');
DROP TABLE child, parent, other;
