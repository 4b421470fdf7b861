-- tables / exclude-tables: which tables are streamed (schema.table patterns, * wildcard,
-- quoted names exact).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;

CREATE SCHEMA shop;
CREATE SCHEMA audit;
CREATE TABLE shop.orders (id integer PRIMARY KEY);
CREATE TABLE shop.order_lines (id integer PRIMARY KEY);
CREATE TABLE shop.customers (id integer PRIMARY KEY);
CREATE TABLE audit.log (id integer PRIMARY KEY);
CREATE TABLE public."Mixed Case" (id integer PRIMARY KEY);

SELECT 'init' FROM pg_create_logical_replication_slot('filters', 'walship');
BEGIN;
INSERT INTO shop.orders VALUES (1);
INSERT INTO shop.order_lines VALUES (1);
INSERT INTO shop.customers VALUES (1);
INSERT INTO audit.log VALUES (1);
INSERT INTO public."Mixed Case" VALUES (1);
COMMIT;

CREATE FUNCTION pg_temp.streamed(VARIADIC options text[]) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(e->'source'->>'schema' || '.' || (e->'source'->>'table'), ', '
                               ORDER BY e->'source'->>'schema', e->'source'->>'table'), '(none)')
      FROM (SELECT walship.decode_event(data) AS e
              FROM pg_logical_slot_peek_binary_changes('filters', NULL, NULL,
                                                       VARIADIC options)) s
$$;

SELECT pg_temp.streamed('format', 'protobuf') AS everything;
SELECT pg_temp.streamed('tables', 'shop.orders') AS one_table;
SELECT pg_temp.streamed('tables', 'shop.*') AS one_schema;
SELECT pg_temp.streamed('tables', 'shop.order*') AS prefix;
SELECT pg_temp.streamed('tables', '*.*, audit.log') AS all_tables;
SELECT pg_temp.streamed('tables', 'shop.orders,audit.log') AS list;
SELECT pg_temp.streamed('tables', 'SHOP.ORDERS') AS folded_like_sql;
SELECT pg_temp.streamed('tables', 'public."Mixed Case"') AS quoted;
SELECT pg_temp.streamed('tables', 'public.mixed case') AS unquoted_space;
SELECT pg_temp.streamed('tables', 'nosuch.*') AS no_match;
SELECT pg_temp.streamed('exclude-tables', 'audit.*') AS excluded_schema;
SELECT pg_temp.streamed('exclude-tables', 'shop.order_lines, public.*') AS excluded_list;
SELECT pg_temp.streamed('tables', 'shop.*', 'exclude-tables', 'shop.customers') AS both;

-- A filtered-out table costs its transaction nothing: no events, not even with
-- include-transaction (the transaction has no event to bracket).
SELECT count(*) AS events
  FROM pg_logical_slot_peek_binary_changes('filters', NULL, NULL,
                                           'tables', 'nosuch.*', 'include-transaction', 'on');

-- Materialized views are not tables: a concurrent refresh, which changes rows, is not
-- streamed (as with pgoutput).
CREATE MATERIALIZED VIEW shop.order_ids AS SELECT id FROM shop.orders;
CREATE UNIQUE INDEX ON shop.order_ids (id);
SELECT count(*) AS consumed FROM pg_logical_slot_get_binary_changes('filters', NULL, NULL);
INSERT INTO shop.orders VALUES (2);
REFRESH MATERIALIZED VIEW CONCURRENTLY shop.order_ids;
SELECT pg_temp.streamed('format', 'protobuf') AS no_view;
SELECT count(*) AS consumed FROM pg_logical_slot_get_binary_changes('filters', NULL, NULL);

-- Renaming a table is seen from the next change on.
INSERT INTO shop.customers VALUES (2);
ALTER TABLE shop.customers RENAME TO clients;
INSERT INTO shop.clients VALUES (3);
SELECT pg_temp.streamed('tables', 'shop.c*') AS before_and_after_rename;

SELECT 'stop' FROM pg_drop_replication_slot('filters');
DROP SCHEMA shop CASCADE;
DROP SCHEMA audit CASCADE;
DROP TABLE public."Mixed Case";
