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

/* Size of each text of a ws_error. */
#define WS_ERRMSG_SIZE 1024

typedef enum ws_status {
    WS_OK = 0,
    WS_ERROR = 1, /* *err says what and how bad */
} ws_status;

/*
 * What went wrong, as far as the caller must act on it. The C side turns the kind
 * into a SQLSTATE in one place (ws_ereport, plugin/core_report.c); C++ never picks one.
 */
typedef enum ws_error_kind {
    WS_ERR_NONE = 0,
    WS_ERR_INVALID_OPTION,     /* an unknown option or a bad value: 22023 */
    WS_ERR_CONFLICTING_OPTION, /* the same option twice: 42601, as PostgreSQL's own */
    WS_ERR_INVALID_DATA,       /* bytes that are not what they claim to be: 22P03 */
    WS_ERR_LIMIT,              /* too large for the format or the setting: 54000 */
    WS_ERR_OUT_OF_MEMORY,      /* std::bad_alloc: 53200 */
    WS_ERR_KAFKA,              /* Kafka or librdkafka failed or refused: 58000 */
    WS_ERR_INTERNAL,           /* a bug in walship: XX000 */
} ws_error_kind;

/*
 * The one error type of both boundary headers (this one and extension/walship_sink.h),
 * filled by the core's one guard (plugin/core/boundary.hpp): errmsg, errdetail and
 * errhint as PostgreSQL shows them. Texts are NUL-terminated, never cut inside a UTF-8
 * character, and empty when absent; secrets are scrubbed before they get here.
 */
typedef struct ws_error {
    ws_error_kind kind;
    char message[WS_ERRMSG_SIZE];
    char detail[WS_ERRMSG_SIZE];
    char hint[WS_ERRMSG_SIZE];
} ws_error;

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
 * with ws_type_value_kind (the one type table, in the core); the encoders pick the
 * wire representation.
 */
typedef enum ws_value_kind {
    WS_VALUE_NULL = 0,
    WS_VALUE_UNCHANGED_TOAST, /* an UPDATE left this TOAST-ed value alone; it is not in WAL */
    WS_VALUE_INT64,           /* int2, int4, int8, oid: v.i64 */
    WS_VALUE_DOUBLE,          /* float4, float8: v.f64 */
    WS_VALUE_BOOL,            /* v.b */
    WS_VALUE_TEXT,            /* text, varchar, bpchar, name: data/len (UTF-8 or server encoding) */
    WS_VALUE_BYTES,           /* bytea: data/len */
    WS_VALUE_TIMESTAMP,       /* timestamp (without time zone): v.i64 micros since Unix epoch */
    WS_VALUE_DATE,            /* date: v.i32 days since Unix epoch */
    WS_VALUE_UUID,            /* v.uuid */
    WS_VALUE_NUMERIC,     /* numeric, money: data/len is its exact decimal text, NaN, Infinity */
    WS_VALUE_JSON,        /* json, jsonb: data/len is the JSON text */
    WS_VALUE_TIME,        /* time: v.i64 micros since midnight; data/len = output text */
    WS_VALUE_TIMETZ,      /* timetz: v.timetz; data/len = output text */
    WS_VALUE_INTERVAL,    /* interval: v.interval; data/len = output text */
    WS_VALUE_OTHER,       /* every other type: data/len is the type's output text */
    WS_VALUE_TIMESTAMPTZ, /* timestamptz: v.i64 micros since Unix epoch, UTC */
    WS_VALUE_ARRAY,       /* an array, element by element: v.array (see ws_plugin_settings) */
} ws_value_kind;

/* PostgreSQL's special values, as they are stored. */
#define WS_TIMESTAMP_NEG_INFINITY INT64_MIN
#define WS_TIMESTAMP_POS_INFINITY INT64_MAX
#define WS_DATE_NEG_INFINITY INT32_MIN
#define WS_DATE_POS_INFINITY INT32_MAX

struct ws_value;

/*
 * An array as its elements: nelements values in row-major order (the last subscript
 * varies fastest), each handed over as a scalar of the element type would be (NULL
 * elements as WS_VALUE_NULL), and its shape: ndims dimensions (0 for an empty array,
 * at most 6 as in PostgreSQL), each dims[i] long and starting at lower_bounds[i].
 * nelements is the product of dims.
 */
typedef struct ws_array {
    const struct ws_value *elements;
    int nelements;
    int ndims;
    const int32_t *dims;
    const int32_t *lower_bounds;
} ws_array;

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
        const ws_array *array;
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
    /* What a table description (ws_table_desc) tells beyond the row; rows may leave it 0. */
    uint32_t base_type_oid;         /* a domain's base type (through nested domains); else 0 */
    const char *default_expr;       /* the column's DEFAULT as SQL text; NULL when none */
    ws_value default_value;         /* a constant DEFAULT's value; kind NULL otherwise */
    const char *const *enum_labels; /* an enum's labels in their sort order; NULL otherwise */
    int nenum_labels;
    ws_value value;
} ws_column;

typedef struct ws_row {
    const ws_column *columns;
    int ncolumns;
} ws_row;

/* ------------------------------------------------------------------------- */
/* Tables: what is the same for every row of one version of one table.         */

/*
 * A table handle. The shim's relation cache creates one when it builds an entry for a
 * streamed table and destroys it when the entry is invalidated (ALTER TABLE, RENAME,
 * a type or schema change), so the core computes once per table version what every
 * row needs: each column's representation, the protobuf column heads, the Kafka
 * Connect schemas of key and value. A handle is immutable and belongs to the encoder
 * it was made with; it may outlive neither that encoder's options nor be shared
 * between threads while it is being created.
 */
typedef struct ws_table ws_table;

typedef struct ws_table_desc {
    const char *schema;
    const char *table;
    /* the Kafka topic of its events, after which Debezium names its schemas; NULL: none */
    const char *topic;
    /* every published column, in attribute order (values are not read) */
    const ws_row *columns;
    /*
     * The columns the old tuple of an UPDATE or DELETE carries, in the same order: the
     * replica identity's, every column with REPLICA IDENTITY FULL, none with NOTHING
     * (NULL or no columns). Each one is a column of `columns`, by name.
     */
    const ws_row *before;
} ws_table_desc;

typedef struct ws_source {
    const char *database;
    const char *schema; /* NULL for transaction and message events */
    const char *table;  /* NULL for transaction and message events */
    const char *origin; /* replication origin name; NULL when none */
    uint32_t xid;
    uint64_t commit_lsn; /* end LSN of the commit record */
    uint64_t change_lsn; /* LSN of this change */
    /* commit LSN of the transaction before this one in the stream; 0 when none is known */
    uint64_t prev_commit_lsn;
    int64_t commit_time_us; /* 0: none (a non-transactional message) */
    /* the commit time of the transaction before, which Debezium gives such a message */
    int64_t prev_commit_time_us;
} ws_source;

/* How many row events of one table a transaction carried (COMMIT, include-transaction). */
typedef struct ws_collection_count {
    const char *name; /* "schema.table" */
    uint64_t count;
} ws_collection_count;

typedef struct ws_change {
    ws_op op;
    ws_source source;
    /*
     * The table of a row or TRUNCATE event (ws_table_create); its rows are then in its
     * column order: `after` has every column, `before` the old tuple's columns. NULL:
     * no table (transaction and message events), or a caller without handles (tests),
     * whose rows are then described by their own column fields, at a cost per event.
     */
    const struct ws_table *table;
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
    /* MESSAGE */
    const char *message_prefix;
    const char *message_content;
    size_t message_len;
    bool message_transactional;
    /* COMMIT: row events the transaction produced */
    uint64_t event_count;
    /*
     * include-transaction: a row or truncate event's place in its transaction, 1-based,
     * among all its row events and among its table's (0: not counted); at COMMIT the
     * count of each table, in the order the tables first appeared.
     */
    uint64_t total_order;
    uint64_t collection_order;
    const ws_collection_count *collections;
    int ncollections;
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
    /*
     * Hand array columns over element by element (WS_VALUE_ARRAY) rather than as their
     * text (WS_VALUE_OTHER): the encoder asked for (protobuf writes ArrayValue).
     */
    bool array_elements;
} ws_plugin_settings;

WS_API ws_options *ws_options_create(ws_error *err);
WS_API void ws_options_destroy(ws_options *opts);
/* Sets one option; an unknown name or a bad value is WS_ERROR naming it and the accepted values.
 * Setting the same option twice is an error ("conflicting or redundant options"). */
WS_API ws_status ws_options_set(ws_options *opts, const char *name, const char *value,
                                ws_error *err);
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

/* The encoder copies what it needs from opts; database names events of no table. */
WS_API ws_encoder *ws_encoder_create(const ws_options *opts, const char *database, ws_error *err);
WS_API void ws_encoder_destroy(ws_encoder *enc);

/* A table's handle for this encoder (see ws_table above); NULL on error. */
WS_API ws_table *ws_table_create(const ws_encoder *enc, const ws_table_desc *desc, ws_error *err);
WS_API void ws_table_destroy(ws_table *table);

/*
 * One Kafka record of an encoded change. A change is one record, except where Kafka's
 * conventions (Debezium's defaults) make it more: a DELETE is followed by a tombstone
 * (option tombstones), an UPDATE that changes the key is a DELETE of the old key, its
 * tombstone and a CREATE of the new key (option key-change).
 */
typedef struct ws_record {
    const uint8_t *key; /* the Kafka key; keylen 0 when the change has none */
    size_t keylen;
    const uint8_t *value; /* the event (with framing=varint, its length prefix included); */
    size_t valuelen;      /* NULL: a tombstone, only when the key was asked for */
    /*
     * A header of this record's own, NULL when none: the other key of a key change
     * ("__debezium.newkey" on the delete and its tombstone, "__debezium.oldkey" on the
     * create), its value the key as the header converter of Kafka Connect writes it.
     */
    const char *header;
    const uint8_t *header_value;
    size_t header_valuelen;
} ws_record;

#define WS_MAX_RECORDS 3

/* One encoded change: buffers of the encoder, valid until its next ws_encode. */
typedef struct ws_encoded {
    ws_record records[WS_MAX_RECORDS];
    int nrecords; /* at least 1 */
    /*
     * An UPDATE that changed the key under key-change=update, with_key: the old key
     * (as a record of it would be keyed), which no record names; NULL otherwise.
     */
    const uint8_t *moved_from_key;
    size_t moved_from_keylen;
} ws_encoded;

/*
 * Encodes one change into its records: each event and, with with_key, its Kafka key
 * (the key columns as a walship.v1.Row, or Debezium's JSON key) in the same pass, and
 * the tombstones (with_key only: a tombstone is a Kafka record, not an event).
 */
WS_API ws_status ws_encode(ws_encoder *enc, const ws_change *change, bool with_key, ws_encoded *out,
                           ws_error *err);

/*
 * The one type table: how the shim hands over a value of this type (WS_VALUE_OTHER,
 * its output text, for every type without a native kind, domains included).
 */
WS_API ws_value_kind ws_type_value_kind(uint32_t type_oid);

/* ------------------------------------------------------------------------- */
/* decode_event: one protobuf ChangeEvent rendered as JSON for people.         */

/* On WS_OK *json is a malloc'd NUL-terminated string the caller frees with ws_free. */
WS_API ws_status ws_event_to_json(const uint8_t *data, size_t len, char **json, ws_error *err);
WS_API void ws_free(void *p);

#ifdef __cplusplus
}
#endif

#endif /* WALSHIP_CORE_H */
