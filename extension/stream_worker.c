/*
 * stream_worker.c: the stream worker, one background worker per running stream.
 *
 * It decodes its slot in-process, the way pg_logical_slot_get_changes does, but
 * without end: acquire the slot, create a decoding context with the walship plugin
 * and the stream's options, attach hooks so that the plugin hands every event to us,
 * then read WAL up to the flush pointer, again and again, with one XLogReader that
 * keeps its place. Each event goes to the Kafka sink (copied there); the slot is
 * confirmed only up to the sink's watermark, the highest commit whose transaction and
 * every earlier one Kafka has acknowledged. When nothing is open or unacknowledged,
 * the position decoded so far is confirmed too, so WAL of tables no stream covers
 * never holds the slot back.
 *
 * It runs outside any transaction (the reorder buffer opens its own for catalog
 * access), under a process-level resource owner and a long-lived memory context.
 *
 * Stopping (SIGTERM from stop_stream, the launcher or a server shutdown): finish the
 * record in hand, wait for Kafka up to walship.stop_timeout, confirm what it acked,
 * release the slot and exit 0. If Kafka does not drain the queue by then, the worker
 * stops even inside a transaction; what Kafka lacks is produced again next time.
 * Failing (a delivery Kafka refused, a missing slot, any ERROR): record the message for
 * the status view and exit 1; the launcher restarts the worker after a backoff and the
 * slot, released on exit, brings back everything unconfirmed.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogreader.h"
#include "access/timeline.h"
#include "access/xlogrecovery.h"
#include "access/xlogutils.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "core_report.h"
#include "walship_plugin.h"
#include "walship_sink.h"
#include "walship_streams.h"

/* How often the decode loop serves Kafka and confirms while it catches up. */
#define RECORDS_PER_SERVICE 1024
/*
 * Sleep when caught up. Backends do not wake us when they flush WAL, so this sleep is how
 * late we may see a commit. Right after WAL arrived more is likely to follow: sleep
 * briefly. The longer none comes, the longer we sleep (doubling), up to the maximum, so
 * that an idle stream costs little.
 */
#define IDLE_SLEEP_MIN_MS 1
#define IDLE_SLEEP_MAX_MS 5
/* The slot's confirmed position is saved to disk at most this often (and at a stop). */
#define SLOT_SAVE_INTERVAL_MS 1000
/* Poll while librdkafka's queue is full. */
#define BACKPRESSURE_POLL_MS 10
/* while a failover slot waits for its standbys */
#define STANDBY_POLL_MS 10
/* The status view is refreshed at most this often while Kafka is busy (and at every state
 * change, and as soon as Kafka has acknowledged everything). */
#define PUBLISH_INTERVAL_MS 100

/* Unix epoch micros (the sink's clock) to PostgreSQL's TimestampTz. */

typedef struct StreamWorker {
    StreamShared *entry;
    uint32 generation;
    char name[NAMEDATALEN];

    MemoryContext context;
    ResourceOwner owner;
    StreamConfig *config;
    ws_sink *sink;
    LogicalDecodingContext *ctx;

    XLogRecPtr confirmed; /* what the slot has been told */
    XLogRecPtr saved;     /* what the slot's file on disk says */
    TimestampTz last_save;
    bool slot_checked;            /* the slot is ours and where we left it: note on exit */
    TimestampTz last_commit_time; /* of the last transaction that produced events */
    TimestampTz stop_deadline;    /* 0 until a stop was requested */
    TimestampTz last_publish;
    TimestampTz waiting_since;  /* events in flight and no ack since; 0 = none in flight */
    uint64 acked_at_wait;       /* events acknowledged + Kafka commits at waiting_since */
    uint64 dead_letters_before; /* the stream's dead letters before this worker started */
    bool sink_idle;             /* nothing was open or waiting for Kafka at the last service */
    /* failover slots: the physical standbys (synchronized_standby_slots) have WAL up to
     * standby_ok; standby_target is the end of WAL last asked about */
    XLogRecPtr standby_ok;
    XLogRecPtr standby_target;
    TimestampTz standby_wait_since; /* waiting for the standbys since; 0 = not waiting */
    TimestampTz standby_warned;
    bool kafka_error; /* the sink reported a broker error at the last publish */
    uint32 wait_event;
    uint32 snapshot_requests; /* StreamShared.snapshot_requests when last seen */
    XLogRecPtr decodable;     /* what decodable_end() said last */
} StreamWorker;

static StreamWorker worker;
static volatile sig_atomic_t stop_pending = false;

static void stream_worker_sigterm(SIGNAL_ARGS)
{
    int save_errno = errno;

    stop_pending = true;
    SetLatch(MyLatch);
    errno = save_errno;
}

/* ------------------------------------------------------------------------- */
/* Reporting to the status view                                              */

static void set_state(StreamState state)
{
    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    if (worker.entry->generation == worker.generation)
        worker.entry->state = state;
    LWLockRelease(walship_shmem->lock);
}

/*
 * A broker that is unreachable makes librdkafka report an error; one that accepts
 * connections but acknowledges nothing (frozen, overloaded) does not. So: events in
 * flight (exactly once: or a Kafka transaction being ended, which holds back what comes
 * next) and no acknowledgement or commit for walship.stall_timeout is an error of its own.
 */
static bool stall_detected(const ws_sink_stats *stats, TimestampTz now, char *why)
{
    uint64 progress = stats->events_acked + stats->events_dead_lettered + stats->kafka_transactions;

    if ((stats->in_flight == 0 && !stats->transaction_ending) || walship_stall_timeout <= 0) {
        worker.waiting_since = 0;
        return false;
    }
    if (worker.waiting_since == 0 || progress != worker.acked_at_wait) {
        worker.waiting_since = now;
        worker.acked_at_wait = progress;
        return false;
    }
    if (!TimestampDifferenceExceeds(worker.waiting_since, now, walship_stall_timeout))
        return false;
    if (why != NULL && stats->in_flight == 0)
        snprintf(why, WS_ERRMSG_SIZE,
                 "Kafka has not completed the commit (or abort) of the stream's Kafka "
                 "transaction for more than %d ms (walship.stall_timeout): the brokers are "
                 "unreachable, frozen or overloaded; the stream waits and goes on by itself "
                 "when they answer",
                 walship_stall_timeout);
    else if (why != NULL)
        snprintf(why, WS_ERRMSG_SIZE,
                 "Kafka has acknowledged none of the %llu events in flight for more than %d ms "
                 "(walship.stall_timeout): the brokers are unreachable, frozen or overloaded; "
                 "the stream waits and goes on by itself when they answer",
                 (unsigned long long)stats->in_flight, walship_stall_timeout);
    return true;
}

static void publish(bool force)
{
    TimestampTz now = GetCurrentTimestamp();
    ws_sink_stats stats;
    ws_error err;
    char *why = err.message;
    bool kafka_error;

    if (!force && !TimestampDifferenceExceeds(worker.last_publish, now, PUBLISH_INTERVAL_MS))
        return;
    worker.last_publish = now;
    if (worker.sink == NULL)
        return;

    ws_sink_get_stats(worker.sink, &stats);
    kafka_error = ws_sink_last_error(worker.sink, &err);
    if (!kafka_error)
        kafka_error = stall_detected(&stats, now, why);
    else
        (void)stall_detected(&stats, now, NULL);
    if (!kafka_error && worker.standby_wait_since != 0 && walship_stall_timeout > 0 &&
        TimestampDifferenceExceeds(worker.standby_wait_since, now, walship_stall_timeout)) {
        kafka_error = true;
        snprintf(why, sizeof(err.message),
                 "waiting for the standbys of synchronized_standby_slots (\"%s\") to confirm "
                 "WAL up to %X/%X before decoding it (the slot is a failover slot): is a "
                 "standby down, or does the setting name a slot this server does not have?",
                 GetConfigOption("synchronized_standby_slots", true, false),
                 LSN_FORMAT_ARGS(worker.standby_target));
    }

    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    if (worker.entry->generation == worker.generation) {
        StreamShared *e = worker.entry;

        if (e->snapshot_requests != worker.snapshot_requests) {
            worker.snapshot_requests = e->snapshot_requests;
            snapshot_wake();
        }
        e->events_produced = stats.events_produced;
        e->bytes_produced = stats.bytes_produced;
        e->events_acked = stats.events_acked;
        e->in_flight = stats.in_flight;
        e->dead_letters = worker.dead_letters_before + stats.events_dead_lettered;
        e->last_ack_time =
            stats.last_ack_time_us != 0 ? stats.last_ack_time_us - WS_UNIX_EPOCH_OFFSET_US : 0;
        e->last_commit_time = worker.last_commit_time;
        e->confirmed_lsn = worker.confirmed;
        e->kafka_error = kafka_error;
        if (kafka_error && (!worker.kafka_error || strcmp(e->last_error, why) != 0)) {
            strlcpy(e->last_error, why, STREAM_ERROR_MAXLEN);
            e->last_error_time = now;
        }
    }
    LWLockRelease(walship_shmem->lock);

    if (kafka_error != worker.kafka_error)
        pgstat_report_activity(STATE_RUNNING, kafka_error ? "waiting for Kafka" : "streaming");
    worker.kafka_error = kafka_error;
}

/* librdkafka's log lines, queued by its threads, logged here on ours. */
static void serve_sink_logs(void)
{
    int level;
    char line[1024];

    while (ws_sink_next_log(worker.sink, &level, line, sizeof(line)))
        ereport(level <= 4 ? WARNING : LOG,
                (errmsg("walship stream \"%s\": kafka: %s", worker.name, line)));
}

/* ------------------------------------------------------------------------- */
/* Confirming                                                                */

/*
 * Checkpoints save a dirty slot, but a crash before the next one restarts the stream
 * from the last saved position, sending again everything since: save it ourselves, at
 * most every SLOT_SAVE_INTERVAL_MS (one small fsync'd file) unless now, so that a crash
 * re-sends only what Kafka had not acknowledged plus about that much acknowledged work.
 */
static void save_slot(bool now)
{
    TimestampTz at;

    if (worker.saved >= worker.confirmed || MyReplicationSlot == NULL)
        return;
    at = GetCurrentTimestamp();
    if (!now && !TimestampDifferenceExceeds(worker.last_save, at, SLOT_SAVE_INTERVAL_MS))
        return;
    ReplicationSlotSave();
    worker.saved = worker.confirmed;
    worker.last_save = at;
}

/*
 * Tells the slot what Kafka holds. between_records: the decoder is not in the middle
 * of a record, so when the sink is idle everything decoded so far is safe.
 */
static void confirm(bool between_records)
{
    XLogRecPtr target = (XLogRecPtr)ws_sink_watermark(worker.sink);

    if (between_records && ws_sink_idle(worker.sink) && worker.ctx->reader->EndRecPtr > target)
        target = worker.ctx->reader->EndRecPtr;
    /* LogicalConfirmReceivedLocation would move confirmed_flush backwards */
    if (target > worker.confirmed) {
        LogicalConfirmReceivedLocation(target);
        /* a moved confirmed_flush alone does not dirty the slot */
        ReplicationSlotMarkDirty();
        worker.confirmed = target;
    }
    save_slot(false);
}

/*
 * Serves the sink for up to timeout_ms, then confirms and publishes: at most every
 * PUBLISH_INTERVAL_MS while Kafka is busy, and at once when it has just acknowledged
 * everything, so that the status view is exact whenever the stream has caught up.
 */
static void service(int timeout_ms, bool between_records)
{
    ws_error err;
    bool sink_idle;

    /* exactly once: a Kafka transaction is committed sooner once the stream has caught up */
    ws_sink_set_caught_up(worker.sink,
                          worker.ctx != NULL && worker.ctx->reader->EndRecPtr >= worker.decodable);
    if (ws_sink_poll(worker.sink, timeout_ms, &err) != WS_OK) {
        if (err.detail[0] == '\0')
            strlcpy(err.detail,
                    "The stream restarts from its slot and produces the unacknowledged "
                    "transactions again.",
                    sizeof(err.detail));
        ws_ereport(ERROR, &err,
                   psprintf("walship stream \"%s\": Kafka did not accept an event", worker.name));
    }
    serve_sink_logs();
    confirm(between_records);
    sink_idle = ws_sink_idle(worker.sink);
    publish(sink_idle && !worker.sink_idle);
    worker.sink_idle = sink_idle;
    if (!PostmasterIsAlive())
        proc_exit(1);
}

/* ------------------------------------------------------------------------- */
/* Stopping                                                                  */

static int ms_until(TimestampTz deadline)
{
    long secs;
    int usecs;

    TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
    return (int)Min(secs * 1000L + usecs / 1000, INT_MAX);
}

static void note_stop_request(void)
{
    if (worker.stop_deadline == 0)
        worker.stop_deadline =
            TimestampTzPlusMilliseconds(GetCurrentTimestamp(), walship_stop_timeout);
}

/*
 * Where the slot is confirmed now: what the slot holds, not what we last asked for (a
 * confirm that failed half-way, e.g. saving the slot, may have moved it already).
 */
static XLogRecPtr slot_confirmed(void)
{
    XLogRecPtr confirmed;

    if (MyReplicationSlot == NULL)
        return worker.confirmed;
    SpinLockAcquire(&MyReplicationSlot->mutex);
    confirmed = MyReplicationSlot->data.confirmed_flush;
    SpinLockRelease(&MyReplicationSlot->mutex);
    return Max(confirmed, worker.confirmed);
}

/* Notes where this worker leaves the slot, for the next one to check (stream_position.c). */
static void note_position(void)
{
    if (!worker.slot_checked)
        return;
    worker.slot_checked = false;
    if (!stream_position_save(worker.config->slot_name, slot_confirmed()))
        ereport(WARNING,
                (errcode_for_file_access(),
                 errmsg("walship stream \"%s\" could not note the position of its slot: %m",
                        worker.name),
                 errdetail("The next start cannot tell whether the slot was moved meanwhile.")));
}

/*
 * The graceful end: wait for Kafka until the stop deadline, confirm what it acked,
 * release everything, exit 0. between_records is false when called from a hook in
 * the middle of a transaction; the process exit then releases the slot.
 */
static void stream_finish(bool between_records)
{
    ws_error err;

    note_stop_request();
    pgstat_report_activity(STATE_RUNNING, "stopping: waiting for Kafka");
    if (ws_sink_flush(worker.sink, Max(ms_until(worker.stop_deadline), 0), &err) != WS_OK) {
        /* what the sink says is the detail of this warning */
        if (err.detail[0] == '\0')
            strlcpy(err.detail, err.message, sizeof(err.detail));
        snprintf(err.message, sizeof(err.message),
                 "walship stream \"%s\" stops with events Kafka has not acknowledged", worker.name);
        strlcpy(err.hint,
                "They are produced again when the stream starts; raise walship.stop_timeout "
                "to wait longer.",
                sizeof(err.hint));
        ws_ereport(WARNING, &err, NULL);
    }
    (void)ws_sink_poll(worker.sink, 0, NULL);
    serve_sink_logs();
    confirm(between_records);
    /* what Kafka has of a snapshot is not read again (in a transaction of its own) */
    if (between_records)
        snapshot_save();
    /* a clean stop leaves the slot saved: a crash right after re-sends nothing */
    save_slot(true);
    publish(true);

    if (between_records) {
        FreeDecodingContext(worker.ctx);
        worker.ctx = NULL;
        ReplicationSlotRelease();
    }
    ws_sink_destroy(worker.sink);
    worker.sink = NULL;
    note_position();
    set_state(STREAM_STATE_STOPPED);
    ereport(LOG, (errmsg("walship stream \"%s\" stopped; confirmed up to %X/%X", worker.name,
                         LSN_FORMAT_ARGS(worker.confirmed))));
    proc_exit(0);
}

/* ------------------------------------------------------------------------- */
/* Hooks: called by the plugin while the reorder buffer replays a transaction */

static void hook_begin(void *arg, TransactionId xid, XLogRecPtr commit_lsn)
{
    ws_sink_begin_txn(worker.sink, commit_lsn);
}

void stream_worker_produce(const char *topic, const char *table, const ws_record *record,
                           TransactionId xid, XLogRecPtr commit_lsn)
{
    ws_error err;

    for (;;) {
        ws_produce_result result =
            ws_sink_produce(worker.sink, topic, table, record, commit_lsn, xid, &err);

        if (result == WS_PRODUCE_OK)
            break;
        if (result == WS_PRODUCE_FAILED)
            ws_ereport(
                ERROR, &err,
                psprintf("walship stream \"%s\" producing to topic \"%s\"", worker.name, topic));

        /*
         * Backpressure, never drop: the queue is full (Kafka's acknowledgements make room)
         * or the topic is being created (polling serves its creation). Either way: serve
         * the sink, check interrupts, try again.
         */
        Assert(result == WS_PRODUCE_QUEUE_FULL || result == WS_PRODUCE_TOPIC_PENDING ||
               result == WS_PRODUCE_COMMIT_PENDING);
        service(BACKPRESSURE_POLL_MS, false);
        CHECK_FOR_INTERRUPTS();
        if (stop_pending) {
            note_stop_request();
            if (GetCurrentTimestamp() >= worker.stop_deadline)
                stream_finish(false);
        }
    }
}

static void hook_event(void *arg, const char *topic, const char *table, Oid relid,
                       const ws_record *record, TransactionId xid, XLogRecPtr commit_lsn,
                       TimestampTz commit_time)
{
    snapshot_on_event(relid, record, xid);
    stream_worker_produce(topic, table, record, xid, commit_lsn);
    worker.last_commit_time = commit_time;
    if (stop_pending) {
        note_stop_request();
        if (GetCurrentTimestamp() >= worker.stop_deadline)
            stream_finish(false);
    }
}

static void hook_commit(void *arg, TransactionId xid, XLogRecPtr commit_lsn, uint64 nevents)
{
    ws_sink_end_txn(worker.sink, commit_lsn);
    snapshot_on_commit(xid, nevents);
}

static void hook_moved(void *arg, Oid relid, const uint8 *old_key, size_t old_keylen,
                       TransactionId xid)
{
    snapshot_on_moved(relid, old_key, old_keylen, xid);
}

static void hook_partial(void *arg, Oid relid, const uint8 *key, size_t keylen, TransactionId xid)
{
    snapshot_on_partial(relid, key, keylen, xid);
}

static void hook_truncated(void *arg, Oid relid, TransactionId xid)
{
    snapshot_on_truncated(relid, xid);
}

static void hook_watermark(void *arg, const char *content, Size len, XLogRecPtr end_lsn)
{
    snapshot_on_watermark(content, len, end_lsn);
}

/* The plugin writes nothing to ctx->out once hooks are attached; these are never used. */
static void stream_prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
                                 bool last_write)
{
    resetStringInfo(ctx->out);
}

static void stream_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
                         bool last_write)
{
    resetStringInfo(ctx->out);
}

/* ------------------------------------------------------------------------- */
/* The worker                                                                */

static void stream_worker_exit(int code, Datum arg)
{
    /* a FATAL may leave our lock held; everything else is released by now */
    if (LWLockHeldByMe(walship_shmem->lock))
        LWLockRelease(walship_shmem->lock);
    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    if (worker.entry->generation == worker.generation && worker.entry->pid == MyProcPid) {
        worker.entry->pid = 0;
        if (code != 0 && worker.entry->state != STREAM_STATE_ERROR) {
            worker.entry->state = STREAM_STATE_ERROR;
            strlcpy(worker.entry->last_error,
                    "stream worker exited with an error; see the server log", STREAM_ERROR_MAXLEN);
            worker.entry->last_error_time = GetCurrentTimestamp();
        }
    }
    LWLockRelease(walship_shmem->lock);
}

/* Reads the stream's row in a short transaction of its own. */
static StreamConfig *load_config(void)
{
    StreamConfig *config;

    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    PushActiveSnapshot(GetTransactionSnapshot());
    MemoryContextSwitchTo(worker.context);
    config = stream_config_load(worker.name);
    if (config != NULL && list_length(config->table_oids) == list_length(config->tables)) {
        ListCell *name_cell;
        ListCell *oid_cell;

        forboth(
            name_cell, config->tables, oid_cell,
            config->table_oids) if (!SearchSysCacheExists1(RELOID,
                                                           ObjectIdGetDatum(lfirst_oid(oid_cell))))
            ereport(WARNING, (errmsg("table %s of walship stream \"%s\" was dropped",
                                     strVal(lfirst(name_cell)), worker.name),
                              errdetail("The stream goes on with its other tables; "
                                        "walship.stream_status lists the dropped ones."),
                              errhint("A table created since under the same name is not streamed: "
                                      "drop the stream and create it again to stream it.")));
    }
    PopActiveSnapshot();
    CommitTransactionCommand();
    MemoryContextSwitchTo(worker.context);
    CurrentResourceOwner = worker.owner;
    return config;
}

static void create_sink(void)
{
    ws_sink_config sc;
    ws_error err;

    stream_config_sink(worker.config, &sc);
    /* the same check create_stream made, whoever wrote the catalog row */
    worker.sink = ws_sink_create(&sc, &err);
    if (worker.sink == NULL)
        ws_ereport(ERROR, &err,
                   psprintf("walship stream \"%s\" creating its Kafka producer", worker.name));
}

/*
 * Exactly once, a position Kafka holds must be one of this server's history, or the skip
 * that follows would drop changes Kafka never had: written by this server (or by the
 * primary it was a standby of), not past its WAL, and on the timeline this server's
 * history had at that LSN.
 */
static void check_position(const ws_sink_position *position)
{
    TimeLineID timeline;
    XLogRecPtr end;
    TimeLineID at;

    if (RecoveryInProgress())
        end = GetXLogReplayRecPtr(&timeline);
    else {
        timeline = GetWALInsertionTimeLine();
        end = GetFlushRecPtr(NULL);
    }
#define POSITION_HINT                                                                              \
    "If this server is meant to take over the stream, reset its position: drop the stream, "       \
    "create it again and rebuild what its topics feed."
    if (position->system_identifier != GetSystemIdentifier())
        ereport(
            ERROR,
            (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("walship stream \"%s\": its position in Kafka was written by another "
                    "PostgreSQL server (system identifier %llu, this one is %llu)",
                    worker.name, (unsigned long long)position->system_identifier,
                    (unsigned long long)GetSystemIdentifier()),
             errdetail("The record keyed \"%s\" in the offsets topic says %X/%X.", position->key,
                       LSN_FORMAT_ARGS(position->commit_lsn)),
             errhint("Give the stream its own Kafka property transactional.id. " POSITION_HINT)));
    if (position->commit_lsn > end)
        ereport(ERROR,
                (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                 errmsg("walship stream \"%s\": Kafka holds its changes up to %X/%X, past the "
                        "end of this server's WAL (%X/%X)",
                        worker.name, LSN_FORMAT_ARGS(position->commit_lsn), LSN_FORMAT_ARGS(end)),
                 errdetail("The server was restored from a backup older than what the stream sent; "
                           "changes it commits now would reuse those LSNs and be skipped."),
                 errhint(POSITION_HINT)));
    if (position->timeline != timeline) {
        at = tliOfPointInHistory(position->commit_lsn > 0 ? position->commit_lsn - 1 : 0,
                                 readTimeLineHistory(timeline));
        if (at != position->timeline)
            ereport(
                ERROR,
                (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                 errmsg("walship stream \"%s\": its position in Kafka (%X/%X on timeline %u) is "
                        "not in this server's history, which was on timeline %u there",
                        worker.name, LSN_FORMAT_ARGS(position->commit_lsn), position->timeline, at),
                 errdetail("Kafka holds changes of a timeline this server left before them "
                           "(a failover to a standby that lacked them, or a point-in-time "
                           "recovery)."),
                 errhint(POSITION_HINT)));
    }
#undef POSITION_HINT
}

/* Shows why the stream waits before it streams (exactly once: the coordinator, ...). */
static void report_start_wait(const char *why, TimestampTz since)
{
    TimestampTz now = GetCurrentTimestamp();

    if (walship_stall_timeout <= 0 ||
        !TimestampDifferenceExceeds(since, now, walship_stall_timeout))
        return;
    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    if (worker.entry->generation == worker.generation &&
        (!worker.entry->kafka_error || strcmp(worker.entry->last_error, why) != 0)) {
        /* shown as the error of a running stream that waits for Kafka, as later ones are */
        worker.entry->state = STREAM_STATE_RUNNING;
        worker.entry->kafka_error = true;
        strlcpy(worker.entry->last_error, why, STREAM_ERROR_MAXLEN);
        worker.entry->last_error_time = now;
    }
    LWLockRelease(walship_shmem->lock);
    if (!worker.kafka_error)
        pgstat_report_activity(STATE_RUNNING, "waiting for Kafka");
    worker.kafka_error = true;
}

/*
 * Exactly once: the transactional producer's start, and the position it read from
 * Kafka, which decides what is skipped. Waits (interruptibly) for Kafka as long as it
 * takes; a stop request ends the worker here.
 */
static void start_sink(void)
{
    TimestampTz since = GetCurrentTimestamp();
    ws_sink_position position;
    ws_error err;

    for (;;) {
        ws_start_result result = ws_sink_start(worker.sink, 100, &position, &err);

        serve_sink_logs();
        if (result == WS_START_DONE)
            break;
        if (result == WS_START_FAILED)
            ws_ereport(
                ERROR, &err,
                psprintf("walship stream \"%s\" starting its Kafka transactions", worker.name));
        report_start_wait(err.message, since);
        CHECK_FOR_INTERRUPTS();
        if (stop_pending || !PostmasterIsAlive()) {
            ws_sink_destroy(worker.sink);
            worker.sink = NULL;
            ReplicationSlotRelease();
            note_position();
            set_state(STREAM_STATE_STOPPED);
            proc_exit(0);
        }
    }
    if (!position.found)
        return;
    check_position(&position);
    ereport(LOG, (errmsg("walship stream \"%s\": Kafka holds its transactions up to %X/%X; those "
                         "are not sent again",
                         worker.name, LSN_FORMAT_ARGS(position.commit_lsn))));
}

/*
 * How far decoding may go: the WAL flushed so far and, for a failover slot, no further
 * than the physical standbys of synchronized_standby_slots have confirmed, as walsenders
 * do for such slots: Kafka then never holds a change that a promoted standby lacks. The
 * standbys are asked about one target at a time, so that a stream under steady load
 * still moves on while the end of WAL keeps moving.
 */
static XLogRecPtr decodable_end(void)
{
    XLogRecPtr end = GetFlushRecPtr(NULL);

#if WS_HAVE_FAILOVER_SLOTS
    if (MyReplicationSlot->data.failover) {
        if (worker.standby_target == InvalidXLogRecPtr ||
            worker.standby_target <= worker.standby_ok)
            worker.standby_target = end;
        if (StandbySlotsHaveCaughtup(worker.standby_target, DEBUG1)) {
            worker.standby_ok = worker.standby_target;
            worker.standby_wait_since = 0;
        } else {
            TimestampTz now = GetCurrentTimestamp();

            if (worker.standby_wait_since == 0)
                worker.standby_wait_since = now;
            /* a standby that lags for long: say why, once in a while (PostgreSQL's words) */
            if (walship_stall_timeout > 0 &&
                TimestampDifferenceExceeds(worker.standby_wait_since, now, walship_stall_timeout) &&
                TimestampDifferenceExceeds(worker.standby_warned, now, walship_stall_timeout)) {
                worker.standby_warned = now;
                (void)StandbySlotsHaveCaughtup(worker.standby_target, WARNING);
            }
        }
        worker.decodable = Min(end, worker.standby_ok);
        return worker.decodable;
    }
#endif
    worker.decodable = end;
    return end;
}

/* Interrupts, a stop request (see stream_finish for between_records), a reload. */
static void serve_signals(bool between_records)
{
    CHECK_FOR_INTERRUPTS();
    if (stop_pending)
        stream_finish(between_records);
    if (ConfigReloadPending) {
        ConfigReloadPending = false;
        ProcessConfigFile(PGC_SIGHUP);
    }
}

/*
 * A record is read whole, and may end past what the standbys confirmed when it began
 * before: a commit record must not be decoded until they have all of it. Waits, serving
 * Kafka and stop requests (not between records: nothing past the watermark is confirmed).
 */
static void wait_for_standbys(XLogRecPtr record_end)
{
#if WS_HAVE_FAILOVER_SLOTS
    while (MyReplicationSlot->data.failover && decodable_end() < record_end) {
        service(STANDBY_POLL_MS, false);
        serve_signals(false);
    }
#endif
}

static void decode_forever(void)
{
    LogicalDecodingContext *ctx = worker.ctx;
    int idle_sleep_ms = IDLE_SLEEP_MIN_MS;

    for (;;) {
        XLogRecPtr end_of_wal;
        int records = 0;
        int sleep_ms;

        serve_signals(true);
        /* between records: a snapshot's next chunk, its progress */
        snapshot_step();

        /* read_local_xlog_page waits for WAL that does not exist yet: stay below it */
        end_of_wal = decodable_end();
        while (ctx->reader->EndRecPtr < end_of_wal) {
            XLogRecord *record;
            char *errm = NULL;

            record = XLogReadRecord(ctx->reader, &errm);
            if (errm)
                ereport(ERROR,
                        (errcode(ERRCODE_DATA_CORRUPTED),
                         errmsg("walship stream \"%s\" could not read WAL at %X/%X: %s",
                                worker.name, LSN_FORMAT_ARGS(ctx->reader->EndRecPtr), errm)));
            if (record != NULL) {
                wait_for_standbys(ctx->reader->EndRecPtr);
                LogicalDecodingProcessRecord(ctx, ctx->reader);
            }
            /* transactions the reorder buffer ran for catalog access left us none */
            CurrentResourceOwner = worker.owner;

            CHECK_FOR_INTERRUPTS();
            if (stop_pending)
                stream_finish(true);
            if (++records % RECORDS_PER_SERVICE == 0)
                service(0, true);
        }

        if (records > 0)
            idle_sleep_ms = IDLE_SLEEP_MIN_MS;
        if (ctx->reader->EndRecPtr < decodable_end() || snapshot_ready()) {
            /* more WAL came while we decoded, or a snapshot's next chunk is due: no sleep */
            service(0, true);
            continue;
        }
        sleep_ms = idle_sleep_ms;
        idle_sleep_ms = Min(idle_sleep_ms * 2, IDLE_SLEEP_MAX_MS);
        if (ws_sink_idle(worker.sink)) {
            service(0, true);
            (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, sleep_ms,
                            worker.wait_event);
            ResetLatch(MyLatch);
        } else {
            /* acknowledgements pending: wait for them in librdkafka instead (it returns as
             * soon as it has served one) */
            service(sleep_ms, true);
        }
    }
}

#define RECREATE_HINT                                                                              \
    "Drop the stream with walship.drop_stream('%s') and create it again, then rebuild what "       \
    "its topics feed from a fresh copy of the tables. Only walship should use slots named "        \
    "walship_*: grant REPLICATION sparingly."

/*
 * Why a slot was invalidated, by the name pg_replication_slots.invalidation_reason uses
 * (16+; 15 knows only the removed WAL), what it means and how to keep it from recurring.
 */
static void slot_invalidation(ReplicationSlot *slot, const char **cause, const char **detail,
                              const char **advice)
{
    *cause = "wal_removed";
    *detail = "The WAL it still needed was removed: it fell further behind than "
              "max_slot_wal_keep_size (pg_replication_slots.wal_status is \"lost\").";
    *advice = "Raise max_slot_wal_keep_size, or watch lag_bytes in walship.stream_status.";
#if PG_VERSION_NUM >= 160000
    switch (slot->data.invalidated) {
    case RS_INVAL_NONE:
    case RS_INVAL_WAL_REMOVED:
        break;
    case RS_INVAL_HORIZON:
        *cause = "rows_removed";
        *detail = "Catalog rows its decoding needed were removed by VACUUM (on a standby: the "
                  "primary removed them).";
        *advice = "On a standby, set hot_standby_feedback = on and use a physical slot.";
        break;
    case RS_INVAL_WAL_LEVEL:
        *cause = "wal_level_insufficient";
        *detail = "wal_level was lowered below logical (on the primary, for a standby's slot).";
        *advice = "Keep wal_level = logical.";
        break;
#if PG_VERSION_NUM >= 180000
    case RS_INVAL_IDLE_TIMEOUT:
        *cause = "idle_timeout";
        *detail = "It was not used for longer than idle_replication_slot_timeout (the stream "
                  "was stopped, or its worker could not run).";
        *advice = "Raise idle_replication_slot_timeout (0 disables it), or do not leave the "
                  "stream stopped that long.";
        break;
#endif
    default:
        /* a cause newer than walship */
#if PG_VERSION_NUM >= 180000
        *cause = GetSlotInvalidationCauseName(slot->data.invalidated);
#else
        *cause = "unknown";
#endif
        *detail = "PostgreSQL invalidated it (pg_replication_slots.invalidation_reason).";
        *advice = "";
        break;
    }
#endif
}

/*
 * Acquires the stream's slot, refusing a slot that someone else dropped or moved while
 * no worker held it: the changes in between would be silently missing from Kafka.
 */
static void acquire_own_slot(void)
{
    const char *slot_name = worker.config->slot_name;
    XLogRecPtr left_at = InvalidXLogRecPtr;
    bool noted = stream_position_load(slot_name, &left_at);
    XLogRecPtr confirmed;

    if (SearchNamedReplicationSlot(slot_name, true) == NULL) {
        if (noted)
            ereport(ERROR,
                    (errcode(ERRCODE_UNDEFINED_OBJECT),
                     errmsg("replication slot \"%s\" of stream \"%s\" was dropped outside "
                            "walship; changes after %X/%X were never sent to Kafka",
                            slot_name, worker.name, LSN_FORMAT_ARGS(left_at)),
                     errdetail("The stream had confirmed up to %X/%X when its worker last ran. "
                               "Someone dropped the slot since (pg_drop_replication_slot).",
                               LSN_FORMAT_ARGS(left_at)),
                     errhint(RECREATE_HINT, worker.name)));
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("replication slot \"%s\" of stream \"%s\" does not exist", slot_name,
                               worker.name),
                        errdetail("It was dropped outside walship, or the stream was restored "
                                  "from a dump (a dump holds no slots)."),
                        errhint(RECREATE_HINT, worker.name)));
    }
    ws_replication_slot_acquire(slot_name, true);
    if (ws_slot_invalidated(MyReplicationSlot)) {
        const char *cause;
        const char *detail;
        const char *advice;

        slot_invalidation(MyReplicationSlot, &cause, &detail, &advice);
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("replication slot \"%s\" of stream \"%s\" was invalidated (%s); its "
                               "changes since then cannot be sent",
                               slot_name, worker.name, cause),
                        errdetail("%s", detail),
                        errhint("%s %s", advice, psprintf(RECREATE_HINT, worker.name))));
    }
    confirmed = MyReplicationSlot->data.confirmed_flush;
    if (noted && confirmed > left_at)
        ereport(
            ERROR,
            (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("replication slot \"%s\" of stream \"%s\" was moved outside walship "
                    "from %X/%X to %X/%X; the changes in between were never sent to Kafka",
                    slot_name, worker.name, LSN_FORMAT_ARGS(left_at), LSN_FORMAT_ARGS(confirmed)),
             errdetail("While the stream did not run, something else consumed or advanced "
                       "its slot (pg_replication_slot_advance, pg_logical_slot_get_changes, "
                       "pg_recvlogical)."),
             errhint(RECREATE_HINT, worker.name)));
    /* checked: a crash from here on must not compare against this note */
    if (noted && !stream_position_forget(slot_name))
        ereport(ERROR,
                (errcode_for_file_access(),
                 errmsg("walship stream \"%s\" could not remove the note of its slot's position: "
                        "%m",
                        worker.name)));
    worker.slot_checked = true;
}

static void stream_worker_run(void)
{
    WalshipStreamHooks hooks;
    XLogRecPtr restart_lsn;

    worker.config = load_config();
    if (worker.config == NULL) {
        /* dropped between the launcher's look and ours */
        set_state(STREAM_STATE_STOPPED);
        proc_exit(0);
    }

    create_sink();

    acquire_own_slot();
    start_sink();
    restart_lsn = MyReplicationSlot->data.restart_lsn;
    worker.confirmed = MyReplicationSlot->data.confirmed_flush;
    worker.saved = worker.confirmed;

    /* resume at confirmed_flush; the decoding context lives in worker.context */
    MemoryContextSwitchTo(worker.context);
    worker.ctx = CreateDecodingContext(InvalidXLogRecPtr, worker.config->plugin_options, false,
                                       XL_ROUTINE(.page_read = read_local_xlog_page,
                                                  .segment_open = wal_segment_open,
                                                  .segment_close = wal_segment_close),
                                       stream_prepare_write, stream_write, NULL);
    CurrentResourceOwner = worker.owner;

    memset(&hooks, 0, sizeof(hooks));
    hooks.begin = hook_begin;
    hooks.event = hook_event;
    hooks.commit = hook_commit;
    hooks.moved = hook_moved;
    hooks.watermark = hook_watermark;
    hooks.partial = hook_partial;
    hooks.truncated = hook_truncated;
    if (worker.config->table_oids != NIL) {
        Oid *relids = palloc(sizeof(Oid) * list_length(worker.config->table_oids));
        int n = 0;
        ListCell *lc;

        foreach (lc, worker.config->table_oids)
            relids[n++] = lfirst_oid(lc);
        hooks.tables = relids;
        hooks.ntables = n;
    }
    walship_plugin_attach_hooks(worker.ctx, &hooks);
    snapshot_attach(worker.ctx, worker.sink, worker.config, worker.context);

    /* transactions that commit after confirmed_flush may have begun at restart_lsn */
    XLogBeginRead(worker.ctx->reader, restart_lsn);
    InvalidateSystemCaches();

    set_state(STREAM_STATE_RUNNING);
    publish(true);
    pgstat_report_activity(STATE_RUNNING, "streaming");
    ereport(LOG, (errmsg("walship stream \"%s\" started: slot \"%s\", decoding from %X/%X, "
                         "confirmed up to %X/%X",
                         worker.name, worker.config->slot_name, LSN_FORMAT_ARGS(restart_lsn),
                         LSN_FORMAT_ARGS(worker.confirmed))));

    decode_forever();
}

void walship_stream_main(Datum main_arg)
{
    int index = DatumGetInt32(main_arg);
    const char *extra = MyBgworkerEntry->bgw_extra;
    Oid dboid;
    bool mine;
    bool stop_requested = false;

    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, stream_worker_sigterm);
    BackgroundWorkerUnblockSignals();

    if (walship_shmem == NULL || index < 0 || index >= walship_shmem->max_streams)
        elog(FATAL, "walship stream worker started without its shared memory entry");
    memcpy(&worker.generation, extra, sizeof(uint32));
    memcpy(&dboid, extra + sizeof(uint32), sizeof(Oid));
    strlcpy(worker.name, extra + sizeof(uint32) + sizeof(Oid), NAMEDATALEN);
    worker.entry = &walship_shmem->streams[index];

    /* claim the entry, unless it has moved on or a stop came first */
    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    mine = worker.entry->in_use && worker.entry->generation == worker.generation &&
           strcmp(worker.entry->name, worker.name) == 0 && worker.entry->pid == 0;
    if (mine) {
        stop_requested = worker.entry->stop_requested;
        if (stop_requested)
            worker.entry->state = STREAM_STATE_STOPPED;
        else {
            worker.entry->pid = MyProcPid;
            worker.entry->state = STREAM_STATE_STARTING;
            worker.entry->started_at = GetCurrentTimestamp();
            worker.entry->events_produced = 0;
            worker.entry->bytes_produced = 0;
            worker.entry->events_acked = 0;
            worker.entry->in_flight = 0;
            worker.entry->kafka_error = false;
            worker.dead_letters_before = worker.entry->dead_letters;
        }
    }
    LWLockRelease(walship_shmem->lock);
    if (!mine || stop_requested)
        proc_exit(0);
    before_shmem_exit(stream_worker_exit, (Datum)0);

    BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
    pgstat_report_appname(MyBgworkerEntry->bgw_name);
    worker.wait_event = ws_wait_event("WalshipStreamIdle");

    worker.context =
        AllocSetContextCreate(TopMemoryContext, "walship stream", ALLOCSET_DEFAULT_SIZES);
    worker.owner = ResourceOwnerCreate(NULL, "walship stream");
    CurrentResourceOwner = worker.owner;

    PG_TRY();
    {
        stream_worker_run();
    }
    PG_CATCH();
    {
        ErrorData *edata;
        char *why;

        /* record why for the status view, then exit 1 (the error becomes FATAL) */
        MemoryContextSwitchTo(worker.context);
        edata = CopyErrorData();
        /*
         * The hint says how to recover, the first line of the context what the worker was
         * doing (which topic, which stream): the status view shows both.
         */
        {
            char *context = edata->context != NULL ? pstrdup(edata->context) : NULL;

            if (context != NULL)
                context[strcspn(context, "\n")] = '\0';
            why = psprintf("%s%s%s%s%s", edata->message ? edata->message : "unknown error",
                           edata->hint ? " HINT: " : "", edata->hint ? edata->hint : "",
                           context != NULL && context[0] != '\0' ? " CONTEXT: " : "",
                           context != NULL ? context : "");
        }
        /* cut on a character boundary: the view's text must stay valid */
        why[pg_mbcliplen(why, strlen(why), STREAM_ERROR_MAXLEN - 1)] = '\0';
        LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
        if (worker.entry->generation == worker.generation) {
            worker.entry->state = STREAM_STATE_ERROR;
            strlcpy(worker.entry->last_error, why, STREAM_ERROR_MAXLEN);
            worker.entry->last_error_time = GetCurrentTimestamp();
            worker.entry->kafka_error = false;
        }
        LWLockRelease(walship_shmem->lock);
        /* the slot stays where this worker confirmed it: the next one checks that */
        if (worker.slot_checked &&
            !stream_position_save(worker.config->slot_name, slot_confirmed()))
            worker.slot_checked = false;
        PG_RE_THROW();
    }
    PG_END_TRY();
}
