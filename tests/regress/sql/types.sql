-- Every column type, both formats: values must round-trip exactly.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS walship;
-- The text forms of time, timetz, interval (and of arrays and ranges of them) are
-- their output functions', which follow the decoding session's settings.
SET timezone = 'UTC';
SET datestyle = 'ISO, MDY';
SET intervalstyle = 'postgres';

CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a integer, b text);

CREATE TABLE alltypes (
    id integer PRIMARY KEY,
    c_int2 int2, c_int4 int4, c_int8 int8, c_oid oid,
    c_numeric numeric, c_numeric_p numeric(10,3),
    c_float4 float4, c_float8 float8,
    c_bool boolean,
    c_text text, c_varchar varchar(10), c_char char(5), c_name name,
    c_bytea bytea, c_uuid uuid, c_json json, c_jsonb jsonb,
    c_date date, c_time time, c_timetz timetz,
    c_timestamp timestamp, c_timestamptz timestamptz, c_interval interval,
    c_int_array integer[], c_text_array text[],
    c_enum mood, c_domain posint, c_composite pair, c_range int4range, c_inet inet,
    c_big text
);

/*
 * Columns of a decoded protobuf row whose value differs from the table's: each
 * value is converted back and compared with the stored one (text forms exactly,
 * as the type's output function writes them).
 */
CREATE FUNCTION pg_temp.mismatches(tbl regclass, rowid integer, cols jsonb)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    c jsonb;
    kind text;
    expr text;
    ok boolean;
BEGIN
    FOR c IN SELECT * FROM jsonb_array_elements(cols) LOOP
        SELECT k INTO kind FROM jsonb_object_keys(c->'value') k;
        expr := CASE kind
            WHEN 'is_null' THEN '%1$s IS NULL'
            WHEN 'int64_value' THEN '%1$s::text::numeric = $1::numeric'
            WHEN 'double_value' THEN '%1$s::float8 = $1::float8'
            WHEN 'bool_value' THEN '%1$s = $1::boolean'
            WHEN 'string_value' THEN 'format(''%%s'', %1$s) = $1'
            WHEN 'numeric' THEN 'format(''%%s'', %1$s) = $1'
            WHEN 'json' THEN 'format(''%%s'', %1$s) = $1'
            WHEN 'bytes_value' THEN '%1$s = decode($1, ''base64'')'
            WHEN 'uuid' THEN 'decode(replace(%1$s::text, ''-'', ''''), ''hex'') = decode($1, ''base64'')'
            WHEN 'date_days' THEN
                'CASE WHEN %1$s = ''infinity'' THEN 2147483647
                      WHEN %1$s = ''-infinity'' THEN -2147483648
                      ELSE %1$s - date ''1970-01-01'' END = $1::integer'
            WHEN 'timestamp_us' THEN
                'CASE WHEN %1$s = ''infinity'' THEN 9223372036854775807
                      WHEN %1$s = ''-infinity'' THEN -9223372036854775808
                      ELSE extract(epoch FROM %1$s) * 1000000 END = $1::numeric'
            WHEN 'timestamptz_us' THEN
                'CASE WHEN %1$s = ''infinity'' THEN 9223372036854775807
                      WHEN %1$s = ''-infinity'' THEN -9223372036854775808
                      ELSE extract(epoch FROM %1$s) * 1000000 END = $1::numeric'
            -- an array: its shape as array_dims() prints it, and its elements' texts in order
            WHEN 'array' THEN
                'coalesce(array_dims(%1$s), '''') = coalesce((
                     SELECT string_agg(format(''[%%s:%%s]'', lb, lb + d - 1), '''' ORDER BY o)
                       FROM (SELECT d::integer AS d, o,
                                    coalesce(($1::jsonb->''lower_bounds''->>(o::integer - 1))::integer,
                                             1) AS lb
                               FROM jsonb_array_elements_text(coalesce($1::jsonb->''dims'', ''[]''))
                                    WITH ORDINALITY AS t(d, o)) dims), '''')
                 AND (SELECT coalesce(array_agg(x::text), ''{}'') FROM unnest(%1$s) x)
                     IS NOT DISTINCT FROM
                     (SELECT coalesce(array_agg(CASE WHEN el ? ''is_null'' THEN NULL
                                                     ELSE (SELECT v FROM jsonb_each_text(el) kv(k, v))
                                                END ORDER BY o), ''{}'')
                        FROM jsonb_array_elements(coalesce($1::jsonb->''elements'', ''[]''))
                             WITH ORDINALITY AS t(el, o))'
            ELSE 'false' END;
        EXECUTE format('SELECT ' || expr || ' FROM ' || tbl || ' WHERE id = $2',
                       quote_ident(c->>'name'))
           INTO ok USING c->'value'->>kind, rowid;
        IF ok IS NOT TRUE THEN
            RETURN NEXT format('%s: %s', c->>'name', left((c->'value')::text, 80));
        END IF;
    END LOOP;
END $$;

SELECT 'init' FROM pg_create_logical_replication_slot('types', 'walship');

-- ordinary values, a 1 MB TOAST-ed text among them
INSERT INTO alltypes VALUES (1,
    12345, 123456789, 1234567890123, 4000000000,
    '12345678901234567890.123456789', 3.14159,
    3.14, 2.718281828459045,
    true,
    'héllo wörld ✓', 'varchar', 'ab', 'a_name',
    '\x000102ff00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '{"b": 1,  "a": [1, 2, null]}', '{"b": 1,  "a": [1, 2, null]}',
    '2024-02-29', '13:14:15.123456', '13:14:15.5+05:30',
    '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123456+02', '1 year 2 mons 3 days 04:05:06.789',
    '{1,NULL,3}', '{"a b",NULL,"c,d","\"q\"",""}',
    'happy', 42, '(7,"x y")', '[1,10)', '192.168.1.5/24',
    (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 32768) i));
-- limits and special values
INSERT INTO alltypes VALUES (2,
    -32768, -2147483648, -9223372036854775808, 0,
    'NaN', -9999999.999,
    'NaN', 'NaN',
    false,
    '', '', '', '',
    '', '00000000-0000-0000-0000-000000000000',
    '[]', '{}',
    '0044-03-15 BC', '00:00:00', '00:00:00-12',
    '4713-11-24 00:00:00 BC', '1970-01-01 00:00:00+00', '-178000000 years',
    '{}', '{}',
    'sad', 1, '(,)', 'empty', '::1',
    NULL);
INSERT INTO alltypes VALUES (3,
    32767, 2147483647, 9223372036854775807, 4294967295,
    'Infinity', 0,
    '-Infinity', 'Infinity',
    NULL,
    E'tab\there "quotes" \\ back\nslash', 'ÿ', 'abcde', 'x',
    '\x00', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
    '"just a string"', 'null',
    'infinity', '24:00:00', '23:59:59.999999+15:59',
    'infinity', '-infinity', '178000000 years',
    '{{1,2},{3,4}}', '{NULL}',
    'ok', 2147483647, '(-1,"")', '(,)', '2001:db8::1/64',
    NULL);
INSERT INTO alltypes VALUES (4,
    1, 1, 1, 1,
    '-Infinity', 1.5,
    1.0e-45, -1.7976931348623157e308,
    true,
    'x', 'y', 'z', 'n',
    '\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '{"n": 1.000}', '{"n": 1.000}',
    '-infinity', '12:00', '12:00+00',
    '-infinity', 'infinity', '-1 day -00:00:01',
    '{-1}', '{"{}"}',
    'happy', 3, '(1,a)', '[-5,5]', '10.0.0.0/8',
    NULL);
-- the largest timestamps do not fit microseconds since 1970 in 64 bits: text form
INSERT INTO alltypes (id, c_timestamp, c_timestamptz) VALUES
    (5, '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00');
-- every column NULL
INSERT INTO alltypes (id) VALUES (6);

-- protobuf: every inserted value round-trips
SELECT (e->'after'->'columns'->0->'value'->>'int64_value')::integer AS id,
       jsonb_array_length(e->'after'->'columns') AS columns,
       (SELECT count(*) FROM pg_temp.mismatches('alltypes',
            (e->'after'->'columns'->0->'value'->>'int64_value')::integer,
            e->'after'->'columns')) AS mismatches
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('types', NULL, NULL)) s
 ORDER BY 1;

-- protobuf: what each kind of column looks like (row 2 and 3: the special values)
SELECT c->>'name' AS name, c->>'type_name' AS type_name, c->'value' AS value
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('types', NULL, NULL)) s,
       jsonb_array_elements(e->'after'->'columns') c
 WHERE e->'after'->'columns'->0->'value'->>'int64_value' IN ('1', '2', '3')
   AND c->>'name' <> 'c_big'
 ORDER BY e->'after'->'columns'->0->'value'->>'int64_value', c->>'name';

-- protobuf: type OIDs of the built-in types, element type names of arrays
SELECT c->>'name' AS name, (c->>'type_oid')::oid::regtype AS type
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('types', NULL, NULL) LIMIT 1) s,
       jsonb_array_elements(e->'after'->'columns') c;

-- the 1 MB value arrives whole
SELECT length(c->'value'->>'string_value') AS length,
       md5(c->'value'->>'string_value') = (SELECT md5(c_big) FROM alltypes WHERE id = 1) AS same
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('types', NULL, NULL) LIMIT 1) s,
       jsonb_array_elements(e->'after'->'columns') c
 WHERE c->>'name' = 'c_big';

-- JSON (Debezium): the same rows
SELECT (e->'after'->>'id')::integer AS id, (e->'after') - 'c_big' AS after,
       length(e->'after'->>'c_big') AS big_length,
       md5(e->'after'->>'c_big') = (SELECT md5(c_big) FROM alltypes WHERE id = 1) AS big_same
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_peek_binary_changes('types', NULL, NULL,
                                                   'format', 'json', 'json-schema', 'false')) s
 ORDER BY 1;

-- JSON: text, bytes and integers equal the table's
SELECT a.id,
       e->'after'->>'c_text' IS NOT DISTINCT FROM a.c_text AS text_ok,
       e->'after'->>'c_char' IS NOT DISTINCT FROM format('%s', a.c_char)
           OR a.c_char IS NULL AS char_ok,
       decode(e->'after'->>'c_bytea', 'base64') IS NOT DISTINCT FROM a.c_bytea AS bytea_ok,
       (e->'after'->>'c_int8')::bigint IS NOT DISTINCT FROM a.c_int8 AS int8_ok,
       (e->'after'->>'c_uuid')::uuid IS NOT DISTINCT FROM a.c_uuid AS uuid_ok,
       (e->'after'->>'c_jsonb')::jsonb IS NOT DISTINCT FROM a.c_jsonb AS jsonb_ok,
       e->'after'->>'c_json' IS NOT DISTINCT FROM a.c_json::text AS json_ok
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_peek_binary_changes('types', NULL, NULL,
                                                   'format', 'json', 'json-schema', 'false')) s
  JOIN alltypes a ON a.id = (e->'after'->>'id')::integer
 ORDER BY 1;

SELECT count(*) AS consumed FROM pg_logical_slot_get_binary_changes('types', NULL, NULL);

-- UPDATE: the new row round-trips; the TOAST-ed value it did not touch is not in the
-- WAL and says so
UPDATE alltypes SET c_text = 'changed', c_int_array = '{7}' WHERE id = 1;
SELECT e->>'op' AS op,
       (SELECT array_agg(m) FROM pg_temp.mismatches('alltypes', 1, e->'after'->'columns') m) AS mismatches,
       e->'before' IS NULL AS no_before
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('types', NULL, NULL)) s;
SELECT e->'after'->>'c_text' AS c_text, e->'after'->'c_int_array' AS c_int_array,
       e->'after'->>'c_big' AS c_big
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('types', NULL, NULL,
                                                  'format', 'json', 'json-schema', 'false')) s;

-- DELETE: the old row logs the replica identity (the primary key); Debezium JSON writes
-- every field of the table, the others null, whatever the session decoded before
DELETE FROM alltypes WHERE id = 2;
SELECT e->>'op' AS op, e->'before' AS before, e->'key' AS key, e->'after' IS NULL AS no_after
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('types', NULL, NULL)) s;
SELECT e->>'op' AS op, (e->'before') - 'c_big' AS before, e->'after' AS after
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('types', NULL, NULL,
                                                  'format', 'json', 'json-schema', 'false')) s;

-- TRUNCATE
TRUNCATE alltypes;
SELECT e->>'op' AS op, e->'source'->'truncated_tables' AS truncated
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_peek_binary_changes('types', NULL, NULL)) s;
SELECT e->>'op' AS op, e->'source'->>'table' AS tbl, e->'before' AS before, e->'after' AS after
  FROM (SELECT convert_from(data, 'UTF8')::jsonb AS e
          FROM pg_logical_slot_get_binary_changes('types', NULL, NULL,
                                                  'format', 'json', 'json-schema', 'false',
                                                  'truncate', 'on')) s;

-- The same interval under another IntervalStyle: the text follows the session.
INSERT INTO alltypes (id, c_interval) VALUES (7, '1 day 02:03:04');
SET intervalstyle = 'iso_8601';
SELECT c->'value' AS c_interval
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_get_binary_changes('types', NULL, NULL)) s,
       jsonb_array_elements(e->'after'->'columns') c
 WHERE c->>'name' = 'c_interval';
RESET intervalstyle;

-- An array of a domain: the array stores the domain's OID as its element type, its
-- elements are the base type's values (one and two dimensions, a NULL element).
CREATE TABLE domarr (id integer PRIMARY KEY, v posint[]);
INSERT INTO domarr VALUES (1, '{1,NULL,3}'), (2, '{{4,5},{6,7}}'), (3, '{}');
SELECT (e->'after'->'columns'->0->'value'->>'int64_value')::integer AS id,
       (SELECT count(*) FROM pg_temp.mismatches('domarr',
            (e->'after'->'columns'->0->'value'->>'int64_value')::integer,
            e->'after'->'columns')) AS mismatches,
       e->'after'->'columns'->1->>'type_name' AS type_name,
       e->'after'->'columns'->1->'value' AS value
  FROM (SELECT walship.decode_event(data) AS e
          FROM pg_logical_slot_get_binary_changes('types', NULL, NULL)) s
 ORDER BY 1;
DROP TABLE domarr;

SELECT 'stop' FROM pg_drop_replication_slot('types');
DROP TABLE alltypes;
DROP TYPE pair;
DROP DOMAIN posint;
DROP TYPE mood;
