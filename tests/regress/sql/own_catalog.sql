-- walship's own tables are never emitted, in any mode and whatever the options say:
-- walship.streams holds Kafka credentials, and a REPLICATION role decoding with walship
-- must not read them.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE TABLE public.own_catalog_neighbour (id integer PRIMARY KEY);
SELECT 'init' FROM pg_create_logical_replication_slot('own_catalog', 'walship');
BEGIN;
INSERT INTO walship.streams (name, bootstrap_servers, options)
VALUES ('regress_secret', 'localhost:9092', '{"kafka": {"sasl.password": "regress-pw"}}');
INSERT INTO public.own_catalog_neighbour VALUES (1);
UPDATE walship.streams SET enabled = false WHERE name = 'regress_secret';
INSERT INTO walship.snapshots (stream, table_oid, table_name)
VALUES ('regress_secret', 'public.own_catalog_neighbour', 'public.own_catalog_neighbour');
DELETE FROM walship.streams WHERE name = 'regress_secret';
COMMIT;
TRUNCATE walship.streams, walship.snapshots;

CREATE FUNCTION pg_temp.streamed(VARIADIC options text[]) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(e->>'op' || ' ' || (e->'source'->>'schema') || '.' ||
                               (e->'source'->>'table'), ', '), '(none)')
      FROM (SELECT walship.decode_event(data) AS e
              FROM pg_logical_slot_peek_binary_changes('own_catalog', NULL, NULL,
                                                       VARIADIC options)) s
     WHERE e ? 'source' AND e->'source' ? 'table'
$$;

-- only the neighbour, never the catalog
SELECT pg_temp.streamed('truncate', 'true');
SELECT pg_temp.streamed('tables', 'walship.*', 'truncate', 'true');
SELECT pg_temp.streamed('tables', 'walship.streams', 'include-before', 'true');
-- nor in JSON: the secret is in no byte of the output
SELECT count(*) AS events,
       bool_or(position('regress-pw' in convert_from(data, 'UTF8')) > 0) AS secret_shown,
       bool_or(position('streams' in convert_from(data, 'UTF8')) > 0) AS catalog_shown
  FROM pg_logical_slot_peek_binary_changes('own_catalog', NULL, NULL, 'format', 'json',
                                           'truncate', 'true');

SELECT 'stop' FROM pg_drop_replication_slot('own_catalog');
DROP TABLE public.own_catalog_neighbour;
