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
#include "replication/logical.h"

#include "walship_core.h"

typedef struct WalshipStreamHooks {
    void *arg;
    /* a transaction whose commit record ends at commit_lsn starts */
    void (*begin)(void *arg, TransactionId xid, XLogRecPtr commit_lsn);
    /*
     * one Kafka record: topic, the table it is about ("schema.table" as events name it;
     * NULL for transaction and message events), the record (key, value or a tombstone's
     * NULL, a header of its own); buffers valid during the call only
     */
    void (*event)(void *arg, const char *topic, const char *table, const ws_record *record,
                  TransactionId xid, XLogRecPtr commit_lsn, TimestampTz commit_time);
    /* the transaction ended; nevents records were handed to event() for it */
    void (*commit)(void *arg, TransactionId xid, XLogRecPtr commit_lsn, uint64 nevents);
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

/* Attach hooks to a context created with the walship plugin (after CreateDecodingContext). */
extern void walship_plugin_attach_hooks(LogicalDecodingContext *ctx,
                                        const WalshipStreamHooks *hooks);

#endif /* WALSHIP_PLUGIN_H */
