-- Partitioned tables: changes arrive for the partition a row lives in; with
-- partition-root=on they are published as the partitioned table's (its name, its
-- column order), like pgoutput's publish_via_partition_root.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE TABLE measure (id integer NOT NULL, at date NOT NULL, v text, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE measure_2024 PARTITION OF measure FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
-- a partition whose columns are in another order, with a dropped column, in another schema
CREATE SCHEMA archive;
CREATE TABLE archive.measure_old (junk integer, v text, at date NOT NULL, id integer NOT NULL);
ALTER TABLE archive.measure_old DROP COLUMN junk;
ALTER TABLE measure ATTACH PARTITION archive.measure_old FOR VALUES FROM (MINVALUE) TO ('2024-01-01');
-- two levels
CREATE TABLE measure_2025 PARTITION OF measure FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
    PARTITION BY LIST (id);
CREATE TABLE measure_2025_all PARTITION OF measure_2025 DEFAULT;

SELECT 'init' FROM pg_create_logical_replication_slot('partition', 'walship');

INSERT INTO measure VALUES (1, '2024-06-01', 'new'), (2, '2020-01-01', 'old'),
                           (3, '2025-03-01', 'deep');
UPDATE measure SET v = 'changed' WHERE id = 2;
UPDATE measure SET at = '2024-02-02' WHERE id = 2;  -- moves to another partition
DELETE FROM measure WHERE id = 3;

CREATE FUNCTION pg_temp.names(r jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(format('%s=%s', c->>'name', c->'value'->>
                             (SELECT k FROM jsonb_object_keys(c->'value') k)), ', ')
      FROM jsonb_array_elements(r) c
$$;
CREATE FUNCTION pg_temp.events(VARIADIC options text[])
RETURNS TABLE (op text, tbl text, key text, before text, after text) LANGUAGE sql AS $$
    SELECT e->>'op', (e->'source'->>'schema') || '.' || (e->'source'->>'table'),
           pg_temp.names(e->'key'), pg_temp.names(e->'before'->'columns'),
           pg_temp.names(e->'after'->'columns')
      FROM (SELECT walship.decode_event(data) AS e
              FROM pg_logical_slot_peek_binary_changes('partition', NULL, NULL,
                                                       VARIADIC options)) s
$$;

SELECT * FROM pg_temp.events('partition-root', 'off');
SELECT * FROM pg_temp.events('partition-root', 'on');

-- naming a partitioned table selects all its partitions, under the root's name with
-- partition-root, else under each partition's own
SELECT * FROM pg_temp.events('partition-root', 'on', 'tables', 'public.measure');
SELECT * FROM pg_temp.events('partition-root', 'off', 'tables', 'public.measure');
-- a partition left out by name stays out; one named alone is selected alone
SELECT * FROM pg_temp.events('tables', 'public.measure', 'exclude-tables', 'archive.measure_old');
SELECT * FROM pg_temp.events('partition-root', 'on', 'tables', 'archive.measure_old');

-- TRUNCATE: the partitioned table and its partitions are truncated together
SELECT count(*) AS consumed FROM pg_logical_slot_get_binary_changes('partition', NULL, NULL);
TRUNCATE measure;
SELECT e->'source'->>'table' AS tbl, e->'source'->'truncated_tables' AS truncated
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('partition', NULL, NULL,
                                                   'partition-root', 'off')) s;
SELECT e->'source'->>'table' AS tbl, e->'source'->'truncated_tables' AS truncated
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_get_binary_changes('partition', NULL, NULL,
                                                  'partition-root', 'on')) s;

-- JSON: Debezium's envelope names the root
INSERT INTO measure VALUES (4, '2019-09-09', 'json');
SELECT e->'source'->>'table' AS tbl, e->'after' AS after
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('partition', NULL, NULL, 'format', 'json',
                                                  'json-schema', 'false',
                                                  'partition-root', 'on')) s;

-- A partition attached later, and a root renamed, are seen from the next change on.
CREATE TABLE measure_2026 (LIKE measure);
ALTER TABLE measure ATTACH PARTITION measure_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO measure VALUES (5, '2026-06-06', 'attached');
ALTER TABLE measure RENAME TO measurement;
INSERT INTO measurement VALUES (6, '2026-07-07', 'renamed');
SELECT * FROM pg_temp.events('partition-root', 'on');

SELECT 'stop' FROM pg_drop_replication_slot('partition');
DROP TABLE measurement;
DROP SCHEMA archive;
