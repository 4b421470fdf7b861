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
    /*
     * Exactly-once delivery (docs/streams.md, "Exactly once"): the producer is transactional and
     * every event goes out inside a Kafka transaction that holds whole PostgreSQL transactions and,
     * as its last record, the stream's position (the commit LSN of its last PostgreSQL transaction)
     * in offsets_topic, keyed by the transactional id. The watermark then only passes what a Kafka
     * commit made visible, and ws_sink_start reads the position back (read_committed) so that the
     * sink skips every transaction at or below it. false: at least once, and the fields below are
     * ignored.
     */
    bool exactly_once;
    /* transactional.id unless the stream's properties set one (then the position's key
     * follows the property) */
    const char *transactional_id;
    const char *offsets_topic;
    /* A Kafka transaction is committed at the end of a PostgreSQL transaction once the
     * stream has caught up with the WAL and this long has passed since the previous
     * commit began (while it has not caught up, once the transaction is a second old, or
     * the interval if that is longer), or as soon as it holds transaction_max_events
     * events. */
    int transaction_interval_ms;
    int transaction_max_events;
    /* what the position records say about the stream, and check on the way back */
    const char *stream_name;
    const char *database_name;
    uint64_t system_identifier;
    uint32_t timeline;
} ws_sink_config;

/* The position an exactly-once stream found in Kafka (ws_sink_start). */
typedef struct ws_sink_position {
    bool found;                 /* false: no record for this stream (a new stream) */
    uint64_t commit_lsn;        /* every transaction at or below it is in Kafka */
    uint32_t timeline;          /* the server's timeline when it was written */
    uint64_t system_identifier; /* of the server that wrote it */
    char key[256];              /* the record's key (the transactional id), cut */
} ws_sink_position;

typedef enum ws_start_result {
    WS_START_DONE = 0,
    /* still under way (the offsets topic being created, the coordinator answering, the
     * position being read): check interrupts and call again; err->message says what */
    WS_START_PENDING = 1,
    WS_START_FAILED = 2, /* err says why */
} ws_start_result;

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
    /* exactly once: the previous Kafka transaction is being committed; poll (which goes
     * on with the commit), check interrupts, and try the same call again */
    WS_PRODUCE_COMMIT_PENDING = 4,
} ws_produce_result;

typedef struct ws_sink_stats {
    uint64_t events_produced; /* handed to librdkafka */
    uint64_t bytes_produced;
    uint64_t events_acked;         /* delivery reports with success */
    uint64_t events_dead_lettered; /* refused events whose dead letter Kafka acknowledged */
    uint64_t in_flight;            /* produced, not yet reported */
    int64_t last_ack_time_us;      /* Unix epoch micros of the last successful ack; 0 = never */
    uint64_t kafka_transactions;   /* exactly once: Kafka transactions committed */
    uint64_t events_skipped;       /* exactly once: events already in Kafka, not sent again */
    /* exactly once: a Kafka transaction's commit or abort is under way; nothing new is
     * produced until it ends, so it may wait with nothing in flight */
    bool transaction_ending;
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
/*
 * Before the first event: nothing to do at least once (DONE at once). Exactly once:
 * creates the offsets topic if it is missing (compacted, one partition), initializes
 * the transactional producer (which fences every earlier producer of the same
 * transactional id and aborts its open transaction), then reads the stream's position
 * back, read_committed, into *position. Waits at most timeout_ms per call.
 */
WS_API ws_start_result ws_sink_start(ws_sink *sink, int timeout_ms, ws_sink_position *position,
                                     ws_error *err);
/* Whether the stream has decoded all the WAL there is: exactly once, a Kafka transaction
 * is committed sooner when it has (see ws_sink_config.transaction_interval_ms). */
WS_API void ws_sink_set_caught_up(ws_sink *sink, bool caught_up);
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

/* Serves delivery reports and errors for up to timeout_ms, and exactly once, commits the
 * Kafka transaction when it is due (or goes on committing it). WS_ERROR when a delivery
 * failed, a Kafka transaction could not be committed or the producer hit a fatal error:
 * err says why and the stream must restart. */
WS_API ws_status ws_sink_poll(ws_sink *sink, int timeout_ms, ws_error *err);
/* Waits up to timeout_ms for everything in flight; WS_ERROR if some is still in flight.
 * Exactly once: commits the open Kafka transaction when no PostgreSQL transaction is
 * half-way in it, else aborts it. */
WS_API ws_status ws_sink_flush(ws_sink *sink, int timeout_ms, ws_error *err);

/* Highest commit LSN whose transaction and every earlier one Kafka acknowledged (exactly
 * once: and a Kafka commit made visible); 0 = none. */
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
