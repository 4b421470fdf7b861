/*
 * walship_core.h: the one boundary between PostgreSQL-facing C and the C++ core.
 *
 * The C shim (the .c files in plugin/ and extension/) turns PostgreSQL's tuples into the flat,
 * read-only views below and calls the functions declared here. The C++ core behind
 * them never includes a PostgreSQL header, never throws across this boundary and
 * never ereports: every function returns a status, and on failure writes a message
 * into the caller's buffer, which the C side reports with ereport.
 *
 * Views are borrowed: pointers stay valid only for the duration of the call.
 */
#ifndef WALSHIP_CORE_H
#define WALSHIP_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WS_API __attribute__((visibility("default")))
#else
#define WS_API
#endif

/* Size of the error buffers the caller passes in. */
#define WS_ERRMSG_SIZE 1024

typedef enum ws_status {
    WS_OK = 0,
    WS_ERROR = 1,         /* bad input (option, value, bytes): errmsg says which */
    WS_OUT_OF_MEMORY = 2, /* std::bad_alloc was caught */
} ws_status;

typedef enum ws_op {
    WS_OP_INSERT = 1,
    WS_OP_UPDATE = 2,
    WS_OP_DELETE = 3,
    WS_OP_TRUNCATE = 4,
    WS_OP_MESSAGE = 5,
    WS_OP_BEGIN = 6,
    WS_OP_COMMIT = 7,
    WS_OP_READ = 8,
} ws_op;

/*
 * How the shim hands a value over. The shim picks the kind from the column's type
 * (one table, in plugin/rowview.c); the encoders pick the wire representation.
 */
typedef enum ws_value_kind {
    WS_VALUE_NULL = 0,
    WS_VALUE_UNCHANGED_TOAST, /* an UPDATE left this TOAST-ed value alone; it is not in WAL */
    WS_VALUE_INT64,           /* int2, int4, int8, oid: v.i64 */
    WS_VALUE_DOUBLE,          /* float4, float8: v.f64 */
    WS_VALUE_BOOL,            /* v.b */
    WS_VALUE_TEXT,            /* text, varchar, bpchar, name: data/len (UTF-8 or server encoding) */
    WS_VALUE_BYTES,           /* bytea: data/len */
    WS_VALUE_TIMESTAMP,       /* timestamp, timestamptz: v.i64 micros since Unix epoch */
    WS_VALUE_DATE,            /* date: v.i32 days since Unix epoch */
    WS_VALUE_UUID,            /* v.uuid */
    WS_VALUE_NUMERIC,         /* numeric: data/len is its exact decimal text, NaN, Infinity */
    WS_VALUE_JSON,            /* json, jsonb: data/len is the JSON text */
    WS_VALUE_TIME,            /* time: v.i64 micros since midnight; data/len = output text */
    WS_VALUE_TIMETZ,          /* timetz: v.timetz; data/len = output text */
    WS_VALUE_INTERVAL,        /* interval: v.interval; data/len = output text */
    WS_VALUE_OTHER,           /* every other type: data/len is the type's output text */
} ws_value_kind;

/* PostgreSQL's special values, as they are stored. */
#define WS_TIMESTAMP_NEG_INFINITY INT64_MIN
#define WS_TIMESTAMP_POS_INFINITY INT64_MAX
#define WS_DATE_NEG_INFINITY INT32_MIN
#define WS_DATE_POS_INFINITY INT32_MAX

typedef struct ws_value {
    ws_value_kind kind;
    union {
        int64_t i64;
        int32_t i32;
        double f64;
        bool b;
        unsigned char uuid[16];
        struct {
            int64_t time_us; /* local time of day */
            int32_t zone_s;  /* PostgreSQL's zone: seconds WEST of UTC (as stored) */
        } timetz;
        struct {
            int64_t time_us;
            int32_t days;
            int32_t months;
        } interval;
    } v;
    const char *data; /* text forms and bytes; not NUL-terminated in general */
    size_t len;
} ws_value;

typedef struct ws_column {
    const char *name;      /* NUL-terminated */
    const char *type_name; /* format_type_with_typemod(), NUL-terminated */
    uint32_t type_oid;
    int32_t typmod;         /* -1 when none */
    uint32_t elem_type_oid; /* arrays: the element's type OID (its base type); else 0 */
    bool is_key;            /* part of the replica identity (primary key or RI index) */
    bool not_null;          /* attnotnull */
    ws_value value;
} ws_column;

typedef struct ws_row {
    const ws_column *columns;
    int ncolumns;
} ws_row;

typedef struct ws_source {
    const char *database;
    const char *schema; /* NULL for transaction and message events */
    const char *table;  /* NULL for transaction and message events */
    const char *origin; /* replication origin name; NULL when none */
    uint32_t xid;
    uint64_t commit_lsn; /* end LSN of the commit record */
    uint64_t change_lsn; /* LSN of this change */
    int64_t commit_time_us;
    uint32_t relation_oid; /* lets encoders cache per-table work; 0 when no table */
} ws_source;

typedef struct ws_change {
    ws_op op;
    ws_source source;
    /*
     * The row as it is after the change (INSERT, UPDATE) and as the server logged
     * it before (UPDATE, DELETE: replica identity columns, or the whole row with
     * REPLICA IDENTITY FULL). NULL when absent. Key columns are those with is_key in
     * `after` (INSERT, UPDATE) or `before` (DELETE).
     */
    const ws_row *before;
    const ws_row *after;
    /* TRUNCATE: every relation truncated together, "schema.table" each */
    const char *const *truncated_tables;
    int ntruncated;
    bool truncate_cascade;
    bool truncate_restart_identity;
    /* MESSAGE */
    const char *message_prefix;
    const char *message_content;
    size_t message_len;
    bool message_transactional;
    /* COMMIT: row events the transaction produced */
    uint64_t event_count;
} ws_change;

/* ------------------------------------------------------------------------- */
/* Options: one parser for plugin options (pg_recvlogical -o, SQL decoding     */
/* functions) and for a stream's options.                                      */

typedef struct ws_options ws_options;

typedef enum ws_format { WS_FORMAT_PROTOBUF = 0, WS_FORMAT_JSON = 1 } ws_format;
typedef enum ws_origin_filter { WS_ORIGIN_ANY = 0, WS_ORIGIN_NONE = 1 } ws_origin_filter;

/* Parsed settings the C shim acts on itself (the rest only the encoders read). */
typedef struct ws_plugin_settings {
    ws_format format;
    bool include_transaction;
    bool include_before;
    bool truncate;
    bool messages;
    ws_origin_filter origin;
    bool partition_root;
    bool has_table_filter; /* tables or exclude-tables given */
} ws_plugin_settings;

WS_API ws_options *ws_options_create(char *errmsg);
WS_API void ws_options_destroy(ws_options *opts);
/* Sets one option; an unknown name or a bad value is WS_ERROR naming it and the accepted values.
 * Setting the same option twice is an error ("conflicting or redundant options"). */
WS_API ws_status ws_options_set(ws_options *opts, const char *name, const char *value,
                                char *errmsg);
WS_API void ws_options_settings(const ws_options *opts, ws_plugin_settings *out);
/* tables / exclude-tables patterns: is schema.table streamed? */
WS_API bool ws_options_table_included(const ws_options *opts, const char *schema,
                                      const char *table);
/* Is schema.table named by exclude-tables? (A partition left out by name stays out even
 * when its partitioned table is streamed.) */
WS_API bool ws_options_table_excluded(const ws_options *opts, const char *schema,
                                      const char *table);
/* messages prefix filter: is a logical message with this prefix streamed? */
WS_API bool ws_options_message_included(const ws_options *opts, const char *prefix);

/* ------------------------------------------------------------------------- */
/* Encoders: ChangeEvent as protobuf, or Debezium's JSON envelope.             */

typedef struct ws_encoder ws_encoder;

/* The encoder copies what it needs from opts. */
WS_API ws_encoder *ws_encoder_create(const ws_options *opts, char *errmsg);
WS_API void ws_encoder_destroy(ws_encoder *enc);
/*
 * Encodes one change. On WS_OK *out and *outlen point into the encoder's own buffer,
 * valid until the next call on this encoder (with framing=varint, the length
 * prefix is included).
 */
WS_API ws_status ws_encode_event(ws_encoder *enc, const ws_change *change, const uint8_t **out,
                                 size_t *outlen, char *errmsg);
/*
 * Encodes the Kafka message key of a change: the key columns as a walship.v1.Row
 * (protobuf) or Debezium's JSON key. *outlen is 0 when the change has no key.
 */
WS_API ws_status ws_encode_key(ws_encoder *enc, const ws_change *change, const uint8_t **out,
                               size_t *outlen, char *errmsg);

/* ------------------------------------------------------------------------- */
/* decode_event: one protobuf ChangeEvent rendered as JSON for people.         */

/* On WS_OK *json is a malloc'd NUL-terminated string the caller frees with ws_free. */
WS_API ws_status ws_event_to_json(const uint8_t *data, size_t len, char **json, char *errmsg);
WS_API void ws_free(void *p);

#ifdef __cplusplus
}
#endif

#endif /* WALSHIP_CORE_H */
