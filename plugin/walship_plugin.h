/*
 * walship_plugin.h: what the output plugin offers the stream worker in the same library.
 *
 * Used from C only (PostgreSQL types). When a stream worker decodes in-process, it
 * creates a decoding context with the walship plugin and then attaches hooks: from
 * then on the plugin hands every event (with its topic and Kafka key) to the hooks
 * instead of writing it to ctx->out, and reports every transaction boundary, even
 * when include-transaction is off and even when the transaction produced no event,
 * so that the worker can track its LSN watermark.
 */
#ifndef WALSHIP_PLUGIN_H
#define WALSHIP_PLUGIN_H

#include "postgres.h"
#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "access/htup.h"
#include "replication/logical.h"
#include "utils/relcache.h"

#include "walship_core.h"

typedef struct WalshipStreamHooks {
    void *arg;
    /* a transaction whose commit record ends at commit_lsn starts */
    void (*begin)(void *arg, TransactionId xid, XLogRecPtr commit_lsn);
    /*
     * one Kafka record: topic, the table it is about ("schema.table" as events name it;
     * NULL for transaction and message events) and the relation its change arrived for
     * (a leaf partition's own OID also with partition-root; InvalidOid for transaction and
     * message events), the record (key, value or a tombstone's NULL, a header of its own);
     * buffers valid during the call only
     */
    void (*event)(void *arg, const char *topic, const char *table, Oid relid,
                  const ws_record *record, TransactionId xid, XLogRecPtr commit_lsn,
                  TimestampTz commit_time);
    /* the transaction ended; nevents records were handed to event() for it */
    void (*commit)(void *arg, TransactionId xid, XLogRecPtr commit_lsn, uint64 nevents);
    /*
     * An UPDATE took its row away from another key (key-change=update keeps it one
     * event, keyed by the new key): that key, as event() would have been given it.
     * NULL: not wanted.
     */
    void (*moved)(void *arg, Oid relid, const uint8 *old_key, size_t old_keylen, TransactionId xid);
    /*
     * The record just given to event() (the last of its change) is an UPDATE whose new
     * row lacks TOAST-ed values it did not change (they are not in the WAL): a copy that
     * never had the row cannot be completed from it. NULL: not wanted.
     */
    void (*partial)(void *arg, Oid relid, const uint8 *key, size_t keylen, TransactionId xid);
    /* a TRUNCATE emptied this relation (each leaf truncated, by OID), whether or not the
     * truncate option sends it as an event. NULL: not wanted. */
    void (*truncated)(void *arg, Oid relid, TransactionId xid);
    /*
     * A logical message with walship's own prefix (WALSHIP_WATERMARK_PREFIX), reached at
     * end_lsn (the end of its record); never an event. NULL: not wanted.
     */
    void (*watermark)(void *arg, const char *content, Size len, XLogRecPtr end_lsn);
    /*
     * The stream's tables by OID, followed through renames (and their partitions, also
     * those attached later); exclude-tables still applies. NULL: the tables option, by
     * name, as for any client. Copied.
     */
    const Oid *tables;
    int ntables;
} WalshipStreamHooks;

/*
 * PostgreSQL counts timestamps and dates from 2000-01-01; events (and the sink's clock)
 * count from the Unix epoch, 1970-01-01.
 */
#define WS_UNIX_EPOCH_OFFSET_DAYS (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)
#define WS_UNIX_EPOCH_OFFSET_US ((int64)WS_UNIX_EPOCH_OFFSET_DAYS * USECS_PER_DAY)

/* Kafka's limit on topic names, in characters (all ASCII here). */
#define WALSHIP_TOPIC_NAME_MAXLEN 249

/*
 * The Kafka topic for a name (palloc'd): characters Kafka forbids become '_', and the
 * name is cut at Kafka's 249 characters, as Debezium does. Needs the database encoding.
 */
extern char *walship_kafka_topic_name(const char *name);

/* The prefix of a stream's topics (palloc'd): given when not NULL or empty, else the
 * database name as walship_kafka_topic_name makes it. */
extern char *walship_topic_prefix(const char *given, const char *database);

/*
 * The prefix of the logical messages walship writes for itself (a snapshot's low and
 * high watermarks): the plugin never emits them, to hooks or to clients.
 */
#define WALSHIP_WATERMARK_PREFIX "walship.watermark"

/*
 * A snapshot row: one row of `relation` as a READ event, encoded as the stream encodes
 * its changes (the same topic, key and format), its source at lsn and time. `tuple` is
 * in the relation's own format (dropped columns included) with no external TOAST
 * value. emit gets each record (buffers valid during the call) with the topic and the
 * table as event() gets them. False, and nothing emitted, when the stream does not
 * publish the relation. Needs a transaction (catalog access) and hooks attached.
 */
typedef void (*WalshipReadEmit)(void *arg, const char *topic, const char *table,
                                const ws_record *record);
extern bool walship_plugin_read_row(LogicalDecodingContext *ctx, Relation relation, HeapTuple tuple,
                                    XLogRecPtr lsn, TimestampTz time, WalshipReadEmit emit,
                                    void *arg);
/* Whether the stream publishes the relation, and under which table name ("schema.table",
 * as event() gets it; valid until the plugin's next callback). */
extern bool walship_plugin_publishes(LogicalDecodingContext *ctx, Relation relation,
                                     const char **table);

/* Attach hooks to a context created with the walship plugin (after CreateDecodingContext). */
extern void walship_plugin_attach_hooks(LogicalDecodingContext *ctx,
                                        const WalshipStreamHooks *hooks);

#endif /* WALSHIP_PLUGIN_H */
