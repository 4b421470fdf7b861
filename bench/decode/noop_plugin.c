/*
 * noop_plugin.c: walship_bench_noop, the floor under every output plugin's cost in the
 * decode benchmark.
 *
 * It decodes everything the server hands an output plugin (the reorder buffer, TOAST
 * reassembly, the historic catalog lookups happen before any callback) and writes one
 * byte per change, so a peek through it costs what the server spends to decode the WAL
 * and hand each change to a plugin: what remains of a real plugin's time is its own.
 *
 * The same library has walship_bench_decode(slot, options text[]), the benchmark's
 * "--via direct": it decodes a slot to the end of WAL in the calling backend with any
 * plugin, as pg_logical_slot_peek_binary_changes does (the slot does not move), but each
 * output row is only counted and thrown away: no tuplestore, no walsender, no socket. So
 * what it measures is decoding plus the plugin, the path a stream worker takes, without
 * a transport whose cost grows with the output's size. It returns the rows, the bytes,
 * and the backend's CPU and wall seconds spent decoding.
 */
#include "postgres.h"

#include <time.h>

#include "access/htup_details.h"
#include "access/xlog.h"
#include "access/xlogutils.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "replication/slot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(walship_bench_decode);

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

static void noop_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
    opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
    opt->receive_rewrites = false;
}

static void noop_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn) {}

static void noop_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
}

static void noop_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation relation,
                        ReorderBufferChange *change)
{
    OutputPluginPrepareWrite(ctx, true);
    appendStringInfoChar(ctx->out, 'c');
    OutputPluginWrite(ctx, true);
}

void _PG_output_plugin_init(OutputPluginCallbacks *cb)
{
    cb->startup_cb = noop_startup;
    cb->begin_cb = noop_begin;
    cb->change_cb = noop_change;
    cb->commit_cb = noop_commit;
}

/* ---------------------------------------------------------------- walship_bench_decode */

typedef struct CountingWriter {
    int64 rows;
    int64 bytes;
} CountingWriter;

static void counting_prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
                                   bool last_write)
{
    resetStringInfo(ctx->out);
}

static void counting_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
                           bool last_write)
{
    CountingWriter *w = (CountingWriter *)ctx->output_writer_private;

    w->rows++;
    w->bytes += ctx->out->len;
}

static double seconds(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* text[] of name, value pairs, as the SQL decoding functions take them */
static List *options_list(ArrayType *arr)
{
    Datum *elems;
    bool *nulls;
    int n;
    List *options = NIL;

    if (ARR_NDIM(arr) > 1)
        ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
                        errmsg("options must be a one-dimensional array of name, value pairs")));
    deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
    if (n % 2 != 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("options must be name, value pairs: an even number of elements")));
    for (int i = 0; i < n; i += 2) {
        if (nulls[i] || nulls[i + 1])
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("options must not contain NULL")));
        options = lappend(options,
                          makeDefElem(TextDatumGetCString(elems[i]),
                                      (Node *)makeString(TextDatumGetCString(elems[i + 1])), -1));
    }
    return options;
}

Datum walship_bench_decode(PG_FUNCTION_ARGS)
{
    Name slot = PG_GETARG_NAME(0);
    List *options = options_list(PG_GETARG_ARRAYTYPE_P(1));
    XLogRecPtr end = GetFlushRecPtr(NULL);
    CountingWriter writer = {0};
    LogicalDecodingContext *ctx;
    MemoryContext old = CurrentMemoryContext;
    volatile double cpu = 0, wall = 0;
    TupleDesc desc;
    Datum values[4];
    bool nulls[4] = {false, false, false, false};

    if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
        elog(ERROR, "walship_bench_decode must return a record");
    CheckSlotPermissions();
    CheckLogicalDecodingRequirements();
#if PG_VERSION_NUM >= 180000
    ReplicationSlotAcquire(NameStr(*slot), true, true);
#else
    ReplicationSlotAcquire(NameStr(*slot), true);
#endif
    PG_TRY();
    {
        ResourceOwner owner = CurrentResourceOwner;
        double cpu0, wall0;

        ctx = CreateDecodingContext(InvalidXLogRecPtr, options, false,
                                    XL_ROUTINE(.page_read = read_local_xlog_page,
                                               .segment_open = wal_segment_open,
                                               .segment_close = wal_segment_close),
                                    counting_prepare_write, counting_write, NULL);
        ctx->output_writer_private = &writer;
        MemoryContextSwitchTo(old);
        InvalidateSystemCaches();
        XLogBeginRead(ctx->reader, MyReplicationSlot->data.restart_lsn);

        cpu0 = seconds(CLOCK_THREAD_CPUTIME_ID);
        wall0 = seconds(CLOCK_MONOTONIC);
        while (ctx->reader->EndRecPtr < end) {
            char *errm = NULL;
            XLogRecord *record = XLogReadRecord(ctx->reader, &errm);

            if (errm)
                elog(ERROR, "could not read WAL: %s", errm);
            if (record != NULL)
                LogicalDecodingProcessRecord(ctx, ctx->reader);
            CHECK_FOR_INTERRUPTS();
        }
        cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu0;
        wall = seconds(CLOCK_MONOTONIC) - wall0;

        /* replaying transactions may have changed it, as the SQL decoding functions know */
        CurrentResourceOwner = owner;
        FreeDecodingContext(ctx);
        ReplicationSlotRelease();
        InvalidateSystemCaches();
    }
    PG_CATCH();
    {
        /* as in the SQL decoding functions: the error's cleanup releases the slot */
        InvalidateSystemCaches();
        PG_RE_THROW();
    }
    PG_END_TRY();

    values[0] = Int64GetDatum(writer.rows);
    values[1] = Int64GetDatum(writer.bytes);
    values[2] = Float8GetDatum(cpu);
    values[3] = Float8GetDatum(wall);
    desc = BlessTupleDesc(desc);
    PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
