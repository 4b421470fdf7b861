/*
 * noop_plugin.c: walship_bench_noop, the floor under every output plugin's cost in the
 * decode benchmark.
 *
 * It decodes everything the server hands an output plugin (the reorder buffer, TOAST
 * reassembly, the historic catalog lookups happen before any callback) and writes one
 * byte per change, so a peek through it costs what the server spends to decode the WAL
 * and hand each change to a plugin: what remains of a real plugin's time is its own.
 */
#include "postgres.h"

#include "fmgr.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"

PG_MODULE_MAGIC;

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
