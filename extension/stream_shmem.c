/*
 * stream_shmem.c: the shared stream table.
 *
 * One entry per stream, claimed by name, holding what the launcher, the SQL functions
 * and the stream's worker tell each other (stop requests, the worker's pid and state)
 * and what the status view shows (counters, last error). One LWLock protects it all;
 * it is held for a few copies at a time and never across an ereport.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "walship_streams.h"

WalshipShmem *walship_shmem = NULL;

Size stream_shmem_size(void)
{
    return add_size(offsetof(WalshipShmem, streams),
                    mul_size(sizeof(StreamShared), walship_max_streams));
}

void stream_shmem_init(void)
{
    bool found;

    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    walship_shmem = ShmemInitStruct("walship streams", stream_shmem_size(), &found);
    if (!found) {
        memset(walship_shmem, 0, stream_shmem_size());
        walship_shmem->lock = &(GetNamedLWLockTranche("walship"))->lock;
        walship_shmem->max_streams = walship_max_streams;
    }
    LWLockRelease(AddinShmemInitLock);
}

void stream_require_preloaded(void)
{
    if (walship_shmem == NULL)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("walship streams need walship in shared_preload_libraries"),
                        errhint("Add walship to shared_preload_libraries (and to "
                                "output_plugin_libraries where the server has that setting), then "
                                "restart the server.")));
}

StreamShared *stream_shmem_find(const char *name)
{
    Assert(LWLockHeldByMeInMode(walship_shmem->lock, LW_EXCLUSIVE));
    for (int i = 0; i < walship_shmem->max_streams; i++) {
        StreamShared *entry = &walship_shmem->streams[i];

        if (entry->in_use && strcmp(entry->name, name) == 0)
            return entry;
    }
    return NULL;
}

StreamShared *stream_shmem_claim(const char *name)
{
    StreamShared *entry = stream_shmem_find(name);
    uint32 generation;

    if (entry != NULL)
        return entry;
    for (int i = 0; i < walship_shmem->max_streams; i++) {
        entry = &walship_shmem->streams[i];
        if (entry->in_use)
            continue;
        generation = entry->generation + 1;
        memset(entry, 0, sizeof(*entry));
        entry->in_use = true;
        entry->generation = generation;
        strlcpy(entry->name, name, NAMEDATALEN);
        return entry;
    }
    return NULL;
}

void stream_wake_launcher(void)
{
    if (walship_shmem == NULL)
        return;
    LWLockAcquire(walship_shmem->lock, LW_SHARED);
    if (walship_shmem->launcher_latch != NULL)
        SetLatch(walship_shmem->launcher_latch);
    LWLockRelease(walship_shmem->lock);
}

void stream_wake_snapshots(const char *name)
{
    StreamShared *entry;

    if (walship_shmem == NULL)
        return;
    /* the worker reads the counter when it publishes its status, at least every 100 ms */
    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    entry = stream_shmem_find(name);
    if (entry != NULL)
        entry->snapshot_requests++;
    LWLockRelease(walship_shmem->lock);
}

/* Records an error for the status view, if entry still belongs to this generation. */
void stream_record_error(StreamShared *entry, uint32 generation, const char *message)
{
    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    if (entry->in_use && entry->generation == generation) {
        strlcpy(entry->last_error, message, STREAM_ERROR_MAXLEN);
        entry->last_error_time = GetCurrentTimestamp();
    }
    LWLockRelease(walship_shmem->lock);
}

/* ------------------------------------------------------------------------- */
/* walship._stream_runtime(): the shared table as rows; the view adds the    */
/* catalog and the slot.                                                     */

WS_SQL_FUNCTION(walship_stream_runtime);

#define RUNTIME_COLS 13

static Datum timestamp_or_null(TimestampTz t, bool *isnull)
{
    *isnull = (t == 0);
    return TimestampTzGetDatum(t);
}

Datum walship_stream_runtime(PG_FUNCTION_ARGS)
{
    ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
    StreamShared *copy;
    int n = 0;

    stream_require_preloaded();
    InitMaterializedSRF(fcinfo, 0);

    copy = palloc(sizeof(StreamShared) * walship_shmem->max_streams);
    LWLockAcquire(walship_shmem->lock, LW_SHARED);
    for (int i = 0; i < walship_shmem->max_streams; i++)
        if (walship_shmem->streams[i].in_use)
            copy[n++] = walship_shmem->streams[i];
    LWLockRelease(walship_shmem->lock);

    for (int i = 0; i < n; i++) {
        StreamShared *e = &copy[i];
        Datum values[RUNTIME_COLS];
        bool nulls[RUNTIME_COLS];
        const char *state;

        memset(nulls, 0, sizeof(nulls));
        switch (e->state) {
        case STREAM_STATE_RUNNING:
            state = e->kafka_error ? "error" : "running";
            break;
        case STREAM_STATE_ERROR:
            state = "error";
            break;
        case STREAM_STATE_STOPPED:
            state = "stopped";
            break;
        default:
            state = "starting";
            break;
        }
        values[0] = CStringGetTextDatum(e->name);
        values[1] = CStringGetTextDatum(state);
        values[2] = Int32GetDatum(e->pid);
        nulls[2] = (e->pid == 0);
        values[3] = Int64GetDatum((int64)e->events_produced);
        values[4] = Int64GetDatum((int64)e->bytes_produced);
        values[5] = Int64GetDatum((int64)e->events_acked);
        values[6] = Int64GetDatum((int64)e->in_flight);
        values[7] = timestamp_or_null(e->last_commit_time, &nulls[7]);
        values[8] = timestamp_or_null(e->last_ack_time, &nulls[8]);
        values[9] = CStringGetTextDatum(e->last_error);
        nulls[9] = (e->last_error[0] == '\0');
        values[10] = timestamp_or_null(e->last_error_time, &nulls[10]);
        values[11] = timestamp_or_null(e->started_at, &nulls[11]);
        values[12] = Int64GetDatum((int64)e->dead_letters);
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    return (Datum)0;
}
