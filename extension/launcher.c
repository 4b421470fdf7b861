/*
 * launcher.c: module initialization and the launcher background worker.
 *
 * Loaded through shared_preload_libraries, walship defines its GUCs, asks for the
 * shared stream table and registers one launcher. The launcher connects to
 * walship.database, reads the enabled streams from walship.streams in short
 * transactions, and keeps exactly one stream worker running per enabled stream:
 * it starts missing ones, asks the ones whose stream was disabled or dropped to stop,
 * and restarts failed ones after an exponential backoff (1 s doubling to 60 s).
 * SQL functions wake it through its latch; it also rescans every walship.naptime.
 *
 * Loaded any other way (pg_recvlogical, SQL decoding functions, CREATE EXTENSION
 * for decode_event), the library is just the output plugin: nothing here starts,
 * and the stream SQL functions refuse with a hint.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "nodes/makefuncs.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "replication/slot.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/spin.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include <signal.h>

#include "walship_streams.h"

char *walship_database = NULL;
int walship_max_streams = 8;
int walship_naptime = 10;
int walship_stop_timeout = 10000;
int walship_stall_timeout = 30000;
int walship_snapshot_max_in_flight = 20000;
bool walship_preloaded = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* the backoff after a failed worker: 1 s, doubling up to this */
#define RESTART_BACKOFF_MAX_MS 60000
/* a worker that ran this long before failing starts its backoff over */
#define RESTART_BACKOFF_RESET_MS 60000

PGDLLEXPORT void _PG_init(void);

static void walship_shmem_request(void)
{
    if (prev_shmem_request_hook)
        prev_shmem_request_hook();
    RequestAddinShmemSpace(stream_shmem_size());
    RequestNamedLWLockTranche("walship", 1);
}

static void walship_shmem_startup(void)
{
    if (prev_shmem_startup_hook)
        prev_shmem_startup_hook();
    stream_shmem_init();
}

void _PG_init(void)
{
    BackgroundWorker bgw;

    /*
     * Only the postmaster loading us from shared_preload_libraries sets up streaming;
     * every other load (a walsender decoding with the plugin, a backend running
     * decode_event) must keep working without it.
     */
    if (!process_shared_preload_libraries_in_progress)
        return;
    walship_preloaded = true;

    DefineCustomStringVariable("walship.database",
                               "Database that holds the walship.streams catalog.",
                               "The launcher connects to it; streams are created there.",
                               &walship_database, "postgres", PGC_POSTMASTER, 0, NULL, NULL, NULL);
    DefineCustomIntVariable("walship.max_streams", "Maximum number of streams.", NULL,
                            &walship_max_streams, 8, 1, 1024, PGC_POSTMASTER, 0, NULL, NULL, NULL);
    DefineCustomIntVariable(
        "walship.naptime", "Time between two scans of the stream catalog by the launcher.",
        "SQL functions wake the launcher at once; the scan catches "
        "anything else, such as direct updates of walship.streams.",
        &walship_naptime, 10, 1, 3600, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
    DefineCustomIntVariable("walship.stop_timeout",
                            "How long a stopping stream worker waits for Kafka to acknowledge "
                            "what it has produced.",
                            "What is still unacknowledged then is produced again when the "
                            "stream starts again.",
                            &walship_stop_timeout, 10000, 0, 600000, PGC_SIGHUP, GUC_UNIT_MS, NULL,
                            NULL, NULL);
    DefineCustomIntVariable("walship.stall_timeout",
                            "How long Kafka may acknowledge none of a stream's events in flight "
                            "before the stream shows state error.",
                            "A broker that accepts connections but answers nothing (frozen, "
                            "overloaded) is otherwise invisible. The worker keeps waiting and "
                            "recovers by itself; 0 disables the check.",
                            &walship_stall_timeout, 30000, 0, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
                            NULL, NULL, NULL);
    DefineCustomIntVariable("walship.snapshot_max_in_flight",
                            "How many events a stream may have in flight to Kafka before its "
                            "snapshot reads another chunk.",
                            "Bounds what librdkafka holds for a snapshot and what an interruption "
                            "sends again; at least 4 chunks are always allowed.",
                            &walship_snapshot_max_in_flight, 20000, 100, 100000000, PGC_SIGHUP, 0,
                            NULL, NULL, NULL);
    MarkGUCPrefixReserved("walship");

    prev_shmem_request_hook = shmem_request_hook;
    shmem_request_hook = walship_shmem_request;
    prev_shmem_startup_hook = shmem_startup_hook;
    shmem_startup_hook = walship_shmem_startup;
    stream_install_drop_hook();

    /*
     * pg_upgrade starts the old and the new server with the libraries preloaded: no
     * launcher there, so no stream decodes or moves a slot while the cluster is copied
     * (pg_cron does the same).
     */
    if (IsBinaryUpgrade)
        return;

    memset(&bgw, 0, sizeof(bgw));
    bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
    /* the launcher exits non-zero only on errors; come back after a pause */
    bgw.bgw_restart_time = 10;
    snprintf(bgw.bgw_library_name, BGW_MAXLEN, "walship");
    snprintf(bgw.bgw_function_name, BGW_MAXLEN, "walship_launcher_main");
    snprintf(bgw.bgw_name, BGW_MAXLEN, "walship launcher");
    snprintf(bgw.bgw_type, BGW_MAXLEN, "walship launcher");
    RegisterBackgroundWorker(&bgw);
}

/* ------------------------------------------------------------------------- */
/* The launcher                                                              */

/* What the launcher alone knows about the worker of one shared entry. */
typedef struct LauncherEntry {
    uint32 generation; /* of the shared entry this describes */
    BackgroundWorkerHandle *handle;
    int failures;           /* consecutive failed runs */
    TimestampTz next_start; /* not before this */
    TimestampTz started_at;
    bool terminate_sent;
    bool register_warned;
} LauncherEntry;

/* One row of walship.streams, as the launcher needs it. */
typedef struct CatalogStream {
    char name[NAMEDATALEN];
    bool enabled;
} CatalogStream;

static LauncherEntry *launcher_entries;
static MemoryContext scan_context;

static void launcher_detach(int code, Datum arg)
{
    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    if (walship_shmem->launcher_pid == MyProcPid) {
        walship_shmem->launcher_pid = 0;
        walship_shmem->launcher_latch = NULL;
    }
    LWLockRelease(walship_shmem->lock);
}

/*
 * Reads walship.streams in a short transaction of its own. Returns false, after saying
 * so once, while the extension is not installed in walship.database.
 */
static bool launcher_read_catalog(CatalogStream **streams, int *nstreams)
{
    static bool missing_reported = false;
    bool installed;
    MemoryContext caller = CurrentMemoryContext;

    *streams = NULL;
    *nstreams = 0;

    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    PushActiveSnapshot(GetTransactionSnapshot());
    pgstat_report_activity(STATE_RUNNING, "reading walship.streams");

    installed = OidIsValid(get_extension_oid("walship", true)) &&
                OidIsValid(get_namespace_oid("walship", true)) &&
                OidIsValid(RangeVarGetRelid(makeRangeVar("walship", "streams", -1), NoLock, true));
    if (installed) {
        int ret;

        missing_reported = false;
        if (SPI_connect() != SPI_OK_CONNECT)
            elog(ERROR, "SPI_connect failed");
        ret = SPI_execute("SELECT name, enabled FROM walship.streams ORDER BY name", true, 0);
        if (ret != SPI_OK_SELECT)
            elog(ERROR, "could not read walship.streams: SPI error %d", ret);
        if (SPI_processed > 0) {
            *streams = MemoryContextAllocZero(caller, sizeof(CatalogStream) * SPI_processed);
            for (uint64 i = 0; i < SPI_processed; i++) {
                HeapTuple tup = SPI_tuptable->vals[i];
                TupleDesc desc = SPI_tuptable->tupdesc;
                bool isnull;
                char *name = SPI_getvalue(tup, desc, 1);
                Datum enabled = SPI_getbinval(tup, desc, 2, &isnull);

                strlcpy((*streams)[i].name, name ? name : "", NAMEDATALEN);
                (*streams)[i].enabled = !isnull && DatumGetBool(enabled);
            }
            *nstreams = (int)SPI_processed;
        }
        SPI_finish();
    } else if (!missing_reported) {
        ereport(LOG, (errmsg("walship launcher: extension \"walship\" is not installed in "
                             "database \"%s\"; waiting for it",
                             walship_database),
                      errhint("Run CREATE EXTENSION walship in database \"%s\", or set "
                              "walship.database to the database that has it.",
                              walship_database)));
        missing_reported = true;
    }

    PopActiveSnapshot();
    CommitTransactionCommand();
    pgstat_report_activity(STATE_IDLE, NULL);
    MemoryContextSwitchTo(caller);
    return installed;
}

static const CatalogStream *find_catalog_stream(const CatalogStream *streams, int nstreams,
                                                const char *name)
{
    for (int i = 0; i < nstreams; i++)
        if (strcmp(streams[i].name, name) == 0)
            return &streams[i];
    return NULL;
}

/* Is a worker running (or about to) for entry i? */
static bool launcher_worker_alive(int i, pid_t shm_pid)
{
    LauncherEntry *le = &launcher_entries[i];

    if (le->handle != NULL) {
        pid_t pid;
        BgwHandleStatus status = GetBackgroundWorkerPid(le->handle, &pid);

        if (status == BGWH_NOT_YET_STARTED || status == BGWH_STARTED)
            return true;
        return false; /* stopped: launcher_reap() handles it */
    }
    /* a worker started by an earlier launcher, which we have no handle for */
    return shm_pid != 0;
}

/* A worker we started has exited: decide when it may start again. */
static void launcher_reap(int i, StreamShared *entry, bool wanted, TimestampTz now)
{
    LauncherEntry *le = &launcher_entries[i];
    bool failed;
    long delay_ms;

    pfree(le->handle);
    le->handle = NULL;
    le->terminate_sent = false;

    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    failed = entry->state != STREAM_STATE_STOPPED;
    if (failed && entry->state != STREAM_STATE_ERROR) {
        /* it died before it could say why (e.g. a FATAL while connecting) */
        entry->state = STREAM_STATE_ERROR;
        strlcpy(entry->last_error,
                "stream worker exited before it started streaming; see the server log",
                STREAM_ERROR_MAXLEN);
        entry->last_error_time = now;
    }
    entry->pid = 0;
    LWLockRelease(walship_shmem->lock);

    if (!wanted)
        return;
    if (!failed) {
        /* stopped cleanly although still enabled, e.g. pg_terminate_backend */
        le->next_start = TimestampTzPlusMilliseconds(now, 1000);
        return;
    }
    if (TimestampDifferenceExceeds(le->started_at, now, RESTART_BACKOFF_RESET_MS))
        le->failures = 0;
    le->failures++;
    delay_ms = 1000L << Min(le->failures - 1, 6);
    delay_ms = Min(delay_ms, RESTART_BACKOFF_MAX_MS);
    le->next_start = TimestampTzPlusMilliseconds(now, delay_ms);
    ereport(LOG, (errmsg("walship stream \"%s\" failed; restarting it in %ld ms", entry->name,
                         delay_ms)));
}

static void launcher_start_worker(int i, StreamShared *entry, TimestampTz now)
{
    LauncherEntry *le = &launcher_entries[i];
    BackgroundWorker bgw;
    char *extra;
    MemoryContext old;
    bool registered;

    memset(&bgw, 0, sizeof(bgw));
    bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
    /* the launcher restarts failed workers itself, with a backoff and a state to show */
    bgw.bgw_restart_time = BGW_NEVER_RESTART;
    snprintf(bgw.bgw_library_name, BGW_MAXLEN, "walship");
    snprintf(bgw.bgw_function_name, BGW_MAXLEN, "walship_stream_main");
    snprintf(bgw.bgw_name, BGW_MAXLEN, "walship stream %s", entry->name);
    snprintf(bgw.bgw_type, BGW_MAXLEN, "walship stream");
    bgw.bgw_main_arg = Int32GetDatum(i);
    bgw.bgw_notify_pid = MyProcPid;
    /* the worker checks that entry i is still this stream's: generation, name, database */
    extra = bgw.bgw_extra;
    memcpy(extra, &entry->generation, sizeof(uint32));
    memcpy(extra + sizeof(uint32), &MyDatabaseId, sizeof(Oid));
    StaticAssertStmt(sizeof(uint32) + sizeof(Oid) + NAMEDATALEN <= BGW_EXTRALEN,
                     "bgw_extra too small");
    strlcpy(extra + sizeof(uint32) + sizeof(Oid), entry->name, NAMEDATALEN);

    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    entry->state = STREAM_STATE_STARTING;
    entry->kafka_error = false;
    LWLockRelease(walship_shmem->lock);

    /* the handle outlives this pass (whose memory is reset) */
    old = MemoryContextSwitchTo(TopMemoryContext);
    registered = RegisterDynamicBackgroundWorker(&bgw, &le->handle);
    MemoryContextSwitchTo(old);
    if (!registered) {
        le->handle = NULL;
        /* the status view says so, rather than "starting" for ever */
        LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
        entry->state = STREAM_STATE_ERROR;
        LWLockRelease(walship_shmem->lock);
        stream_record_error(entry, entry->generation,
                            "no background worker slot is free for the stream's worker; raise "
                            "max_worker_processes (and restart the server)");
        if (!le->register_warned)
            ereport(WARNING, (errmsg("walship launcher could not start a worker for stream \"%s\"",
                                     entry->name),
                              errhint("Every background worker slot is in use; raise "
                                      "max_worker_processes.")));
        le->register_warned = true;
        le->next_start = TimestampTzPlusMilliseconds(now, 5000);
        return;
    }
    le->register_warned = false;
    le->started_at = now;
    le->terminate_sent = false;
}

/* Drops one slot of a stream that no longer exists; a failure is a warning. */
static void drop_orphan_slot(const char *name)
{
    MemoryContext cxt = CurrentMemoryContext;

    PG_TRY();
    {
        ReplicationSlotDrop(name, true);
        (void)stream_position_forget(name);
        (void)stream_slot_forget_owned(name);
        ereport(LOG, (errmsg("walship launcher dropped replication slot \"%s\": its stream "
                             "no longer exists",
                             name),
                      errdetail("The stream's catalog row is gone (deleted, its schema "
                                "dropped, or its create_stream lost in a crash); the slot "
                                "would hold WAL for ever.")));
    }
    PG_CATCH();
    {
        ErrorData *edata;

        MemoryContextSwitchTo(cxt);
        edata = CopyErrorData();
        FlushErrorState();
        if (MyReplicationSlot != NULL)
            ReplicationSlotRelease();
        ereport(WARNING, (errmsg("walship launcher could not drop replication slot \"%s\" "
                                 "of a stream that no longer exists: %s",
                                 name, edata->message)));
        FreeErrorData(edata);
    }
    PG_END_TRY();
}

/*
 * Drops the slots create_stream made whose stream is gone: no catalog row (deleted by
 * hand, the schema dropped, or create_stream's transaction lost in a crash), no process
 * using the slot, and its creating backend gone. The creator's check comes before a
 * fresh read of the catalog: a creator that has exited has committed or aborted, so a
 * commit shows in that read.
 */
static void launcher_drop_orphan_slots(void)
{
    List *candidates = NIL;
    List *orphans = NIL;
    ListCell *lc;
    CatalogStream *streams;
    int nstreams;
    size_t prefix_len = strlen(STREAM_SLOT_PREFIX);

    LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
    for (int i = 0; i < max_replication_slots; i++) {
        ReplicationSlot *slot = &ReplicationSlotCtl->replication_slots[i];
        char name[NAMEDATALEN];
        bool candidate;

        if (!slot->in_use)
            continue;
        SpinLockAcquire(&slot->mutex);
        strlcpy(name, NameStr(slot->data.name), NAMEDATALEN);
        candidate = slot->active_pid == 0 && slot->data.database == MyDatabaseId &&
                    strcmp(NameStr(slot->data.plugin), "walship") == 0 &&
                    strncmp(name, STREAM_SLOT_PREFIX, prefix_len) == 0;
        SpinLockRelease(&slot->mutex);
        if (candidate)
            candidates = lappend(candidates, pstrdup(name));
    }
    LWLockRelease(ReplicationSlotControlLock);
    if (candidates == NIL)
        return;

    foreach (lc, candidates) {
        char *name = lfirst(lc);
        int creator = 0;

        if (!stream_slot_owned(name, &creator))
            continue; /* not made by create_stream: not ours to drop */
        if (creator != 0 && BackendPidGetProc(creator) != NULL)
            continue; /* create_stream may still be in its transaction */
        orphans = lappend(orphans, name);
    }
    if (orphans == NIL)
        return;

    (void)launcher_read_catalog(&streams, &nstreams);
    foreach (lc, orphans) {
        char *name = lfirst(lc);

        if (find_catalog_stream(streams, nstreams, name + prefix_len) != NULL)
            continue;
        drop_orphan_slot(name);
    }
    if (streams)
        pfree(streams);
}

/*
 * One pass: make the running workers match the catalog. Returns how long the launcher
 * may sleep before a pending restart is due (ms; -1 = nothing pending).
 */
static long launcher_pass(void)
{
    CatalogStream *streams;
    int nstreams;
    TimestampTz now;
    long sleep_ms = -1;
    bool table_full = false;

    /*
     * Without the extension (DROP EXTENSION, DROP SCHEMA walship CASCADE) there are no
     * streams: the pass below stops whatever workers still run.
     */
    (void)launcher_read_catalog(&streams, &nstreams);

    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    for (int s = 0; s < nstreams; s++) {
        StreamShared *entry = stream_shmem_claim(streams[s].name);

        if (entry == NULL) {
            table_full = true;
            continue;
        }
        /* the catalog says stopped now: a pending stop has done its job */
        if (!streams[s].enabled)
            entry->stop_requested = false;
    }
    LWLockRelease(walship_shmem->lock);
    if (table_full)
        ereport(WARNING, (errmsg("walship has more streams than walship.max_streams (%d)",
                                 walship_max_streams),
                          errhint("Raise walship.max_streams and restart the server.")));

    now = GetCurrentTimestamp();
    for (int i = 0; i < walship_shmem->max_streams; i++) {
        StreamShared *entry = &walship_shmem->streams[i];
        LauncherEntry *le = &launcher_entries[i];
        const CatalogStream *cs;
        bool in_use, stop_requested, restart_now, wanted, alive;
        pid_t pid;
        uint32 generation;
        char name[NAMEDATALEN];

        LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
        in_use = entry->in_use;
        generation = entry->generation;
        stop_requested = entry->stop_requested;
        pid = entry->pid;
        strlcpy(name, entry->name, NAMEDATALEN);
        restart_now = entry->restart_now;
        LWLockRelease(walship_shmem->lock);

        if (!in_use)
            continue;
        if (le->generation != generation) {
            /* a new stream in this entry (entries are freed only once their worker is reaped) */
            Assert(le->handle == NULL);
            memset(le, 0, sizeof(*le));
            le->generation = generation;
        }

        cs = find_catalog_stream(streams, nstreams, name);
        wanted = cs != NULL && cs->enabled && !stop_requested;
        alive = launcher_worker_alive(i, pid);

        if (alive) {
            if (!wanted && !le->terminate_sent) {
                if (le->handle != NULL)
                    TerminateBackgroundWorker(le->handle);
                else if (pid != 0)
                    kill(pid, SIGTERM);
                le->terminate_sent = true;
            }
            continue;
        }
        if (le->handle != NULL)
            launcher_reap(i, entry, wanted, now);
        /*
         * A start without delay, asked for by start_stream, or by alter_stream whose
         * worker has just exited to read the new row: kept until no worker runs.
         */
        if (restart_now) {
            le->failures = 0;
            le->next_start = 0;
            LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
            entry->restart_now = false;
            LWLockRelease(walship_shmem->lock);
        }

        if (cs == NULL) {
            /* dropped and its worker gone: the entry can serve another stream */
            LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
            if (entry->pid == 0 && entry->generation == generation)
                entry->in_use = false;
            LWLockRelease(walship_shmem->lock);
            continue;
        }
        if (!wanted)
            continue;
        if (le->next_start != 0 && now < le->next_start) {
            long ms = (long)((le->next_start - now) / 1000) + 1;

            if (sleep_ms < 0 || ms < sleep_ms)
                sleep_ms = ms;
            continue;
        }
        launcher_start_worker(i, entry, now);
        if (le->handle == NULL && (sleep_ms < 0 || sleep_ms > 5000))
            sleep_ms = 5000;
    }

    if (streams)
        pfree(streams);
    launcher_drop_orphan_slots();
    return sleep_ms;
}

void walship_launcher_main(Datum main_arg)
{
    uint32 wait_event;

    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
    BackgroundWorkerUnblockSignals();

    if (walship_shmem == NULL)
        elog(FATAL, "walship shared memory is not initialized");

    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    walship_shmem->launcher_pid = MyProcPid;
    walship_shmem->launcher_latch = MyLatch;
    LWLockRelease(walship_shmem->lock);
    before_shmem_exit(launcher_detach, (Datum)0);

    BackgroundWorkerInitializeConnection(walship_database, NULL, 0);
    pgstat_report_appname("walship launcher");

    launcher_entries = MemoryContextAllocZero(TopMemoryContext,
                                              sizeof(LauncherEntry) * walship_shmem->max_streams);
    scan_context =
        AllocSetContextCreate(TopMemoryContext, "walship launcher scan", ALLOCSET_DEFAULT_SIZES);
    ereport(LOG, (errmsg("walship launcher started in database \"%s\"", walship_database)));
    wait_event = ws_wait_event("WalshipLauncherMain");

    for (;;) {
        long sleep_ms;
        long naptime_ms;
        MemoryContext old;

        CHECK_FOR_INTERRUPTS();
        if (ShutdownRequestPending)
            break;
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
        }

        old = MemoryContextSwitchTo(scan_context);
        sleep_ms = launcher_pass();
        MemoryContextSwitchTo(old);
        MemoryContextReset(scan_context);

        naptime_ms = walship_naptime * 1000L;
        if (sleep_ms < 0 || sleep_ms > naptime_ms)
            sleep_ms = naptime_ms;
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, sleep_ms,
                        wait_event);
        ResetLatch(MyLatch);
    }

    /*
     * On a server shutdown the postmaster stops the stream workers itself. Exit non-zero
     * so that a launcher terminated alone (pg_terminate_backend) comes back.
     */
    proc_exit(1);
}
