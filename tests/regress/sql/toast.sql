-- TOAST: large values arrive whole; an UPDATE that leaves a TOAST-ed value alone does
-- not carry it, and says so (it is neither NULL nor a value).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE TABLE doc (id integer PRIMARY KEY, title text, body text, note text);
-- EXTERNAL: out of line and uncompressed, so a 10 kB value is TOAST-ed for sure
ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL;
SELECT 'init' FROM pg_create_logical_replication_slot('toast', 'walship');

INSERT INTO doc VALUES (1, 'first', repeat('0123456789', 1000), NULL);
INSERT INTO doc VALUES (2, 'second', repeat('abc', 400000), 'compressed');  -- 1.2 MB
UPDATE doc SET title = 'first, renamed' WHERE id = 1;     -- body untouched
UPDATE doc SET body = body || '!' WHERE id = 1;           -- body rewritten
UPDATE doc SET note = NULL, title = 'second, renamed' WHERE id = 2;

-- protobuf: the flag, and the whole values where they are in the WAL
SELECT e->>'op' AS op, c->>'name' AS name,
       CASE WHEN c->'value' ? 'string_value'
            THEN format('%s chars, md5 %s', length(c->'value'->>'string_value'),
                        left(md5(c->'value'->>'string_value'), 8))
            ELSE (c->'value')::text END AS value
  FROM (SELECT row_number() OVER () AS n, walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('toast', NULL, NULL)) s,
       jsonb_array_elements(e->'after'->'columns') c
 ORDER BY n, c->>'name';

-- the values are those of the table
SELECT id, length(body) AS length, left(md5(body), 8) AS md5 FROM doc ORDER BY id;

-- JSON: Debezium's placeholder for a value it does not have
SELECT e->>'op' AS op, e->'after'->>'id' AS id, e->'after'->>'title' AS title,
       CASE WHEN length(e->'after'->>'body') > 40
            THEN format('%s chars', length(e->'after'->>'body'))
            ELSE e->'after'->>'body' END AS body
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('toast', NULL, NULL,
                                                  'format', 'json', 'json-schema', 'false')) s;

-- REPLICA IDENTITY FULL: the old row is logged whole, TOAST-ed values included
ALTER TABLE doc REPLICA IDENTITY FULL;
UPDATE doc SET title = 'first, again' WHERE id = 1;
DELETE FROM doc WHERE id = 2;
SELECT e->>'op' AS op, c->>'name' AS name,
       CASE WHEN c->'value' ? 'string_value'
            THEN format('%s chars', length(c->'value'->>'string_value'))
            ELSE (c->'value')::text END AS before_value
  FROM (SELECT row_number() OVER () AS n, walship.decode_event(data) AS e
          FROM pg_logical_slot_get_binary_changes('toast', NULL, NULL)) s,
       jsonb_array_elements(e->'before'->'columns') c
 ORDER BY n, c->>'name';

SELECT 'stop' FROM pg_drop_replication_slot('toast');
DROP TABLE doc;
