/*
 * walship_streams.h: what the stream side of the extension shares between its files.
 *
 *   launcher.c       _PG_init, GUCs, shared memory, the launcher background worker
 *   stream_shmem.c   the shared stream table: claiming entries, worker reports, status SRF
 *   stream_config.c  a stream's configuration: from create_stream's arguments or the
 *                    catalog row to validated plugin options and sink settings
 *   stream_sql.c     create_stream, alter_stream, start_stream, stop_stream, drop_stream,
 *                    snapshot
 *   stream_position.c  where a worker left its slot, to notice a slot moved by others
 *   stream_worker.c  the stream worker: decode in-process, produce to Kafka, confirm
 *
 * Used from C only.
 */
#ifndef WALSHIP_STREAMS_H
#define WALSHIP_STREAMS_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/jsonb.h"

#include "walship_core.h"
#include "compat.h"

/* The slot of stream <name> is walship_<name>; both must fit in a NameData. */
#define STREAM_SLOT_PREFIX "walship_"
#define STREAM_NAME_MAXLEN (NAMEDATALEN - 1 - (int)(sizeof(STREAM_SLOT_PREFIX) - 1))
#define STREAM_ERROR_MAXLEN 1024 /* a message and its hint */
/* The role that manages streams (created by the extension, granted by a superuser). */
#define STREAM_ADMIN_ROLE "walship_admin"
/*
 * Bounds of the topic settings walship creates topics with: Kafka's own for the
 * replication factor (an int16), and far beyond any real topic for partitions, so that
 * a typo (1e9) is an error at create_stream rather than a stream failing for ever.
 */
#define STREAM_MAX_PARTITIONS 100000
#define STREAM_MAX_REPLICATION_FACTOR 32767
/* Rows per snapshot chunk: the default, and the most (a chunk is held in memory). */
#define STREAM_DEFAULT_SNAPSHOT_CHUNK 4096
#define STREAM_MAX_SNAPSHOT_CHUNK 100000
/* delivery = exactly_once: a Kafka transaction's time (while the stream keeps up) and size */
#define STREAM_DEFAULT_TRANSACTION_INTERVAL_MS 50
#define STREAM_MAX_TRANSACTION_INTERVAL_MS 60000
#define STREAM_DEFAULT_TRANSACTION_EVENTS 100000
#define STREAM_MAX_TRANSACTION_EVENTS 10000000
/* A Kafka property's value read from a file (a password, a PEM bundle) is at most this. */
#define STREAM_SECRET_FILE_MAXLEN (1024 * 1024)

/* GUCs (launcher.c) */
extern char *walship_database;
extern int walship_max_streams;
extern int walship_naptime;
extern int walship_stop_timeout;
extern int walship_stall_timeout;
extern int walship_snapshot_max_in_flight;

/* True in a process whose postmaster loaded walship through shared_preload_libraries. */
extern bool walship_preloaded;

/*
 * What a stream worker last said about itself. The status view shows it as is, except
 * that a stream the catalog has disabled is "stopped" (or "stopping" while its worker
 * still runs) and a running worker whose Kafka client reports an error is "error".
 */
typedef enum StreamState {
    STREAM_STATE_NONE = 0, /* no worker has run for this entry yet */
    STREAM_STATE_STARTING, /* registered, not yet decoding */
    STREAM_STATE_RUNNING,
    STREAM_STATE_ERROR,   /* the worker failed; the launcher restarts it after a backoff */
    STREAM_STATE_STOPPED, /* the worker exited after a stop request */
} StreamState;

/*
 * One stream in shared memory. Entries are claimed by name (by the launcher when it
 * sees the catalog row, or by a SQL function that must reach the worker first) and
 * freed by the launcher once the row is gone and no worker runs. Everything here is
 * protected by WalshipShmem->lock; nothing takes it for long or ereports holding it.
 */
typedef struct StreamShared {
    bool in_use;
    char name[NAMEDATALEN];
    /* bumped whenever the entry is claimed: a worker checks it is still its entry */
    uint32 generation;
    /*
     * Set by stop_stream/drop_stream before their transaction commits: the worker is
     * asked to exit now, and the launcher, which still sees the row enabled, must not
     * start it again. Cleared when that transaction aborts, by start_stream, and by
     * the launcher once the catalog itself says disabled.
     */
    bool stop_requested;
    /*
     * start_stream and alter_stream ask the launcher to start the worker without a
     * backoff; kept until no worker runs (alter_stream's is asked to exit first)
     */
    bool restart_now;
    /* bumped when walship.snapshots gained work for the stream: its worker looks */
    uint32 snapshot_requests;

    /* reported by the worker */
    pid_t pid; /* 0 when no worker runs */
    StreamState state;
    bool kafka_error; /* the sink reports a broker-level error right now */
    XLogRecPtr confirmed_lsn;
    uint64 events_produced;
    uint64 bytes_produced;
    uint64 events_acked;
    uint64 in_flight;
    /* events written to the dead-letter topic since the server started (not per worker) */
    uint64 dead_letters;
    TimestampTz started_at;
    TimestampTz last_commit_time;
    TimestampTz last_ack_time;
    TimestampTz last_error_time;
    char last_error[STREAM_ERROR_MAXLEN];
} StreamShared;

typedef struct WalshipShmem {
    LWLock *lock;
    pid_t launcher_pid;
    Latch *launcher_latch; /* the launcher's procLatch; NULL when no launcher runs */
    int max_streams;
    StreamShared streams[FLEXIBLE_ARRAY_MEMBER];
} WalshipShmem;

/* NULL unless preloaded */
extern WalshipShmem *walship_shmem;

/* stream_shmem.c */
extern Size stream_shmem_size(void);
extern void stream_shmem_init(void);
extern void stream_require_preloaded(void);
/* Caller holds the lock exclusively. NULL when the table is full (claim) or no such entry. */
extern StreamShared *stream_shmem_find(const char *name);
extern StreamShared *stream_shmem_claim(const char *name);
extern void stream_wake_launcher(void);
extern void stream_record_error(StreamShared *entry, uint32 generation, const char *message);
/* Tells the stream's worker that its snapshots changed (walship.snapshots). */
extern void stream_wake_snapshots(const char *name);

/* stream_config.c */
typedef struct StreamConfig {
    char *name;
    char *slot_name;
    char *bootstrap_servers;
    /* canonical "schema.table" names from create_stream's tables; NIL = every table */
    List *tables;
    /* the same tables by OID (walship.streams.table_oids), which the worker follows
     * through renames; NIL with tables NIL, or for a row written before there were OIDs */
    List *table_oids;
    /* plugin options in the plugin's spelling: DefElem with a String value each;
     * topic-prefix always among them */
    List *plugin_options;
    char *topic_prefix; /* the prefix of the stream's topics (walship_topic_prefix) */
    /* librdkafka properties passed through; values given in the file form are read */
    int nkafka;
    char **kafka_names;
    char **kafka_values;
    char **kafka_files;     /* the file each value was read from, or NULL: never shown */
    char *kafka_json;       /* the kafka object as given (file forms by path); NULL: none */
    int partitions;         /* -1 = broker default */
    int replication_factor; /* -1 = broker default */
    /* on_refused = dead_letter: where refused events go; NULL: they stop the stream */
    bool dead_letter;
    char *dead_letter_topic;
    /* failover: the slot is a failover slot (17+), synchronized to physical standbys */
    bool failover;
    /* snapshot_mode = initial: the stream's tables are snapshotted when it is created
     * (and when alter_stream adds tables); snapshot_chunk_size rows per chunk */
    bool snapshot_initial;
    int snapshot_chunk_size;
    /* delivery = exactly_once: Kafka transactions of at most transaction_interval_ms
     * (while caught up) and transaction_max_events, the position in offsets_topic */
    bool exactly_once;
    int transaction_interval_ms;
    int transaction_max_events;
    char *offsets_topic;
    /* what the catalog keeps (walship.streams.options): the canonical form of the options
     * (see stream_config.c); NULL for a configuration read from the catalog */
    Jsonb *options;
} StreamConfig;

extern bool stream_name_is_valid(const char *name);
extern char *stream_slot_name(const char *name);
/*
 * Builds a stream's configuration from create_stream's arguments, checking every option
 * once (ERRORs name whatever is wrong) except the Kafka properties, which only
 * ws_sink_check_config checks; config->options is what the catalog keeps.
 */
extern StreamConfig *stream_config_build(const char *name, const char *bootstrap_servers,
                                         List *tables, Jsonb *options);
/*
 * alter_stream's options merged over the stored ones (either in the canonical form or in
 * create_stream's): a key of changes replaces the stored one, JSON null removes it; the
 * kafka and plugin objects merge member by member the same way. The result, in the
 * canonical shape, is for stream_config_build to check. ERRORs name a key that cannot be
 * merged; none shows a value.
 */
extern Jsonb *stream_options_merge(const char *stream_name, Jsonb *stored, Jsonb *changes);
/* Resolves create_stream's table names to canonical names, checking each table; their
 * OIDs go to *relids, in the same order. */
extern List *stream_resolve_tables(const char *stream_name, List *names, List **relids);
/* Reads the catalog row (caller is in a transaction); NULL when there is none. Its
 * options pass through: the plugin and the sink check what they take. */
extern StreamConfig *stream_config_load(const char *name);
/* The same without the Kafka properties (whose files it does not read): the stored
 * configuration alter_stream compares the new one with. */
extern StreamConfig *stream_config_load_without_kafka(const char *name);
extern void stream_check_server_settings(void);
struct ws_sink_config;
/* The Kafka sink's settings of a stream (pointing into config). */
extern void stream_config_sink(const StreamConfig *config, struct ws_sink_config *sc);
extern char *stream_transactional_id(const char *name);

/* stream_position.c: where a stream's worker left its slot (never ereports) */
extern bool stream_position_save(const char *slot_name, XLogRecPtr lsn);
/* False when there is no note, or one from another timeline. */
extern bool stream_position_load(const char *slot_name, XLogRecPtr *lsn);
extern bool stream_position_forget(const char *slot_name);
/* The mark of a slot create_stream made (never ereport either). */
extern bool stream_slot_mark_owned(const char *slot_name, int creator_pid);
extern bool stream_slot_owned(const char *slot_name, int *creator_pid);
extern bool stream_slot_forget_owned(const char *slot_name);

/* stream_sql.c */
extern void stream_install_drop_hook(void);
/*
 * Queues a snapshot (walship.snapshots) of tables of the stream in the caller's
 * transaction: relids, or when NIL every table of the stream (stream_relids, or with
 * those NIL every table its options let through); a partitioned table is read partition
 * by partition. ERRORs, before anything is written, name a table without a primary key
 * or replica identity index, or one whose snapshot is pending or running. The worker is
 * told when the transaction commits. Returns the number of tables queued.
 */
extern int stream_snapshot_request(const StreamConfig *config, List *relids, List *stream_relids);

/* stream_worker.c */
extern PGDLLEXPORT void walship_stream_main(Datum main_arg);
/* Hands one record to Kafka, waiting (serving Kafka, interrupts, a stop) while the
 * producer's queue is full; an ERROR when Kafka refuses it. */
extern void stream_worker_produce(const char *topic, const char *table, const ws_record *record,
                                  TransactionId xid, XLogRecPtr commit_lsn);

/* stream_snapshot.c: the worker's snapshots (all from the worker's one thread) */
struct LogicalDecodingContext;
struct ws_sink;
extern void snapshot_attach(struct LogicalDecodingContext *ctx, struct ws_sink *sink,
                            const StreamConfig *config, MemoryContext parent);
/* walship.snapshots may have new work */
extern void snapshot_wake(void);
/* Between records: saves what Kafka acknowledged, reads the next chunk when due. */
extern void snapshot_step(void);
/* A chunk can be read now: the worker does not sleep. */
extern bool snapshot_ready(void);
/* Between records: saves what Kafka acknowledged of the snapshot (at a stop). */
extern void snapshot_save(void);
/* From the plugin's hooks */
/* relid: the relation the change arrived for (a leaf), as the chunk's table is */
extern void snapshot_on_event(Oid relid, const ws_record *record, TransactionId xid);
extern void snapshot_on_moved(Oid relid, const uint8 *key, size_t keylen, TransactionId xid);
extern void snapshot_on_partial(Oid relid, const uint8 *key, size_t keylen, TransactionId xid);
extern void snapshot_on_truncated(Oid relid, TransactionId xid);
extern void snapshot_on_commit(TransactionId xid, uint64 nevents);
extern void snapshot_on_watermark(const char *content, Size len, XLogRecPtr end_lsn);

/* launcher.c */
extern PGDLLEXPORT void walship_launcher_main(Datum main_arg);

#endif /* WALSHIP_STREAMS_H */
