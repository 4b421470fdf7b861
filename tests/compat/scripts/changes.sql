-- The change script of the compatibility suite: run once, by psql (ON_ERROR_STOP) in
-- database postgres, while every pair of streams (walship and Debezium) is streaming.
-- Fixed values only (no random(), no now() in row values the engines could see
-- differently: both read the same WAL anyway). TimeZone is UTC (the test clusters').
SET TimeZone = 'UTC';

-- ---------------------------------------------------------------- every type
INSERT INTO types VALUES (
    1, 12345, 123456789, 9007199254740993, 4294967295,
    3.14, 0.1, true, 'Anne', 'varchar here', 'ab', 'a_name',
    '\x00017f80ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '{"a": [1, "x"], "b": null}', '{"b": 2, "a": [1, "x"]}', '<a href="x">t</a>',
    '2024-01-02', '13:51:30', '13:51:30.123', '13:51:30.1234', '13:51:30.123456',
    '13:51:30.123789+02', '2024-01-02 03:04:05', '2024-01-02 03:04:05.123',
    '2024-01-02 03:04:05.1234', '2024-01-02 03:04:05.123456',
    '2024-01-02 03:04:05+00', '2024-01-02 03:04:05.123+00', '2024-01-02 03:04:05.123456+02',
    '1 year 2 mons 3 days 04:05:06.78', 123.45, 12345678.90, 12345, 1234567890.0123456789,
    '{1,NULL,3}', '{9007199254740993,-1}', '{"a","with,comma",NULL,"quote\"d"}', '{true,false}',
    '{1.5,-0.25}', '{1.10,2.5,NULL}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{2024-01-01,2024-12-31}',
    '{{1,2},{3,4}}', 'happy', 5, 12.34, B'101', B'1', B'1101',
    '10.0.0.1/8', '192.168.0.0/16', '08:00:2b:01:02:03', '(1.5,-2)', '[1,10)',
    'a fat cat', ROW(1, 'x'));

-- every column NULL
INSERT INTO types (id) VALUES (2);

-- special and edge values
INSERT INTO types (id, c_smallint, c_int, c_bigint, c_oid, c_real, c_double, c_text,
                   c_bytea, c_json, c_jsonb, c_date, c_time, c_time3, c_ts, c_ts3,
                   c_tstz, c_tstz0, c_interval, c_numeric, c_num10_2, c_num5,
                   c_int_arr, c_text_arr, c_float_arr, c_num_arr, c_varchar)
VALUES (3, -32768, -2147483648, -9223372036854775808, 0, 'NaN', 'Infinity', '',
        '', '[]', '{}', 'infinity', '00:00:00', '23:59:59.999', 'infinity', '-infinity',
        'infinity', '-infinity', '-1 day -02:03:04.5', -0.000001, -99999999.99, 0,
        '{}', '{}', '{NaN,Infinity,-Infinity}', '{}', 'é ü 😀 "q" \ / 	tab');

INSERT INTO types (id, c_smallint, c_int, c_bigint, c_real, c_double, c_text, c_date,
                   c_ts, c_ts3, c_tstz, c_tstz3, c_interval, c_numeric, c_num38_10)
VALUES (4, 32767, 2147483647, 9223372036854775807, '-Infinity', 1.0e21, E'line\nbreak\u0001',
        '-infinity', '-infinity', 'infinity', '-infinity', '1970-01-01 00:00:00.5+00',
        '1 mon', 12345678901234567890.123456789, -0.0000000001);

-- BC dates and times, a leap second-free far date, tiny and huge doubles
INSERT INTO types (id, c_date, c_ts, c_ts3, c_tstz, c_real, c_double, c_numeric, c_time)
VALUES (5, '0044-03-15 BC', '0044-03-15 12:00:00 BC', '0001-01-01 00:00:00 BC',
        '0044-03-15 12:00:00+00 BC', 1.0e-7, 5e-324, 1e-20, '24:00:00');

INSERT INTO types (id, c_double, c_real, c_numeric, c_interval, c_tstz)
VALUES (6, 100.0, 0.5, 100.00, '3 years', '2024-06-30 23:59:59.999999+00');

UPDATE types SET c_text = 'Anne B.', c_int = c_int + 1, c_jsonb = '{"changed": true}' WHERE id = 1;
UPDATE types SET c_text = 'was null' WHERE id = 2;
DELETE FROM types WHERE id = 2;

-- ---------------------------------------------------------------- NOT NULL types
INSERT INTO types_notnull VALUES (
    1, 1, 2, 3, 1.5, 2.5, true, 'x', '\x01', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '{"k": 1}', '2024-01-02', '01:02:03.004', '01:02:03.000004', '01:02:03+05',
    '2024-01-02 03:04:05.006', '2024-01-02 03:04:05.000006', '2024-01-02 03:04:05.000006+00',
    '2 days', 3.25, 7.5, '{1}', '{"a"}', 'sad');
UPDATE types_notnull SET c_text = 'y' WHERE id = 1;
DELETE FROM types_notnull WHERE id = 1;

-- ---------------------------------------------------------------- numeric NaN / infinity
INSERT INTO numeric_special VALUES (1, 'NaN', 'NaN', '{NaN,1.5}');
INSERT INTO numeric_special VALUES (2, 'Infinity', NULL, '{Infinity,-Infinity}');
INSERT INTO numeric_special VALUES (3, '-Infinity', 1.25, NULL);
UPDATE numeric_special SET c_num10_2 = 2.5 WHERE id = 1;
DELETE FROM numeric_special WHERE id = 2;

-- ---------------------------------------------------------------- defaults
INSERT INTO defaults (id) VALUES (1);
INSERT INTO defaults (id, n_int, n_text, n_bool, n_num, n_double, n_date, n_ts, n_tstz,
                      n_enum, n_uuid)
VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO defaults VALUES (3, 1, 2, 'a', 'b', false, 9.99, 0.5, '2000-01-01',
                             '2000-01-01 00:00:00', '2000-01-01 00:00:00+00', 'sad',
                             'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 100, 5);
UPDATE defaults SET n_int = NULL WHERE id = 3;
DELETE FROM defaults WHERE id = 1;

-- ---------------------------------------------------------------- TOAST
-- about 8 kB of incompressible text (EXTERNAL storage is uncompressed anyway)
INSERT INTO toast_default
SELECT 1, 10, string_agg(md5(i::text), '' ORDER BY i),
       decode(string_agg(md5((i + 1000)::text), '' ORDER BY i), 'hex'),
       array_agg(md5((i + 2000)::text) ORDER BY i),
       jsonb_build_object('k', string_agg(md5((i + 3000)::text), '' ORDER BY i))
FROM generate_series(1, 256) AS i;
-- not touching the TOAST columns: they are unchanged-TOAST in the WAL
UPDATE toast_default SET small = 11 WHERE id = 1;
-- touching one of them
UPDATE toast_default SET big_text = big_text || 'x', small = 12 WHERE id = 1;
-- a key change of a row with TOAST columns
UPDATE toast_default SET id = 2 WHERE id = 1;
DELETE FROM toast_default WHERE id = 2;

INSERT INTO toast_full
SELECT 1, 10, string_agg(md5(i::text), '' ORDER BY i),
       decode(string_agg(md5((i + 1000)::text), '' ORDER BY i), 'hex'),
       array_agg(md5((i + 2000)::text) ORDER BY i),
       jsonb_build_object('k', string_agg(md5((i + 3000)::text), '' ORDER BY i))
FROM generate_series(1, 256) AS i;
UPDATE toast_full SET small = 11 WHERE id = 1;
UPDATE toast_full SET big_text = 'short now', small = 12 WHERE id = 1;
DELETE FROM toast_full WHERE id = 1;

-- ---------------------------------------------------------------- key changes
INSERT INTO pk_single VALUES (1, 'one'), (2, 'two');
UPDATE pk_single SET id = 10 WHERE id = 1;
UPDATE pk_single SET id = id + 100, v = 'moved';   -- two rows, one statement
UPDATE pk_single SET v = 'same key' WHERE id = 110;
DELETE FROM pk_single WHERE id = 102;

INSERT INTO pk_composite VALUES (1, 'a', 'x'), (1, 'b', 'y');
UPDATE pk_composite SET b = 'c' WHERE a = 1 AND b = 'a';
UPDATE pk_composite SET v = 'z' WHERE a = 1 AND b = 'b';
DELETE FROM pk_composite WHERE a = 1;

-- ---------------------------------------------------------------- tables without a key
INSERT INTO nokey_full VALUES (1, 'a'), (2, NULL);
UPDATE nokey_full SET b = 'b' WHERE a = 1;
DELETE FROM nokey_full WHERE a = 2;

INSERT INTO ri_index VALUES ('k1', 1), ('k2', 2);
UPDATE ri_index SET v = 10 WHERE code = 'k1';
UPDATE ri_index SET code = 'k3' WHERE code = 'k2';
DELETE FROM ri_index WHERE code = 'k1';

-- ---------------------------------------------------------------- TRUNCATE
INSERT INTO trunc_a VALUES (1, 'a');
INSERT INTO trunc_b VALUES (1, 'b');
TRUNCATE trunc_a;
INSERT INTO trunc_a VALUES (2, 'a2');
TRUNCATE trunc_a, trunc_b;
BEGIN;
INSERT INTO trunc_b VALUES (3, 'b3');
TRUNCATE trunc_b;
INSERT INTO trunc_b VALUES (4, 'b4');
COMMIT;

-- ---------------------------------------------------------------- partitions
INSERT INTO part VALUES (1, 'eu', 'a'), (2, 'us', 'b');
UPDATE part SET v = 'a2' WHERE id = 1;
UPDATE part SET region = 'us' WHERE id = 1;    -- moves to another partition
DELETE FROM part WHERE id = 2;

-- ---------------------------------------------------------------- names Kafka forbids
INSERT INTO "Bad Name!" VALUES (1, 'bad');
UPDATE "Bad Name!" SET v = 'worse' WHERE id = 1;
INSERT INTO "Ünïcode" VALUES (1, 'ü');
INSERT INTO "My Schema"."dots.and-dashes" VALUES (1, 'dots');
DELETE FROM "My Schema"."dots.and-dashes" WHERE id = 1;

-- ---------------------------------------------------------------- transactions
BEGIN;
INSERT INTO orders VALUES (1, 'anne', 10.50);
INSERT INTO order_lines VALUES (1, 1, 'apple'), (1, 2, 'pear');
UPDATE orders SET amount = 11.00 WHERE id = 1;
COMMIT;

BEGIN;
INSERT INTO orders VALUES (2, 'bob', 1.00);
ROLLBACK;

BEGIN;
INSERT INTO orders VALUES (3, 'carl', 3.00);
SAVEPOINT s1;
INSERT INTO order_lines VALUES (3, 1, 'rolled back');
ROLLBACK TO SAVEPOINT s1;
INSERT INTO order_lines VALUES (3, 2, 'kept');
COMMIT;

-- a transaction that changes only a table no stream carries, and an empty one
CREATE TABLE not_streamed (id integer);
INSERT INTO not_streamed VALUES (1);
BEGIN;
COMMIT;

-- ---------------------------------------------------------------- logical messages
BEGIN;
INSERT INTO orders VALUES (4, 'dora', 4.00);
SELECT pg_logical_emit_message(true, 'compat', 'transactional message');
COMMIT;
SELECT pg_logical_emit_message(false, 'compat', 'non-transactional message');
SELECT pg_logical_emit_message(true, 'compat.bytes', '\x00ff10'::bytea);
SELECT pg_logical_emit_message(false, 'other', '');

-- ---------------------------------------------------------------- the end marker
INSERT INTO compat_end VALUES (1, 'end of the change script');
