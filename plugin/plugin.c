/*
 * plugin.c: the walship logical decoding output plugin.
 *
 * Owns the output plugin callbacks, the decoding session (options, encoder,
 * per-transaction state) and the hand-off of encoded events: to the client
 * through ctx->out (pg_recvlogical, pg_logical_slot_*_changes), or to the hooks
 * an in-process stream worker attached (walship_plugin.h). Rows are built by
 * rowview.c, per-relation state lives in relation_cache.c, and every byte of an
 * event is produced by the C++ core behind walship_core.h.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_class.h"
#include "commands/dbcommands.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "compat.h"
#include "core_report.h"
#include "relation_cache.h"
#include "rowview.h"
#include "walship_core.h"
#include "walship_plugin.h"

WS_MODULE_MAGIC;

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/*
 * What the plugin knows about the transaction being decoded. Without streaming,
 * the server replays one committed transaction at a time, from begin to commit,
 * so one of these per session is enough. A non-transactional logical message,
 * delivered outside any replay, gets one of its own on the stack.
 */
typedef struct WalshipTxn {
    TransactionId xid;
    XLogRecPtr first_lsn;  /* first WAL record of the transaction */
    XLogRecPtr commit_lsn; /* end of its commit record: what a consumer confirms */
    TimestampTz commit_time;
    const char *origin;         /* replication origin name, NULL when local */
    bool begin_sent;            /* include-transaction: BEGIN event already sent */
    uint64 nevents;             /* events handed on, BEGIN and COMMIT included (for the hooks) */
    uint64 ndata;               /* row, truncate and message events (COMMIT's event_count) */
    XLogRecPtr prev_commit_lsn; /* the transaction before, in this session (0: none) */
    uint64 counted_before;      /* ndata before the event being counted */
    /* include-transaction: row events per table (CollectionCount by published relid) */
    HTAB *collections;
    List *collection_list; /* the same entries, in the order the tables first appeared */
} WalshipTxn;

typedef struct CollectionCount {
    Oid relid; /* hash key: the published relation */
    const char *name;
    uint64 count;
} CollectionCount;

/*
 * One decoding session: from the startup callback to shutdown (or to the end of
 * ctx->context, which an ERROR can cause without shutdown being called: the C++
 * objects are freed by a reset callback on the session context for that reason).
 */
typedef struct WalshipSession {
    MemoryContext context;        /* session lifetime */
    MemoryContext change_context; /* reset after every change */
    MemoryContext txn_context;    /* reset after every transaction */
    MemoryContextCallback free_core;

    ws_options *options;
    ws_encoder *encoder;
    ws_plugin_settings settings;

    const char *database;
    const char *topic_prefix;      /* topic-prefix, else (or when empty) the database name */
    const char *message_topic;     /* <topic-prefix>.message */
    const char *transaction_topic; /* <topic-prefix>.transaction */

    bool hooked;  /* a stream worker attached hooks: events go there, not to ctx->out */
    bool partial; /* the change being sent lacks unchanged TOAST values (hooks.partial) */
    WalshipStreamHooks hooks;

    WalshipTxn txn;
    XLogRecPtr last_commit_lsn; /* the last transaction that sent events, this session */
    TimestampTz last_commit_time;
} WalshipSession;

static void walship_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init);
static void walship_shutdown(LogicalDecodingContext *ctx);
static void walship_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn);
static void walship_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation relation,
                           ReorderBufferChange *change);
static void walship_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int nrelations,
                             Relation relations[], ReorderBufferChange *change);
static void walship_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
                           XLogRecPtr commit_lsn);
static void walship_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
                            XLogRecPtr message_lsn, bool transactional, const char *prefix,
                            Size message_size, const char *message);
static bool walship_filter_by_origin(LogicalDecodingContext *ctx, RepOriginId origin_id);

void _PG_output_plugin_init(OutputPluginCallbacks *cb)
{
    cb->startup_cb = walship_startup;
    cb->shutdown_cb = walship_shutdown;
    cb->begin_cb = walship_begin;
    cb->change_cb = walship_change;
    cb->truncate_cb = walship_truncate;
    cb->commit_cb = walship_commit;
    cb->message_cb = walship_message;
    cb->filter_by_origin_cb = walship_filter_by_origin;

    /*
     * No two-phase and no streaming of in-progress transactions: both would put
     * changes on Kafka before the transaction commits (and keep them there if it
     * then aborts). Without these callbacks the server decodes a prepared
     * transaction at COMMIT PREPARED, and spills a large transaction to disk
     * (logical_decoding_work_mem) instead of streaming it.
     */
    cb->filter_prepare_cb = NULL;
    cb->begin_prepare_cb = NULL;
    cb->prepare_cb = NULL;
    cb->commit_prepared_cb = NULL;
    cb->rollback_prepared_cb = NULL;
    cb->stream_start_cb = NULL;
    cb->stream_stop_cb = NULL;
    cb->stream_abort_cb = NULL;
    cb->stream_prepare_cb = NULL;
    cb->stream_commit_cb = NULL;
    cb->stream_change_cb = NULL;
    cb->stream_message_cb = NULL;
    cb->stream_truncate_cb = NULL;
}

/* ------------------------------------------------------------------------- */
/* Session                                                                     */

static void free_core_objects(void *arg)
{
    WalshipSession *s = arg;

    if (s->encoder != NULL)
        ws_encoder_destroy(s->encoder);
    if (s->options != NULL)
        ws_options_destroy(s->options);
    s->encoder = NULL;
    s->options = NULL;
}

/*
 * One parser for the plugin's options: every option goes to the C++ core as
 * name/value strings, exactly as pg_recvlogical -o or the SQL functions gave it
 * (an option without a value reaches the core as NULL). The core knows the
 * names, the accepted values and the "conflicting or redundant" rule.
 */
static void parse_output_parameters(WalshipSession *s, List *options)
{
    ws_error err;
    ListCell *lc;

    s->options = ws_options_create(&err);
    if (s->options == NULL)
        ws_ereport(ERROR, &err, NULL);

    foreach (lc, options) {
        DefElem *elem = lfirst(lc);
        const char *value;

        Assert(elem->arg == NULL || IsA(elem->arg, String));
        value = elem->arg != NULL ? strVal(elem->arg) : NULL;

        /* the core's error names the option and says what it accepts, and where to read on */
        if (ws_options_set(s->options, elem->defname, value, &err) != WS_OK)
            ws_ereport(ERROR, &err, NULL);

        /* the core validated it; the shim names topics with it */
        if (strcmp(elem->defname, "topic-prefix") == 0)
            s->topic_prefix = value;
    }
    ws_options_settings(s->options, &s->settings);
}

/*
 * The database name, for events and the default topic prefix. Startup runs
 * inside a transaction for the SQL decoding functions, but not in a walsender or
 * a stream worker: there a short transaction of our own reads it, before any
 * decoding starts, leaving the caller's memory context and resource owner as
 * they were.
 */
static const char *lookup_database_name(MemoryContext target)
{
    MemoryContext oldcxt = CurrentMemoryContext;
    ResourceOwner oldowner = CurrentResourceOwner;
    char *name;
    bool own_transaction = !IsTransactionState();

    if (own_transaction)
        StartTransactionCommand();
    name = get_database_name(MyDatabaseId);
    if (name == NULL)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_DATABASE),
                        errmsg("database with OID %u does not exist", MyDatabaseId)));
    name = MemoryContextStrdup(target, name);
    if (own_transaction) {
        CommitTransactionCommand();
        CurrentResourceOwner = oldowner;
    }
    MemoryContextSwitchTo(oldcxt);
    return name;
}

static void walship_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
    MemoryContext context;
    MemoryContext oldcxt;
    WalshipSession *s;
    ws_error err;

    context = AllocSetContextCreate(ctx->context, "walship session", ALLOCSET_DEFAULT_SIZES);
    s = MemoryContextAllocZero(context, sizeof(WalshipSession));
    s->context = context;
    s->change_context = AllocSetContextCreate(context, "walship change", ALLOCSET_DEFAULT_SIZES);
    s->txn_context = AllocSetContextCreate(context, "walship transaction", ALLOCSET_SMALL_SIZES);
    s->free_core.func = free_core_objects;
    s->free_core.arg = s;
    MemoryContextRegisterResetCallback(context, &s->free_core);
    ctx->output_plugin_private = s;

    opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
    opt->receive_rewrites = false;

    /* see _PG_output_plugin_init: neither is supported, so never offer them */
    ctx->streaming = false;
    ctx->twophase = false;

    /*
     * Events carry text as UTF-8: a proto3 string must be, and JSON consumers expect it.
     * Text is passed on as the database stores it, so refuse any other encoding up front
     * (also when the slot is created) rather than emit events nobody can decode;
     * SQL_ASCII text can be any bytes at all.
     */
    if (GetDatabaseEncoding() != PG_UTF8)
        ereport(ERROR,
                (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                 errmsg("the walship output plugin needs a database encoded as UTF8, not %s",
                        GetDatabaseEncodingName()),
                 errdetail("walship events carry text as UTF-8, which protobuf and JSON "
                           "consumers require; walship does not convert from other encodings."),
                 errhint("Stream from a database created with ENCODING 'UTF8'.")));

    /* creating a slot passes no options and decodes nothing */
    if (is_init)
        return;

    oldcxt = MemoryContextSwitchTo(context);
    parse_output_parameters(s, ctx->output_plugin_options);
    if (s->settings.format == WS_FORMAT_JSON)
        opt->output_type = OUTPUT_PLUGIN_TEXTUAL_OUTPUT;

    s->database = lookup_database_name(context);
    s->topic_prefix = walship_topic_prefix(s->topic_prefix, s->database);
    s->message_topic = psprintf("%s.message", s->topic_prefix);
    s->transaction_topic = psprintf("%s.transaction", s->topic_prefix);

    s->encoder = ws_encoder_create(s->options, s->database, &err);
    if (s->encoder == NULL)
        ws_ereport(ERROR, &err, NULL);

    relation_cache_create(context, s->options, s->encoder, s->settings.partition_root,
                          s->topic_prefix);
    MemoryContextSwitchTo(oldcxt);
}

static void walship_shutdown(LogicalDecodingContext *ctx)
{
    WalshipSession *s = ctx->output_plugin_private;

    /* frees the relation cache and, through free_core_objects, the C++ objects */
    MemoryContextDelete(s->context);
    ctx->output_plugin_private = NULL;
}

void walship_plugin_attach_hooks(LogicalDecodingContext *ctx, const WalshipStreamHooks *hooks)
{
    WalshipSession *s = ctx->output_plugin_private;

    if (ctx->callbacks.startup_cb != walship_startup || s == NULL)
        elog(ERROR, "decoding context does not use the walship output plugin");
    if (hooks == NULL) {
        s->hooked = false;
        return;
    }
    if (hooks->begin == NULL || hooks->event == NULL || hooks->commit == NULL)
        elog(ERROR, "walship stream hooks must set begin, event and commit");
    s->hooks = *hooks;
    s->hooked = true;
    if (hooks->tables != NULL)
        relation_cache_follow(hooks->tables, hooks->ntables);
}

/* ------------------------------------------------------------------------- */
/* Sending events                                                              */

static void fill_source(const WalshipSession *s, const WalshipTxn *txn, XLogRecPtr change_lsn,
                        ws_source *source)
{
    memset(source, 0, sizeof(*source));
    source->database = s->database;
    source->origin = txn->origin;
    source->xid = txn->xid;
    source->commit_lsn = txn->commit_lsn;
    source->change_lsn = change_lsn;
    source->prev_commit_lsn = txn->prev_commit_lsn;
    source->commit_time_us = txn->commit_time != 0 ? txn->commit_time + WS_UNIX_EPOCH_OFFSET_US : 0;
}

/*
 * Encodes one event and hands it on: to the hooks when a stream worker attached
 * them, else to the client.
 *
 * The LSN a client sees with an event is the one logical.c's callback wrappers put in
 * ctx->write_location: the change's own LSN inside a transaction, the end of the
 * commit record for COMMIT. A client that confirms what it flushed (pg_recvlogical)
 * then never confirms a transaction it received only part of, and `--endpos` stops
 * after a whole transaction. The commit LSN every event belongs to travels inside the
 * event (source.commit_lsn) and, in a stream, to the hooks.
 */
static void send_event(LogicalDecodingContext *ctx, WalshipSession *s, WalshipTxn *txn,
                       const ws_change *change, const char *topic, const char *table, Oid relid)
{
    ws_encoded out;
    ws_error err;
    bool data = change->op != WS_OP_BEGIN && change->op != WS_OP_COMMIT;

    /* one pass gives the records and, for a stream's Kafka messages, their keys */
    if (ws_encode(s->encoder, change, s->hooked, &out, &err) != WS_OK)
        ws_ereport(ERROR, &err, NULL);
    if (s->hooked && out.moved_from_key != NULL && s->hooks.moved != NULL)
        s->hooks.moved(s->hooks.arg, relid, out.moved_from_key, out.moved_from_keylen, txn->xid);

    for (int i = 0; i < out.nrecords; i++) {
        const ws_record *record = &out.records[i];

        if (s->hooked) {
            s->hooks.event(s->hooks.arg, topic, table, relid, record, txn->xid, txn->commit_lsn,
                           txn->commit_time);
            txn->nevents++;
        } else {
            if (record->value == NULL)
                continue; /* a tombstone is a Kafka record, not an event */
            OutputPluginPrepareWrite(ctx, true);
            appendBinaryStringInfo(ctx->out, (const char *)record->value, record->valuelen);
            OutputPluginWrite(ctx, true);
            txn->nevents++;
        }
        /* COMMIT's event_count: the row, truncate and message events, tombstones aside */
        if (data && record->value != NULL)
            txn->ndata++;
    }
    if (s->hooked && s->partial && s->hooks.partial != NULL) {
        const ws_record *last = &out.records[out.nrecords - 1];

        s->hooks.partial(s->hooks.arg, relid, last->key, last->keylen, txn->xid);
    }
}

/* Does the new row of an UPDATE lack TOAST-ed values it left alone? */
static bool lacks_unchanged_toast(const ws_row *after)
{
    for (int i = 0; after != NULL && i < after->ncolumns; i++)
        if (after->columns[i].value.kind == WS_VALUE_UNCHANGED_TOAST)
            return true;
    return false;
}

/*
 * include-transaction: Debezium's transaction block numbers each row event within its
 * transaction and within its table, and END counts the events of each table.
 */
static CollectionCount *collection_of(WalshipSession *s, RelationCacheEntry *entry)
{
    WalshipTxn *txn = &s->txn;
    CollectionCount *count;
    bool found;

    if (txn->collections == NULL) {
        HASHCTL ctl;

        memset(&ctl, 0, sizeof(ctl));
        ctl.keysize = sizeof(Oid);
        ctl.entrysize = sizeof(CollectionCount);
        ctl.hcxt = s->txn_context;
        txn->collections = hash_create("walship transaction tables", 16, &ctl,
                                       HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
    }
    count = hash_search(txn->collections, &entry->published_relid, HASH_ENTER, &found);
    if (!found) {
        MemoryContext oldcxt = MemoryContextSwitchTo(s->txn_context);

        count->name = psprintf("%s.%s", entry->schema, entry->table);
        count->count = 0;
        txn->collection_list = lappend(txn->collection_list, count);
        MemoryContextSwitchTo(oldcxt);
    }
    return count;
}

/* The event's place, before it is sent (a key change's create takes the next one). */
static void count_event(WalshipSession *s, RelationCacheEntry *entry, ws_change *event)
{
    if (!s->settings.include_transaction)
        return;
    s->txn.counted_before = s->txn.ndata;
    event->total_order = s->txn.ndata + 1;
    event->collection_order = collection_of(s, entry)->count + 1;
}

/* After it was sent: the table counts the events it became. */
static void counted_events(WalshipSession *s, RelationCacheEntry *entry)
{
    if (!s->settings.include_transaction)
        return;
    collection_of(s, entry)->count += s->txn.ndata - s->txn.counted_before;
}

/*
 * A transactional logical message is an event of the transaction too; Debezium counts
 * each as a data collection of its own, named by the Java object that stands for it
 * (its class and a hash), which walship writes alike, with the message's LSN as hash.
 */
static void count_message(WalshipSession *s, ws_change *event)
{
    CollectionCount *count;
    MemoryContext oldcxt;

    if (!s->settings.include_transaction)
        return;
    event->total_order = s->txn.ndata + 1;
    event->collection_order = 1;
    oldcxt = MemoryContextSwitchTo(s->txn_context);
    count = palloc0(sizeof(CollectionCount));
    count->name = psprintf("io.debezium.connector.postgresql.LogicalDecodingMessageMonitor$"
                           "LogicalDecodingMessageId@%x",
                           (unsigned)(event->source.change_lsn & 0xFFFFFFFF));
    count->count = 1;
    s->txn.collection_list = lappend(s->txn.collection_list, count);
    MemoryContextSwitchTo(oldcxt);
}

static void collections_of(WalshipTxn *txn, ws_change *change)
{
    ws_collection_count *out;
    ListCell *lc;
    int i = 0;

    if (txn->collection_list == NIL)
        return;
    out = palloc(sizeof(ws_collection_count) * list_length(txn->collection_list));
    foreach (lc, txn->collection_list) {
        CollectionCount *count = lfirst(lc);

        out[i].name = count->name;
        out[i].count = count->count;
        i++;
    }
    change->collections = out;
    change->ncollections = i;
}

/*
 * include-transaction: BEGIN goes out with the transaction's first event, so a
 * transaction that produces none (other tables, DDL only) leaves no trace.
 */
static void send_begin_if_needed(LogicalDecodingContext *ctx, WalshipSession *s,
                                 XLogRecPtr first_event_lsn)
{
    WalshipTxn *txn = &s->txn;
    ws_change change;

    if (!s->settings.include_transaction || txn->begin_sent)
        return;

    memset(&change, 0, sizeof(change));
    change.op = WS_OP_BEGIN;
    /* its LSN is its first event's, as pgoutput sends BEGIN with the first change */
    fill_source(s, txn, first_event_lsn, &change.source);
    send_event(ctx, s, txn, &change, s->transaction_topic, NULL, InvalidOid);
    txn->begin_sent = true;
}

/* ------------------------------------------------------------------------- */
/* Callbacks                                                                   */

static void walship_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *rbtxn)
{
    WalshipSession *s = ctx->output_plugin_private;
    WalshipTxn *txn = &s->txn;

    relation_cache_purge();
    MemoryContextReset(s->txn_context);
    memset(txn, 0, sizeof(*txn));
    txn->xid = rbtxn->xid;
    txn->first_lsn = rbtxn->first_lsn;
    txn->commit_lsn = rbtxn->end_lsn;
    txn->commit_time = rbtxn->xact_time.commit_time;
    txn->prev_commit_lsn = s->last_commit_lsn;
    if (rbtxn->origin_id != InvalidRepOriginId) {
        MemoryContext oldcxt = MemoryContextSwitchTo(s->txn_context);
        char *origin = NULL;

        if (replorigin_by_oid(rbtxn->origin_id, true, &origin))
            txn->origin = origin;
        MemoryContextSwitchTo(oldcxt);
    }

    if (s->hooked)
        s->hooks.begin(s->hooks.arg, txn->xid, txn->commit_lsn);
}

static void walship_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *rbtxn,
                           XLogRecPtr commit_lsn)
{
    WalshipSession *s = ctx->output_plugin_private;
    WalshipTxn *txn = &s->txn;

    if (txn->begin_sent) {
        MemoryContext oldcxt = MemoryContextSwitchTo(s->change_context);
        ws_change change;

        memset(&change, 0, sizeof(change));
        change.op = WS_OP_COMMIT;
        fill_source(s, txn, commit_lsn, &change.source);
        change.event_count = txn->ndata;
        collections_of(txn, &change);
        send_event(ctx, s, txn, &change, s->transaction_topic, NULL, InvalidOid);

        MemoryContextSwitchTo(oldcxt);
        MemoryContextReset(s->change_context);
    }

    if (txn->nevents > 0) {
        s->last_commit_lsn = txn->commit_lsn;
        s->last_commit_time = txn->commit_time;
    }
    if (s->hooked)
        s->hooks.commit(s->hooks.arg, txn->xid, txn->commit_lsn, txn->nevents);
    MemoryContextReset(s->txn_context);
}

static void walship_change(LogicalDecodingContext *ctx, ReorderBufferTXN *rbtxn, Relation relation,
                           ReorderBufferChange *change)
{
    WalshipSession *s = ctx->output_plugin_private;
    RelationCacheEntry *entry;
    TupleDesc desc = RelationGetDescr(relation);
    HeapTuple oldtuple;
    HeapTuple newtuple;
    MemoryContext oldcxt;
    ws_change event;

    entry = relation_cache_get(relation);
    if (!entry->included)
        return;

    oldcxt = MemoryContextSwitchTo(s->change_context);
    memset(&event, 0, sizeof(event));
    oldtuple = WS_CHANGE_OLDTUPLE(change);
    newtuple = WS_CHANGE_NEWTUPLE(change);

    switch (change->action) {
    case REORDER_BUFFER_CHANGE_INSERT:
        event.op = WS_OP_INSERT;
        break;
    case REORDER_BUFFER_CHANGE_UPDATE:
        event.op = WS_OP_UPDATE;
        break;
    case REORDER_BUFFER_CHANGE_DELETE:
        event.op = WS_OP_DELETE;
        break;
    default:
        /* the server hands only these three to change_cb */
        elog(ERROR, "unexpected logical decoding change action %d", (int)change->action);
    }

    if (newtuple != NULL && event.op != WS_OP_DELETE)
        event.after = rowview_fill_new(&entry->view, desc, newtuple);

    /*
     * The old row as logged: key columns of a DELETE come from here, and so does the old
     * key of an UPDATE that changes it. The encoders leave it out of the event with
     * include-before=off. With REPLICA IDENTITY FULL it also has the TOAST-ed values an
     * UPDATE did not touch, which the new row then carries as they are.
     */
    if (oldtuple != NULL) {
        event.before = rowview_fill_old(&entry->view, desc, oldtuple);
        if (event.after != NULL && event.before != NULL)
            rowview_resolve_unchanged_toast(&entry->view);
    }

    fill_source(s, &s->txn, change->lsn, &event.source);
    event.source.schema = entry->schema;
    event.source.table = entry->table;
    event.table = entry->table_handle;

    send_begin_if_needed(ctx, s, change->lsn);
    count_event(s, entry, &event);
    s->partial = s->hooked && event.op == WS_OP_UPDATE && lacks_unchanged_toast(event.after);
    send_event(ctx, s, &s->txn, &event, entry->topic, entry->qualified, entry->relid);
    s->partial = false;
    counted_events(s, entry);

    MemoryContextSwitchTo(oldcxt);
    MemoryContextReset(s->change_context);
}

static void walship_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *rbtxn, int nrelations,
                             Relation relations[], ReorderBufferChange *change)
{
    WalshipSession *s = ctx->output_plugin_private;
    RelationCacheEntry **entries;
    const char **names;
    int ntruncated = 0;
    MemoryContext oldcxt;

    if (!s->settings.truncate && !(s->hooked && s->hooks.truncated != NULL))
        return;

    oldcxt = MemoryContextSwitchTo(s->change_context);
    entries = palloc(sizeof(RelationCacheEntry *) * nrelations);
    names = palloc(sizeof(char *) * nrelations);

    /*
     * One TRUNCATE event per streamed table, each naming every table truncated
     * together. With partition-root=on the partitions of one root (and the root
     * itself, which the server lists too) make one event for the root.
     */
    for (int i = 0; i < nrelations; i++) {
        RelationCacheEntry *entry;
        bool seen = false;

        /*
         * The server lists a truncated partitioned table along with its
         * partitions. It holds no rows of its own: without partition-root its
         * partitions speak for it.
         */
        if (!s->settings.partition_root &&
            relations[i]->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
            continue;

        entry = relation_cache_get(relations[i]);
        if (!entry->included)
            continue;
        for (int j = 0; j < ntruncated && !seen; j++)
            seen = entries[j]->published_relid == entry->published_relid;
        if (seen)
            continue;
        entries[ntruncated] = entry;
        names[ntruncated] = psprintf("%s.%s", entry->schema, entry->table);
        ntruncated++;
    }

    /* every leaf, by its own OID: under partition-root one root stands for several */
    if (s->hooked && s->hooks.truncated != NULL)
        for (int i = 0; i < nrelations; i++)
            if (relations[i]->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
                s->hooks.truncated(s->hooks.arg, RelationGetRelid(relations[i]), s->txn.xid);
    if (!s->settings.truncate)
        ntruncated = 0;

    if (ntruncated > 0)
        send_begin_if_needed(ctx, s, change->lsn);

    for (int i = 0; i < ntruncated; i++) {
        ws_change event;

        memset(&event, 0, sizeof(event));
        event.op = WS_OP_TRUNCATE;
        fill_source(s, &s->txn, change->lsn, &event.source);
        event.source.schema = entries[i]->schema;
        event.source.table = entries[i]->table;
        event.table = entries[i]->table_handle;
        event.truncated_tables = names;
        event.ntruncated = ntruncated;
        count_event(s, entries[i], &event);
        send_event(ctx, s, &s->txn, &event, entries[i]->topic, entries[i]->qualified,
                   entries[i]->relid);
        counted_events(s, entries[i]);
    }

    MemoryContextSwitchTo(oldcxt);
    MemoryContextReset(s->change_context);
}

static void walship_message(LogicalDecodingContext *ctx, ReorderBufferTXN *rbtxn,
                            XLogRecPtr message_lsn, bool transactional, const char *prefix,
                            Size message_size, const char *message)
{
    WalshipSession *s = ctx->output_plugin_private;
    MemoryContext oldcxt;
    ws_change event;

    /* walship's own marks (a snapshot's watermarks) are never events */
    if (strcmp(prefix, WALSHIP_WATERMARK_PREFIX) == 0) {
        if (s->hooked && !transactional && s->hooks.watermark != NULL)
            s->hooks.watermark(s->hooks.arg, message, message_size, message_lsn);
        return;
    }
    if (!s->settings.messages || !ws_options_message_included(s->options, prefix))
        return;

    oldcxt = MemoryContextSwitchTo(s->change_context);
    memset(&event, 0, sizeof(event));
    event.op = WS_OP_MESSAGE;
    event.message_prefix = prefix;
    event.message_content = message;
    event.message_len = message_size;
    event.message_transactional = transactional;

    if (transactional) {
        fill_source(s, &s->txn, message_lsn, &event.source);
        send_begin_if_needed(ctx, s, message_lsn);
        count_message(s, &event);
        send_event(ctx, s, &s->txn, &event, s->message_topic, NULL, InvalidOid);
    } else {
        /*
         * Delivered when decoding reaches it, outside any transaction's replay:
         * it is a transaction of its own for the hooks, "committed" where its WAL
         * record ends (the server passes that end as message_lsn), so confirming
         * it never decodes it again. It has no commit time.
         */
        WalshipTxn own;

        memset(&own, 0, sizeof(own));
        own.xid = rbtxn != NULL ? rbtxn->xid : InvalidTransactionId;
        own.first_lsn = message_lsn;
        own.commit_lsn = message_lsn;
        /*
         * As Debezium: it is a commit at its own LSN (its sequence is [that, that], the
         * next transaction's previous commit); JSON gives it the last commit's time.
         */
        own.prev_commit_lsn = message_lsn;
        fill_source(s, &own, message_lsn, &event.source);
        if (s->last_commit_time != 0)
            event.source.prev_commit_time_us = s->last_commit_time + WS_UNIX_EPOCH_OFFSET_US;

        if (s->hooked)
            s->hooks.begin(s->hooks.arg, own.xid, own.commit_lsn);
        send_event(ctx, s, &own, &event, s->message_topic, NULL, InvalidOid);
        if (s->hooked)
            s->hooks.commit(s->hooks.arg, own.xid, own.commit_lsn, own.nevents);
        s->last_commit_lsn = message_lsn;
    }

    MemoryContextSwitchTo(oldcxt);
    MemoryContextReset(s->change_context);
}

static bool walship_filter_by_origin(LogicalDecodingContext *ctx, RepOriginId origin_id)
{
    WalshipSession *s = ctx->output_plugin_private;

    return s->settings.origin == WS_ORIGIN_NONE && origin_id != InvalidRepOriginId;
}

/* ------------------------------------------------------------------------- */
/* Snapshot rows (walship_plugin.h)                                          */

static WalshipSession *hooked_session(LogicalDecodingContext *ctx)
{
    WalshipSession *s = ctx->output_plugin_private;

    if (ctx->callbacks.startup_cb != walship_startup || s == NULL || !s->hooked)
        elog(ERROR, "decoding context does not use the walship output plugin with hooks");
    return s;
}

bool walship_plugin_publishes(LogicalDecodingContext *ctx, Relation relation, const char **table)
{
    RelationCacheEntry *entry;

    (void)hooked_session(ctx);
    entry = relation_cache_get(relation);
    if (table != NULL)
        *table = entry->qualified;
    return entry->included;
}

bool walship_plugin_read_row(LogicalDecodingContext *ctx, Relation relation, HeapTuple tuple,
                             XLogRecPtr lsn, TimestampTz time, WalshipReadEmit emit, void *arg)
{
    WalshipSession *s = hooked_session(ctx);
    RelationCacheEntry *entry = relation_cache_get(relation);
    MemoryContext oldcxt;
    ws_change event;
    ws_encoded out;
    ws_error err;

    if (!entry->included)
        return false;
    oldcxt = MemoryContextSwitchTo(s->change_context);
    memset(&event, 0, sizeof(event));
    event.op = WS_OP_READ;
    event.after = rowview_fill_new(&entry->view, RelationGetDescr(relation), tuple);
    event.source.database = s->database;
    event.source.schema = entry->schema;
    event.source.table = entry->table;
    event.source.commit_lsn = lsn;
    event.source.change_lsn = lsn;
    event.source.commit_time_us = time + WS_UNIX_EPOCH_OFFSET_US;
    event.table = entry->table_handle;
    if (ws_encode(s->encoder, &event, true, &out, &err) != WS_OK)
        ws_ereport(ERROR, &err, NULL);
    for (int i = 0; i < out.nrecords; i++)
        emit(arg, entry->topic, entry->qualified, &out.records[i]);
    MemoryContextSwitchTo(oldcxt);
    MemoryContextReset(s->change_context);
    return true;
}
