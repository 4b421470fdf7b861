-- Schema changes between and inside decoded transactions: every event describes the
-- table as it was when the change was made.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE FUNCTION pg_temp.names(r jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(format('%s %s=%s', c->>'type_name', c->>'name',
                                      CASE WHEN c->'value' ? 'is_null' THEN 'NULL'
                                           ELSE c->'value'->>(SELECT k FROM jsonb_object_keys(c->'value') k)
                                      END), ', '), '-')
      FROM jsonb_array_elements(r) c
$$;

CREATE TABLE evolving (id integer PRIMARY KEY, a text, b integer);
ALTER TABLE evolving REPLICA IDENTITY FULL;
INSERT INTO evolving VALUES (1, 'one', 1);
SELECT 'init' FROM pg_create_logical_replication_slot('ddl', 'walship');

INSERT INTO evolving VALUES (2, 'two', 2);
ALTER TABLE evolving ADD COLUMN c text DEFAULT 'filled';   -- no rewrite: old rows lack c
UPDATE evolving SET b = 10 WHERE id = 1;                   -- old tuple without c
ALTER TABLE evolving DROP COLUMN a;
INSERT INTO evolving VALUES (3, 3, 'three');
ALTER TABLE evolving ALTER COLUMN b TYPE bigint;           -- rewrite
UPDATE evolving SET b = b + 1 WHERE id = 3;
BEGIN;                                                     -- DDL inside the transaction
INSERT INTO evolving VALUES (4, 4, 'four');
ALTER TABLE evolving RENAME COLUMN c TO d;
INSERT INTO evolving VALUES (5, 5, 'five');
ALTER TABLE evolving ADD COLUMN e numeric(5,1);
UPDATE evolving SET e = 2.5 WHERE id = 5;
COMMIT;
DELETE FROM evolving WHERE id = 2;

SELECT e->>'op' AS op, pg_temp.names(e->'before'->'columns') AS before,
       pg_temp.names(e->'after'->'columns') AS after
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_get_binary_changes('ddl', NULL, NULL)) s;

SELECT 'stop' FROM pg_drop_replication_slot('ddl');
DROP TABLE evolving;
