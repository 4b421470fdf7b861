/*
 * walship_sink.h: the C boundary of the Kafka sink (extension/sink/, librdkafka).
 *
 * Same rules as plugin/walship_core.h: no PostgreSQL header on the C++ side, no
 * exception crosses, no ereport inside; a status, and on failure a ws_error (kind,
 * message, detail, hint) that the C side reports with ws_ereport (plugin/core_report.h).
 * err may be NULL wherever one is taken.
 *
 * No secret appears in anything this API writes (errors, log lines, the last broker
 * error): neither the value of a property whose name marks it as a secret (it contains
 * "password", "secret", "key", "token", "credential" or is sasl.oauthbearer.config;
 * key.serializer and the like are not) nor a value read from a file (prop_files), nor
 * any text librdkafka wrote that quotes one of them.
 *
 * All calls come from the one stream-worker thread; librdkafka's own callbacks only
 * record outcomes, which ws_sink_poll applies.
 */
#ifndef WALSHIP_SINK_H
#define WALSHIP_SINK_H

#include "walship_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ws_sink ws_sink;

typedef struct ws_sink_config {
    const char *bootstrap_servers;
    const char *const *prop_names; /* librdkafka properties passed through */
    const char *const *prop_values;
    /* per property: its value is a secret whatever its name; NULL: only the names (and
     * prop_files) say which values are secret */
    const bool *prop_secret;
    /* per property: the file its value was read from, or NULL. Such a value is a secret
     * whatever the property's name, and an error about it names the file (in its
     * detail). NULL: no value came from a file. */
    const char *const *prop_files;
    int nprops;
    int topic_partitions;         /* for topics walship creates; -1 = broker default */
    int topic_replication_factor; /* -1 = broker default */
    /*
     * Where events Kafka refuses for good (larger than the producer's message.max.bytes
     * or its queue, or refused by the broker for their size when they travel alone in
     * their batch) go instead: a JSON record of the event's table, topic, commit LSN,
     * xid, size and the reason, keyed by the event's key; never the row. NULL: such an
     * event fails, and the stream stops in front of its transaction (the default).
     */
    const char *dead_letter_topic;
    /*
     * Debezium's context headers (its extended.headers.enabled, on by default) on every
     * record of a table: __debezium.context.connectorLogicalName (this), taskId "0",
     * connectorName "postgresql", runId (a UUID drawn when the sink is created). NULL:
     * none (protobuf streams).
     */
    const char *context_logical_name;
} ws_sink_config;

typedef enum ws_produce_result {
    WS_PRODUCE_OK = 0,
    /* librdkafka's queue is full: poll (Kafka's acknowledgements make room), check
     * interrupts, and try the same call again; err->message says how many are in flight */
    WS_PRODUCE_QUEUE_FULL = 1,
    WS_PRODUCE_FAILED = 2, /* err says why; the stream restarts from its slot */
    /* the event's topic (or, for a refused event, the dead-letter topic) is being
     * created: poll (which serves the creation), check interrupts, and try the same call
     * again; err->message names the topic */
    WS_PRODUCE_TOPIC_PENDING = 3,
} ws_produce_result;

typedef struct ws_sink_stats {
    uint64_t events_produced; /* handed to librdkafka */
    uint64_t bytes_produced;
    uint64_t events_acked;         /* delivery reports with success */
    uint64_t events_dead_lettered; /* refused events whose dead letter Kafka acknowledged */
    uint64_t in_flight;            /* produced, not yet reported */
    int64_t last_ack_time_us;      /* Unix epoch micros of the last successful ack; 0 = never */
} ws_sink_stats;

/*
 * Creates an idempotent producer (acks=all, murmur2_random partitioner) from walship's
 * defaults and the stream's properties, each checked against walship's property policy
 * and librdkafka's own parser. A bad property is WS_ERR_INVALID_OPTION naming it.
 */
WS_API ws_sink *ws_sink_create(const ws_sink_config *config, ws_error *err);
/* The one check of a sink configuration: exactly what ws_sink_create checks, with the
 * same errors, including librdkafka's checks of properties together (e.g. linger.ms
 * below message.timeout.ms), by creating a producer and destroying it at once; nothing
 * is produced or connected. */
WS_API ws_status ws_sink_check_config(const ws_sink_config *config, ws_error *err);
/* Destroys without waiting; call ws_sink_flush first for a graceful stop. */
WS_API void ws_sink_destroy(ws_sink *sink);

/* Transactions bracket events so the watermark knows what "all earlier" means. */
WS_API void ws_sink_begin_txn(ws_sink *sink, uint64_t commit_lsn);
/* Hands one record to librdkafka (copied): key, value (NULL: a tombstone) and the
 * record's own header if any; headers walship.lsn / walship.xid are added. table
 * ("schema.table", NULL for events of no table) is what a dead letter names. */
WS_API ws_produce_result ws_sink_produce(ws_sink *sink, const char *topic, const char *table,
                                         const ws_record *record, uint64_t commit_lsn, uint32_t xid,
                                         ws_error *err);
/* Every event of the transaction has been produced (zero events is fine). */
WS_API void ws_sink_end_txn(ws_sink *sink, uint64_t commit_lsn);

/* Serves delivery reports and errors for up to timeout_ms. WS_ERROR when a delivery failed
 * or the producer hit a fatal error: err says why and the stream must restart. */
WS_API ws_status ws_sink_poll(ws_sink *sink, int timeout_ms, ws_error *err);
/* Waits up to timeout_ms for everything in flight; WS_ERROR if some is still in flight. */
WS_API ws_status ws_sink_flush(ws_sink *sink, int timeout_ms, ws_error *err);

/* Highest commit LSN whose transaction and every earlier one Kafka acknowledged; 0 = none. */
WS_API uint64_t ws_sink_watermark(const ws_sink *sink);
/* True when no transaction is open or waiting for acknowledgements. */
WS_API bool ws_sink_idle(const ws_sink *sink);
WS_API void ws_sink_get_stats(const ws_sink *sink, ws_sink_stats *out);
/* The latest broker-level error librdkafka reported (e.g. all brokers down), as
 * WS_ERR_KAFKA; false when there has been none since the last successful delivery. */
WS_API bool ws_sink_last_error(const ws_sink *sink, ws_error *err);
/* librdkafka log lines, queued by its threads and taken here on the worker's thread;
 * line is cut (on a character boundary) to linelen bytes. */
WS_API bool ws_sink_next_log(ws_sink *sink, int *level, char *line, size_t linelen);

#ifdef __cplusplus
}
#endif

#endif /* WALSHIP_SINK_H */
