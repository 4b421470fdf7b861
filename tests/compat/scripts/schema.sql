-- The tables of the compatibility suite (tests/compat). Both engines stream them:
-- walship (walship.create_stream) and the real Debezium PostgreSQL connector. Every
-- table is listed in tests/compat/scenarios.py (TABLES), which decides which pairs of
-- streams carry it. Run by psql with ON_ERROR_STOP in database postgres.

CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a integer, b text);

-- One column per type of the type table in docs/plugin.md, all nullable.
CREATE TABLE types (
    id          integer PRIMARY KEY,
    c_smallint  smallint,
    c_int       integer,
    c_bigint    bigint,
    c_oid       oid,
    c_real      real,
    c_double    double precision,
    c_bool      boolean,
    c_text      text,
    c_varchar   varchar(20),
    c_char      char(5),
    c_name      name,
    c_bytea     bytea,
    c_uuid      uuid,
    c_json      json,
    c_jsonb     jsonb,
    c_xml       xml,
    c_date      date,
    c_time0     time(0),
    c_time3     time(3),
    c_time4     time(4),
    c_time      time,
    c_timetz    timetz,
    c_ts0       timestamp(0),
    c_ts3       timestamp(3),
    c_ts4       timestamp(4),
    c_ts        timestamp,
    c_tstz0     timestamptz(0),
    c_tstz3     timestamptz(3),
    c_tstz      timestamptz,
    c_interval  interval,
    c_numeric   numeric,
    c_num10_2   numeric(10, 2),
    c_num5      numeric(5),
    c_num38_10  numeric(38, 10),
    c_int_arr   integer[],
    c_bigint_arr bigint[],
    c_text_arr  text[],
    c_bool_arr  boolean[],
    c_float_arr double precision[],
    c_num_arr   numeric[],
    c_uuid_arr  uuid[],
    c_date_arr  date[],
    c_int_2d    integer[][],
    c_enum      mood,
    c_domain    posint,
    c_money     money,
    c_bit       bit(3),
    c_bit1      bit(1),
    c_varbit    bit varying(8),
    c_inet      inet,
    c_cidr      cidr,
    c_macaddr   macaddr,
    c_point     point,
    c_int4range int4range,
    c_tsvector  tsvector,
    c_composite pair
);

-- The same types NOT NULL: a DELETE under REPLICA IDENTITY DEFAULT logs only the key,
-- and Debezium fills the other required fields of "before" with zero values.
CREATE TABLE types_notnull (
    id          integer PRIMARY KEY,
    c_smallint  smallint NOT NULL,
    c_int       integer NOT NULL,
    c_bigint    bigint NOT NULL,
    c_real      real NOT NULL,
    c_double    double precision NOT NULL,
    c_bool      boolean NOT NULL,
    c_text      text NOT NULL,
    c_bytea     bytea NOT NULL,
    c_uuid      uuid NOT NULL,
    c_jsonb     jsonb NOT NULL,
    c_date      date NOT NULL,
    c_time3     time(3) NOT NULL,
    c_time      time NOT NULL,
    c_timetz    timetz NOT NULL,
    c_ts3       timestamp(3) NOT NULL,
    c_ts        timestamp NOT NULL,
    c_tstz      timestamptz NOT NULL,
    c_interval  interval NOT NULL,
    c_numeric   numeric NOT NULL,
    c_num10_2   numeric(10, 2) NOT NULL,
    c_int_arr   integer[] NOT NULL,
    c_text_arr  text[] NOT NULL,
    c_enum      mood NOT NULL
);

-- numeric NaN and infinities: not in the decimal.handling.mode=precise pairs
-- (Debezium cannot encode them as a Decimal).
CREATE TABLE numeric_special (
    id          integer PRIMARY KEY,
    c_numeric   numeric,
    c_num10_2   numeric(10, 2),
    c_num_arr   numeric[]
);

-- Column defaults: nullable with a default, NOT NULL with a default, expressions.
CREATE TABLE defaults (
    id          integer PRIMARY KEY,
    n_int       integer DEFAULT 42,
    nn_int      integer NOT NULL DEFAULT 7,
    n_text      text DEFAULT 'dflt',
    nn_text     text NOT NULL DEFAULT 'required',
    n_bool      boolean DEFAULT true,
    n_num       numeric(6, 2) DEFAULT 1.50,
    n_double    double precision DEFAULT 2.5,
    n_date      date DEFAULT '2024-01-02',
    n_ts        timestamp DEFAULT '2024-01-02 03:04:05.678',
    n_tstz      timestamptz DEFAULT now(),
    n_enum      mood DEFAULT 'ok',
    n_uuid      uuid DEFAULT '00000000-0000-0000-0000-000000000001',
    n_serial    bigserial,
    no_default  integer
);

-- TOAST: values stored out of line (EXTERNAL: no compression), under REPLICA IDENTITY
-- DEFAULT and FULL.
CREATE TABLE toast_default (
    id          integer PRIMARY KEY,
    small       integer,
    big_text    text,
    big_bytea   bytea,
    big_arr     text[],
    big_jsonb   jsonb
);
ALTER TABLE toast_default ALTER COLUMN big_text SET STORAGE EXTERNAL,
    ALTER COLUMN big_bytea SET STORAGE EXTERNAL, ALTER COLUMN big_arr SET STORAGE EXTERNAL,
    ALTER COLUMN big_jsonb SET STORAGE EXTERNAL;

CREATE TABLE toast_full (LIKE toast_default INCLUDING ALL);
ALTER TABLE toast_full REPLICA IDENTITY FULL;

-- Primary-key changes, single and composite keys.
CREATE TABLE pk_single (id integer PRIMARY KEY, v text);
CREATE TABLE pk_composite (a integer, b text, v text, PRIMARY KEY (a, b));

-- No primary key: REPLICA IDENTITY FULL (walship needs a replica identity), and a
-- unique index as the replica identity.
CREATE TABLE nokey_full (a integer, b text);
ALTER TABLE nokey_full REPLICA IDENTITY FULL;
CREATE TABLE ri_index (code text NOT NULL, v integer);
CREATE UNIQUE INDEX ri_index_code ON ri_index (code);
ALTER TABLE ri_index REPLICA IDENTITY USING INDEX ri_index_code;

-- TRUNCATE of one table and of two at once.
CREATE TABLE trunc_a (id integer PRIMARY KEY, v text);
CREATE TABLE trunc_b (id integer PRIMARY KEY, v text);

-- A partitioned table: changes arrive as the partitions' (publish_via_partition_root
-- and walship's partition_root are off by default).
CREATE TABLE part (id integer, region text, v text, PRIMARY KEY (id, region))
    PARTITION BY LIST (region);
CREATE TABLE part_eu PARTITION OF part FOR VALUES IN ('eu');
CREATE TABLE part_us PARTITION OF part FOR VALUES IN ('us');

-- Names with characters Kafka forbids in a topic name.
CREATE TABLE "Bad Name!" (id integer PRIMARY KEY, v text);
CREATE TABLE "Ünïcode" (id integer PRIMARY KEY, v text);
CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema"."dots.and-dashes" (id integer PRIMARY KEY, v text);

-- Several tables in one transaction (transaction metadata, ordering).
CREATE TABLE orders (id integer PRIMARY KEY, customer text, amount numeric(10, 2));
CREATE TABLE order_lines (order_id integer, line integer, item text, PRIMARY KEY (order_id, line));

-- The end marker: the last transaction of the script; when both engines have it in
-- Kafka and confirmed, everything before it is there too.
CREATE TABLE compat_end (id integer PRIMARY KEY, note text);
