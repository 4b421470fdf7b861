-- Replica identity decides what an UPDATE or DELETE carries of the old row, and
-- which columns form the key.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE FUNCTION pg_temp.names(r jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(format('%s=%s', c->>'name',
                                      CASE WHEN c->'value' ? 'is_null' THEN 'NULL'
                                           ELSE c->'value'->>(SELECT k FROM jsonb_object_keys(c->'value') k)
                                      END), ', '),
                    '-')
      FROM jsonb_array_elements(r) c
$$;
CREATE FUNCTION pg_temp.show(slot name) RETURNS TABLE (tbl text, op text, key text, before text, after text)
LANGUAGE sql AS $$
    SELECT e->'source'->>'table', e->>'op', pg_temp.names(e->'key'),
           CASE WHEN e ? 'before' THEN pg_temp.names(e->'before'->'columns') END,
           CASE WHEN e ? 'after' THEN pg_temp.names(e->'after'->'columns') END
      FROM (SELECT walship.decode_event(data) AS e
              FROM pg_logical_slot_get_binary_changes(slot, NULL, NULL)) s
$$;

CREATE TABLE ri_default (id integer PRIMARY KEY, code text, v text);
CREATE TABLE ri_index (id integer NOT NULL, code text NOT NULL, v text);
CREATE UNIQUE INDEX ri_index_code ON ri_index (code);
ALTER TABLE ri_index REPLICA IDENTITY USING INDEX ri_index_code;
CREATE TABLE ri_full_pk (id integer PRIMARY KEY, code text, v text);
ALTER TABLE ri_full_pk REPLICA IDENTITY FULL;
CREATE TABLE ri_full (id integer, code text, v text);
ALTER TABLE ri_full REPLICA IDENTITY FULL;
CREATE TABLE ri_nothing (id integer PRIMARY KEY, code text, v text);
ALTER TABLE ri_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE no_key (id integer, code text, v text);
-- a composite key, declared in another order than the columns
CREATE TABLE ri_composite (a integer, b text, v text, PRIMARY KEY (b, a));

SELECT 'init' FROM pg_create_logical_replication_slot('ri', 'walship');

INSERT INTO ri_default VALUES (1, 'a', 'x');
UPDATE ri_default SET v = 'y' WHERE id = 1;   -- key unchanged: no old row logged
UPDATE ri_default SET id = 2 WHERE id = 1;    -- key changed: DELETE old key + INSERT new key
DELETE FROM ri_default WHERE id = 2;
SELECT * FROM pg_temp.show('ri');

-- key-change=update: a key change stays one UPDATE, keyed by the new key
INSERT INTO ri_default VALUES (1, 'a', 'x');
UPDATE ri_default SET id = 2 WHERE id = 1;
DELETE FROM ri_default WHERE id = 2;
SELECT e->>'op' AS op, pg_temp.names(e->'key') AS key, pg_temp.names(e->'before'->'columns') AS before
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_get_binary_changes('ri', NULL, NULL, 'key-change', 'update')) s;

INSERT INTO ri_index VALUES (1, 'a', 'x');
UPDATE ri_index SET v = 'y';
UPDATE ri_index SET code = 'b';
DELETE FROM ri_index;
SELECT * FROM pg_temp.show('ri');

INSERT INTO ri_full_pk VALUES (1, 'a', 'x');
UPDATE ri_full_pk SET v = 'y';
DELETE FROM ri_full_pk;
INSERT INTO ri_full VALUES (1, 'a', 'x');
UPDATE ri_full SET v = NULL;
DELETE FROM ri_full;
SELECT * FROM pg_temp.show('ri');

INSERT INTO ri_nothing VALUES (1, 'a', 'x');
UPDATE ri_nothing SET id = 2;
DELETE FROM ri_nothing;
INSERT INTO no_key VALUES (1, 'a', 'x');
UPDATE no_key SET v = 'y';
DELETE FROM no_key;
SELECT * FROM pg_temp.show('ri');

INSERT INTO ri_composite VALUES (1, 'one', 'x');
UPDATE ri_composite SET a = 2;
DELETE FROM ri_composite;
SELECT * FROM pg_temp.show('ri');

-- Changing the identity takes effect from the change that follows it.
INSERT INTO ri_default VALUES (5, 'e', 'x');
ALTER TABLE ri_default REPLICA IDENTITY FULL;
UPDATE ri_default SET v = 'y';
ALTER TABLE ri_default REPLICA IDENTITY DEFAULT;
UPDATE ri_default SET v = 'z';
DELETE FROM ri_default;
SELECT * FROM pg_temp.show('ri');

-- JSON: Debezium's old row has every column of the table; those the server did not
-- log are NULL there (they are not known)
INSERT INTO ri_composite VALUES (1, 'one', 'x');
DELETE FROM ri_composite;
INSERT INTO ri_full VALUES (1, 'a', 'x');
DELETE FROM ri_full;
SELECT e->'source'->>'table' AS tbl, e->>'op' AS op, e->'before' AS before, e->'after' AS after
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('ri', NULL, NULL,
                                                  'format', 'json', 'json-schema', 'false')) s;

SELECT 'stop' FROM pg_drop_replication_slot('ri');
DROP TABLE ri_default, ri_index, ri_full_pk, ri_full, ri_nothing, no_key, ri_composite;
