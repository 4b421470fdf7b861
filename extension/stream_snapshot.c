/*
 * stream_snapshot.c: a stream worker's snapshots (docs/snapshots.md).
 *
 * The rows a stream's tables hold are sent as READ events while their changes stream,
 * by the DBLog method (Netflix's DBLog; Debezium's incremental snapshots follow it), run
 * by the stream worker itself between two batches of WAL, where it is a backend like any:
 *
 *   1. a low watermark, a logical message of walship's own prefix, goes into the WAL;
 *   2. in a short transaction of its own, one chunk of the table is read in key order
 *      (the rows after the last key the snapshot reached, at most snapshot_chunk_size),
 *      and encoded as READ events exactly as the stream encodes its changes;
 *   3. a high watermark goes into the WAL, the transaction commits, decoding goes on;
 *   4. while the decoder goes from where it stood at step 1 to the high watermark, every
 *      change of a key of the chunk made by a transaction the chunk's snapshot did not
 *      see drops that row from the chunk (the change is newer: it wins); a change the
 *      snapshot saw is in the chunk's row already;
 *   5. at the high watermark the rest of the chunk goes to Kafka, as one transaction of
 *      the sink committed at the watermark's LSN, and the next chunk begins.
 * So a READ never overwrites a newer change of its key, no transaction is held longer
 * than one chunk's query, and nothing waits for the snapshot but the snapshot itself.
 *
 * Why a chunk's snapshot must see every transaction decoded before it: a transaction's
 * commit record is in the WAL (and may be decoded and sent) a moment before the
 * transaction becomes visible to new snapshots. A chunk read in that moment would hold
 * the row as it was before, and send it after the change. The worker therefore reads
 * no chunk while a transaction its snapshot does not see has committed (in the commit
 * log) or was decoded lately; it tries again after the next batch.
 *
 * Progress (walship.snapshots.last_key, rows_emitted, chunks) moves on only once Kafka
 * has acknowledged a chunk (the sink's watermark has passed its LSN), so a worker that
 * dies at any point continues from the last acknowledged chunk; the chunk in flight is
 * read again (its rows may reach Kafka twice, as any event may after a crash).
 *
 * Memory: one chunk's rows (encoded) and the keys of the transactions decoded lately.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/logical.h"
#include "replication/message.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"

#include "rowview.h"
#include "walship_plugin.h"
#include "walship_sink.h"
#include "walship_streams.h"

static void close_chunk(void);

/* Transactions decoded lately, which a chunk's snapshot must see (see above). */
#define RECENT_XIDS 1024
/* How often in a row one chunk is read again for updates that lack TOAST-ed values. */
#define MAX_CHUNK_REREADS 20
/* A chunk that must wait for a transaction to finish committing is tried again after. */
#define CHUNK_RETRY_MS 5

typedef struct ChunkKey {
    const uint8 *data;
    size_t len;
} ChunkKey;

typedef struct ChunkKeyEntry {
    ChunkKey key; /* hash key */
    int row;
} ChunkKeyEntry;

typedef struct ChunkRow {
    uint8 *key;
    size_t keylen;
    uint8 *value;
    size_t valuelen;
    bool dropped;
} ChunkRow;

/* An emitted chunk Kafka has yet to acknowledge. */
typedef struct ChunkDone {
    XLogRecPtr lsn; /* its high watermark: the sink's commit LSN of its rows */
    Oid relid;
    List *last_key; /* text of each key column of its last row; NIL: no row */
    int64 rows;     /* sent */
    int64 chunks;   /* 1, or more once folded (save_progress) */
    bool last;      /* the table's last chunk */
} ChunkDone;

static struct {
    bool attached;
    LogicalDecodingContext *ctx;
    ws_sink *sink;
    const char *stream;
    int chunk_size;
    MemoryContext context;       /* the worker's snapshot state */
    MemoryContext chunk_context; /* one chunk */
    uint64 seq;                  /* chunks read by this worker */
    TimestampTz started;         /* when this worker attached: its marks name it */

    bool look; /* walship.snapshots may hold work */

    /* the table being read */
    bool reading;
    Oid relid;
    char *table_name;
    List *last_key; /* where the next chunk starts; NIL: at the beginning */

    /* the chunk between its watermarks */
    bool open;
    bool low_seen;
    char low_mark[96];
    char high_mark[96];
    const char *topic; /* in chunk_context */
    const char *table;
    ChunkRow *rows;
    int nrows;
    HTAB *keys;
    SnapshotData snapshot; /* what its query saw; xip and subxip in chunk_context */
    List *chunk_last_key;
    bool chunk_last;
    bool reread;          /* an update the chunk did not see lacks TOAST-ed values of its row */
    int rereads;          /* times in a row the one-row chunk at last_key was read again */
    int limit;            /* rows of the next chunk: snapshot_chunk_size, less after rereads */
    TimestampTz retry_at; /* no chunk before (one could not be read) */

    List *unacknowledged; /* ChunkDone, oldest first */

    TransactionId recent[RECENT_XIDS];
    int nrecent;
    int recent_next;
} snap;

/* ------------------------------------------------------------------------- */
/* Short transactions of the worker's own                                     */

static MemoryContext saved_context;
static ResourceOwner saved_owner;
static bool decoding_flag_cleared;

/*
 * A process that decodes outside a transaction is marked PROC_IN_LOGICAL_DECODING
 * (CreateDecodingContext): its xmin is then left out of every horizon, since decoding
 * reads the catalogs only, through the slot's catalog_xmin. The worker's own
 * transactions read and write tables: while one runs, the mark is off, so that no
 * pruning removes a row version its snapshot still sees (and no HOT chain of the
 * snapshot catalog is broken under its updates).
 */
static void set_decoding_flag(bool on)
{
    LWLockAcquire(ProcArrayLock, LW_EXCLUSIVE);
    if (on)
        MyProc->statusFlags |= PROC_IN_LOGICAL_DECODING;
    else
        MyProc->statusFlags &= ~PROC_IN_LOGICAL_DECODING;
    ProcGlobal->statusFlags[MyProc->pgxactoff] = MyProc->statusFlags;
    LWLockRelease(ProcArrayLock);
}

static void restore_decoding_flag(void)
{
    if (decoding_flag_cleared) {
        set_decoding_flag(true);
        decoding_flag_cleared = false;
    }
}

static void begin_own_transaction(void)
{
    saved_context = CurrentMemoryContext;
    saved_owner = CurrentResourceOwner;
    if ((MyProc->statusFlags & PROC_IN_LOGICAL_DECODING) != 0) {
        set_decoding_flag(false);
        decoding_flag_cleared = true;
    }
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    /* what decoding cached came from historic snapshots: not the present's catalogs */
    InvalidateSystemCaches();
    PushActiveSnapshot(GetTransactionSnapshot());
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
}

static void end_own_transaction(void)
{
    SPI_finish();
    PopActiveSnapshot();
    CommitTransactionCommand();
    restore_decoding_flag();
    /* decoding goes on with a historic snapshot: forget what this transaction cached */
    InvalidateSystemCaches();
    MemoryContextSwitchTo(saved_context);
    CurrentResourceOwner = saved_owner;
}

static void abort_own_transaction(void)
{
    AbortCurrentTransaction();
    restore_decoding_flag();
    InvalidateSystemCaches();
    MemoryContextSwitchTo(saved_context);
    CurrentResourceOwner = saved_owner;
}

static int spi(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
               bool read_only, long limit)
{
    int ret = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, limit);

    if (ret < 0)
        elog(ERROR, "walship stream \"%s\": SPI failed (%s): %s", snap.stream,
             SPI_result_code_string(ret), sql);
    return ret;
}

static Datum text_array(List *texts)
{
    Datum *elems = palloc(sizeof(Datum) * Max(list_length(texts), 1));
    int n = 0;
    ListCell *lc;

    foreach (lc, texts)
        elems[n++] = CStringGetTextDatum(lfirst(lc));
    return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* ------------------------------------------------------------------------- */
/* The catalog                                                                */

/* The table to read next (the oldest request, one a worker left half-read first). */
static void pick_table(void)
{
    Oid types[2] = {TEXTOID, OIDARRAYOID};
    Datum values[2];
    Datum *skip;
    int nskip = 0;
    ListCell *lc;
    MemoryContext cxt = CurrentMemoryContext;

    skip = palloc(sizeof(Datum) * Max(list_length(snap.unacknowledged), 1));
    foreach (lc, snap.unacknowledged)
        skip[nskip++] = ObjectIdGetDatum(((ChunkDone *)lfirst(lc))->relid);

    begin_own_transaction();
    values[0] = CStringGetTextDatum(snap.stream);
    values[1] =
        PointerGetDatum(construct_array(skip, nskip, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
    spi("SELECT table_oid::pg_catalog.oid, table_name, last_key, state "
        "FROM walship.snapshots WHERE stream OPERATOR(pg_catalog.=) $1 "
        "AND state OPERATOR(pg_catalog.=) ANY ('{pending,running}') "
        "AND NOT table_oid::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($2) "
        "ORDER BY state OPERATOR(pg_catalog.=) 'running' DESC, requested_at, table_oid LIMIT 1",
        2, types, values, NULL, false, 1);
    if (SPI_processed == 0) {
        snap.look = false;
        end_own_transaction();
        return;
    }
    {
        HeapTuple tuple = SPI_tuptable->vals[0];
        TupleDesc desc = SPI_tuptable->tupdesc;
        bool isnull;
        Datum d;
        bool resumed;
        MemoryContext spi_cxt = MemoryContextSwitchTo(snap.context);

        snap.relid = DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull));
        snap.table_name = TextDatumGetCString(SPI_getbinval(tuple, desc, 2, &isnull));
        list_free_deep(snap.last_key);
        snap.last_key = NIL;
        d = SPI_getbinval(tuple, desc, 3, &isnull);
        if (!isnull) {
            Datum *elems;
            bool *nulls;
            int n;

            deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT, &elems,
                              &nulls, &n);
            for (int i = 0; i < n; i++)
                snap.last_key =
                    lappend(snap.last_key, nulls[i] ? pstrdup("") : TextDatumGetCString(elems[i]));
        }
        resumed = snap.last_key != NIL;
        MemoryContextSwitchTo(spi_cxt);
        spi("UPDATE walship.snapshots SET state = 'running', "
            "started_at = COALESCE(started_at, pg_catalog.now()), "
            "resumes = resumes OPERATOR(pg_catalog.+) $3 "
            "WHERE stream OPERATOR(pg_catalog.=) $1 AND table_oid OPERATOR(pg_catalog.=) $2",
            3, (Oid[]){TEXTOID, OIDOID, INT4OID},
            (Datum[]){CStringGetTextDatum(snap.stream), ObjectIdGetDatum(snap.relid),
                      Int32GetDatum(resumed ? 1 : 0)},
            NULL, false, 0);
        if (resumed)
            ereport(LOG, (errmsg("walship stream \"%s\" continues the snapshot of %s where it "
                                 "left it",
                                 snap.stream, snap.table_name)));
        snap.reading = true;
    }
    end_own_transaction();
    MemoryContextSwitchTo(cxt);
}

/* A table's snapshot ends without reading on (dropped, no longer published, failed). */
static void finish_table(const char *state, const char *error)
{
    spi("UPDATE walship.snapshots SET state = $3, finished_at = pg_catalog.now(), error = $4 "
        "WHERE stream OPERATOR(pg_catalog.=) $1 AND table_oid OPERATOR(pg_catalog.=) $2",
        4, (Oid[]){TEXTOID, OIDOID, TEXTOID, TEXTOID},
        (Datum[]){CStringGetTextDatum(snap.stream), ObjectIdGetDatum(snap.relid),
                  CStringGetTextDatum(state),
                  error != NULL ? CStringGetTextDatum(error) : (Datum)0},
        error != NULL ? "   " : "  n", false, 0);
    snap.reading = false;
    snap.look = true;
}

/* Saves what Kafka has acknowledged: one transaction for every chunk it holds now. */
static void save_progress(void)
{
    XLogRecPtr acked = (XLogRecPtr)ws_sink_watermark(snap.sink);
    List *done = NIL;

    while (snap.unacknowledged != NIL) {
        ChunkDone *chunk = linitial(snap.unacknowledged);

        if (chunk->lsn > acked)
            break;
        done = lappend(done, chunk);
        snap.unacknowledged = list_delete_first(snap.unacknowledged);
    }
    if (done == NIL)
        return;

    /* one update per table: the chunks of one table, oldest first, fold into the last */
    {
        List *folded = NIL;
        ListCell *lc;

        foreach (lc, done) {
            ChunkDone *chunk = lfirst(lc);
            ChunkDone *into = folded != NIL ? llast(folded) : NULL;

            if (into != NULL && into->relid == chunk->relid) {
                into->rows += chunk->rows;
                into->chunks += chunk->chunks;
                into->last = chunk->last;
                if (chunk->last_key != NIL) {
                    list_free_deep(into->last_key);
                    into->last_key = chunk->last_key;
                    chunk->last_key = NIL;
                }
                list_free_deep(chunk->last_key);
                pfree(chunk);
            } else
                folded = lappend(folded, chunk);
        }
        list_free(done);
        done = folded;
    }

    begin_own_transaction();
    {
        ListCell *lc;

        foreach (lc, done) {
            ChunkDone *chunk = lfirst(lc);
            Datum values[6];
            char nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

            values[0] = CStringGetTextDatum(snap.stream);
            values[1] = ObjectIdGetDatum(chunk->relid);
            if (chunk->last_key != NIL)
                values[2] = text_array(chunk->last_key);
            else
                nulls[2] = 'n';
            values[3] = Int64GetDatum(chunk->rows);
            values[4] = BoolGetDatum(chunk->last);
            values[5] = Int64GetDatum(chunk->chunks);
            spi("UPDATE walship.snapshots SET "
                "last_key = COALESCE($3, last_key), "
                "rows_emitted = rows_emitted OPERATOR(pg_catalog.+) $4, "
                "chunks = chunks OPERATOR(pg_catalog.+) $6, "
                "state = CASE WHEN $5 THEN 'done' ELSE state END, "
                "finished_at = CASE WHEN $5 THEN pg_catalog.now() END "
                "WHERE stream OPERATOR(pg_catalog.=) $1 AND table_oid OPERATOR(pg_catalog.=) $2 "
                "AND state OPERATOR(pg_catalog.=) 'running'",
                6, (Oid[]){TEXTOID, OIDOID, TEXTARRAYOID, INT8OID, BOOLOID, INT8OID}, values, nulls,
                false, 0);
            if (chunk->last)
                ereport(LOG, (errmsg("walship stream \"%s\" finished a snapshot of table OID %u",
                                     snap.stream, chunk->relid)));
        }
    }
    end_own_transaction();
    {
        ListCell *lc;

        foreach (lc, done)
            list_free_deep(((ChunkDone *)lfirst(lc))->last_key);
    }
    list_free_deep(done);
}

/* ------------------------------------------------------------------------- */
/* Reading a chunk                                                            */

static uint32 chunk_key_hash(const void *key, Size keysize)
{
    const ChunkKey *k = key;

    return hash_bytes(k->data, (int)k->len);
}

static int chunk_key_match(const void *a, const void *b, Size keysize)
{
    const ChunkKey *x = a;
    const ChunkKey *y = b;

    return x->len == y->len && memcmp(x->data, y->data, x->len) == 0 ? 0 : 1;
}

static void keep_read_row(void *arg, const char *topic, const char *table, const ws_record *record)
{
    ChunkRow *row = &snap.rows[snap.nrows];
    ChunkKeyEntry *entry;
    ChunkKey key;
    bool found;

    if (snap.topic == NULL) {
        snap.topic = MemoryContextStrdup(snap.chunk_context, topic);
        snap.table = MemoryContextStrdup(snap.chunk_context, table);
    }
    row->keylen = record->keylen;
    row->key = MemoryContextAlloc(snap.chunk_context, Max(record->keylen, 1));
    memcpy(row->key, record->key, record->keylen);
    row->valuelen = record->valuelen;
    row->value = MemoryContextAlloc(snap.chunk_context, Max(record->valuelen, 1));
    memcpy(row->value, record->value, record->valuelen);
    row->dropped = false;
    key.data = row->key;
    key.len = row->keylen;
    entry = hash_search(snap.keys, &key, HASH_ENTER, &found);
    entry->row = snap.nrows;
    snap.nrows++;
}

/* SELECT t, <key>::text... FROM ONLY <table> t [WHERE (<key>) > ($1::text::type...)]
 * ORDER BY <key> LIMIT n: the replica identity index is the key (refused without one). */
static char *chunk_query(Relation rel, int *nkeys)
{
    Oid index = rowview_key_index(rel);
    Relation irel;
    StringInfoData cols;
    StringInfoData bounds;
    StringInfoData query;
    TupleDesc desc = RelationGetDescr(rel);

    if (!OidIsValid(index))
        return NULL;
    irel = index_open(index, AccessShareLock);
    *nkeys = irel->rd_index->indnkeyatts;
    initStringInfo(&cols);
    initStringInfo(&bounds);
    initStringInfo(&query);
    appendStringInfo(&query, "SELECT t");
    for (int i = 0; i < *nkeys; i++) {
        AttrNumber attno = irel->rd_index->indkey.values[i];
        Form_pg_attribute att = TupleDescAttr(desc, attno - 1);
        const char *name = quote_identifier(NameStr(att->attname));

        appendStringInfo(&cols, "%st.%s", i > 0 ? ", " : "", name);
        appendStringInfo(&bounds, "%s$%d::pg_catalog.text::%s", i > 0 ? ", " : "", i + 1,
                         format_type_with_typemod(att->atttypid, att->atttypmod));
        /* the key's text forms, where the next chunk starts */
        appendStringInfo(&query, ", t.%s::pg_catalog.text", name);
    }
    index_close(irel, AccessShareLock);
    appendStringInfo(&query, " FROM ONLY %s t",
                     quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
                                                RelationGetRelationName(rel)));
    if (snap.last_key != NIL)
        appendStringInfo(&query, " WHERE (%s) OPERATOR(pg_catalog.>) (%s)", cols.data, bounds.data);
    appendStringInfo(&query, " ORDER BY %s LIMIT %d", cols.data, snap.limit);
    return query.data;
}

static bool snapshot_saw(Snapshot snapshot, TransactionId xid);

/*
 * Could a transaction this snapshot does not see have been decoded already? Yes if one
 * decoded lately is not seen (its xid may be at or above the snapshot's xmax: the newest
 * transaction is in no xip while it commits), or if one it lists as running has
 * committed (its commit record is in the WAL, maybe decoded before these were counted).
 */
static bool snapshot_behind_decoding(Snapshot snapshot)
{
    for (int i = 0; i < snap.nrecent; i++)
        if (!snapshot_saw(snapshot, snap.recent[i]))
            return true;
    for (uint32 i = 0; i < snapshot->xcnt; i++)
        if (TransactionIdDidCommit(snapshot->xip[i]))
            return true;
    return false;
}

static void keep_snapshot(Snapshot snapshot)
{
    snap.snapshot = *snapshot;
    snap.snapshot.xip =
        MemoryContextAlloc(snap.chunk_context, sizeof(TransactionId) * Max(snapshot->xcnt, 1));
    memcpy(snap.snapshot.xip, snapshot->xip, sizeof(TransactionId) * snapshot->xcnt);
    snap.snapshot.subxip = NULL; /* chunk_saw needs none */
    snap.snapshot.subxcnt = 0;
    snap.snapshot.copied = true;
    snap.snapshot.active_count = 0;
    snap.snapshot.regd_count = 0;
}

/* A watermark; flush: the decoder reads only flushed WAL (the low one goes with the high). */
static XLogRecPtr write_mark(const char *mark, bool flush)
{
#if PG_VERSION_NUM >= 170000
    return LogLogicalMessage(WALSHIP_WATERMARK_PREFIX, mark, strlen(mark), false, flush);
#else
    XLogRecPtr lsn = LogLogicalMessage(WALSHIP_WATERMARK_PREFIX, mark, strlen(mark), false);

    if (flush)
        XLogFlush(lsn);
    return lsn;
#endif
}

/* Reads the next chunk of the table (see the top of the file); false: try again later. */
static bool read_chunk(void)
{
    Relation rel;
    char *query;
    int nkeys = 0;
    int ret;
    Datum *values = NULL;
    Snapshot snapshot;
    XLogRecPtr high;
    TimestampTz now;

    begin_own_transaction();
    rel = try_relation_open(snap.relid, AccessShareLock);
    if (rel == NULL) {
        finish_table("failed", "the table was dropped during its snapshot");
        end_own_transaction();
        return true;
    }
    if (!walship_plugin_publishes(snap.ctx, rel, NULL)) {
        /* the stream's options leave it out (exclude-tables): nothing to send */
        relation_close(rel, AccessShareLock);
        finish_table("done", NULL);
        end_own_transaction();
        return true;
    }
    query = chunk_query(rel, &nkeys);
    if (query == NULL) {
        relation_close(rel, AccessShareLock);
        finish_table("failed", "the table has no primary key or replica identity index any more");
        end_own_transaction();
        return true;
    }
    if (snap.last_key != NIL) {
        ListCell *lc;
        int i = 0;

        if (list_length(snap.last_key) != nkeys) {
            relation_close(rel, AccessShareLock);
            finish_table("failed", "the table's key changed during its snapshot");
            end_own_transaction();
            return true;
        }
        values = palloc(sizeof(Datum) * nkeys);
        foreach (lc, snap.last_key)
            values[i++] = CStringGetTextDatum(lfirst(lc));
    }

    /* this statement's snapshot */
    PopActiveSnapshot();
    snapshot = GetTransactionSnapshot();
    if (snapshot_behind_decoding(snapshot)) {
        PushActiveSnapshot(snapshot);
        relation_close(rel, AccessShareLock);
        end_own_transaction();
        return false;
    }
    PushActiveSnapshot(snapshot);

    /*
     * The marks name this worker's start, not only its pid (pids are handed out again
     * after a restart), so that an earlier worker's marks, decoded again, match no chunk.
     * The window opens where the decoder stands, before the low mark: it marks the WAL.
     */
    snap.seq++;
    snprintf(snap.low_mark, sizeof(snap.low_mark), "low %d %lld %llu", MyProcPid,
             (long long)snap.started, (unsigned long long)snap.seq);
    snprintf(snap.high_mark, sizeof(snap.high_mark), "high %d %lld %llu", MyProcPid,
             (long long)snap.started, (unsigned long long)snap.seq);
    (void)write_mark(snap.low_mark, false);

    MemoryContextReset(snap.chunk_context);
    snap.topic = NULL;
    snap.table = NULL;
    keep_snapshot(GetActiveSnapshot());
    {
        Oid *types = palloc(sizeof(Oid) * Max(nkeys, 1));

        for (int i = 0; i < nkeys; i++)
            types[i] = TEXTOID;
        ret = spi(query, snap.last_key != NIL ? nkeys : 0, types, values, NULL, true, snap.limit);
    }
    if (ret != SPI_OK_SELECT)
        elog(ERROR, "walship stream \"%s\": chunk query of %s failed", snap.stream,
             snap.table_name);

    /* the chunk is read: its window closes at the high watermark */
    high = write_mark(snap.high_mark, true);
    now = GetCurrentTimestamp();

    {
        HASHCTL ctl;

        memset(&ctl, 0, sizeof(ctl));
        ctl.keysize = sizeof(ChunkKey);
        ctl.entrysize = sizeof(ChunkKeyEntry);
        ctl.hash = chunk_key_hash;
        ctl.match = chunk_key_match;
        ctl.hcxt = snap.chunk_context;
        snap.keys = hash_create("walship snapshot chunk", Max(SPI_processed, 16), &ctl,
                                HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
    }
    snap.rows = MemoryContextAlloc(snap.chunk_context, sizeof(ChunkRow) * Max(SPI_processed, 1));
    snap.nrows = 0;
    for (uint64 i = 0; i < SPI_processed; i++) {
        HeapTuple row = SPI_tuptable->vals[i];
        bool isnull;
        Datum whole = SPI_getbinval(row, SPI_tuptable->tupdesc, 1, &isnull);
        HeapTupleHeader header = DatumGetHeapTupleHeader(whole);
        HeapTupleData tuple;

        tuple.t_len = HeapTupleHeaderGetDatumLength(header);
        ItemPointerSetInvalid(&tuple.t_self);
        tuple.t_tableOid = snap.relid;
        tuple.t_data = header;
        (void)walship_plugin_read_row(snap.ctx, rel, &tuple, high, now, keep_read_row, NULL);
        CHECK_FOR_INTERRUPTS();
    }
    snap.chunk_last = SPI_processed < (uint64)snap.limit;
    snap.chunk_last_key = NIL;
    if (SPI_processed > 0) {
        HeapTuple row = SPI_tuptable->vals[SPI_processed - 1];
        MemoryContext old = MemoryContextSwitchTo(snap.context);

        for (int i = 0; i < nkeys; i++) {
            char *text = SPI_getvalue(row, SPI_tuptable->tupdesc, i + 2);

            snap.chunk_last_key = lappend(snap.chunk_last_key, text != NULL ? text : pstrdup(""));
        }
        MemoryContextSwitchTo(old);
    }
    relation_close(rel, AccessShareLock);
    end_own_transaction();

    snap.open = true;
    snap.low_seen = false;
    return true;
}

/* ------------------------------------------------------------------------- */
/* The worker's side                                                          */

void snapshot_attach(LogicalDecodingContext *ctx, ws_sink *sink, const StreamConfig *config,
                     MemoryContext parent)
{
    memset(&snap, 0, sizeof(snap));
    snap.ctx = ctx;
    snap.sink = sink;
    snap.stream = MemoryContextStrdup(parent, config->name);
    snap.chunk_size = config->snapshot_chunk_size > 0 ? config->snapshot_chunk_size
                                                      : STREAM_DEFAULT_SNAPSHOT_CHUNK;
    snap.context = AllocSetContextCreate(parent, "walship snapshot", ALLOCSET_DEFAULT_SIZES);
    snap.chunk_context =
        AllocSetContextCreate(snap.context, "walship snapshot chunk", ALLOCSET_DEFAULT_SIZES);
    snap.limit = snap.chunk_size;
    snap.look = true;
    snap.attached = true;
    /*
     * The worker's own transactions write only its progress. Each waits for its local
     * WAL flush (not for a synchronous standby: a standby that lags only means chunks
     * read again after a failover): with asynchronous commits a crash would lose the
     * progress of every chunk acknowledged in the last wal_writer_delay (up to 3 x),
     * which at snapshot speed is many chunks sent again. So what a crash resends is
     * bounded by what Kafka had not acknowledged: at most the in-flight ceiling
     * (kafka_has_room, walship.snapshot_max_in_flight) and two chunks.
     */
    SetConfigOption("synchronous_commit", "local", PGC_SUSET, PGC_S_OVERRIDE);
    /*
     * Whatever the server's defaults say: chunks read committed, progress written, no
     * timeout, and key values in one text form (last_key is read back with ::type).
     */
    SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("DateStyle", "ISO, MDY", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("IntervalStyle", "postgres", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("extra_float_digits", "1", PGC_SUSET, PGC_S_OVERRIDE);
    snap.started = GetCurrentTimestamp();
}

void snapshot_wake(void)
{
    snap.look = true;
}

void snapshot_save(void)
{
    if (snap.attached && snap.unacknowledged != NIL && !RecoveryInProgress())
        save_progress();
}

/* Room in Kafka's queue for another chunk: the snapshot never piles events up there. */
static bool kafka_has_room(void)
{
    ws_sink_stats stats;

    ws_sink_get_stats(snap.sink, &stats);
    /* walship.snapshot_max_in_flight, or 4 chunks if more: it also bounds what an
     * interruption sends again (tests/integration/test_snapshot.py) */
    return stats.in_flight <= (uint64)Max(walship_snapshot_max_in_flight, 4 * snap.chunk_size);
}

bool snapshot_ready(void)
{
    return snap.attached && !RecoveryInProgress() && snap.reading && !snap.open &&
           kafka_has_room() && GetCurrentTimestamp() >= snap.retry_at;
}

void snapshot_step(void)
{
    /* a standby writes no WAL and no catalog: its snapshots wait for a promotion */
    if (!snap.attached || RecoveryInProgress())
        return;
    if (snap.unacknowledged != NIL)
        save_progress();
    if (snap.open)
        return;
    if (!snap.reading) {
        if (!snap.look)
            return;
        pick_table();
        if (!snap.reading)
            return;
    }
    if (!kafka_has_room() || GetCurrentTimestamp() < snap.retry_at)
        return;

    /*
     * A chunk that cannot be read or encoded (a value the format refuses, a type whose
     * output fails) fails its table's snapshot, not the stream: the error is kept in
     * walship.snapshots, and walship.snapshot() can try the table again.
     */
    PG_TRY();
    {
        /* a transaction in the middle of its commit: a moment later it is visible */
        if (!read_chunk())
            snap.retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CHUNK_RETRY_MS);
    }
    PG_CATCH();
    {
        ErrorData *edata;

        MemoryContextSwitchTo(snap.context);
        edata = CopyErrorData();
        FlushErrorState();
        abort_own_transaction();
        close_chunk();
        ereport(WARNING, (errmsg("walship stream \"%s\": the snapshot of %s failed: %s",
                                 snap.stream, snap.table_name, edata->message),
                          errhint("walship.snapshot('%s', ARRAY['%s']) tries again.", snap.stream,
                                  snap.table_name)));
        begin_own_transaction();
        finish_table("failed", edata->message);
        end_own_transaction();
        FreeErrorData(edata);
    }
    PG_END_TRY();
}

/*
 * Did the chunk's snapshot see this (committed, top-level) transaction? Its xip lists
 * every top-level transaction running when it was taken, even when its subtransactions
 * overflowed, so pg_subtrans (which may be truncated by now) is never needed.
 */
static bool snapshot_saw(Snapshot snapshot, TransactionId xid)
{
    if (TransactionIdFollowsOrEquals(xid, snapshot->xmax))
        return false;
    if (TransactionIdPrecedes(xid, snapshot->xmin))
        return true;
    for (uint32 i = 0; i < snapshot->xcnt; i++)
        if (TransactionIdEquals(xid, snapshot->xip[i]))
            return false;
    return true;
}

static bool chunk_saw(TransactionId xid)
{
    return snapshot_saw(&snap.snapshot, xid);
}

/* The open chunk's row of this key, if the chunk's snapshot did not see xid change it. */
static ChunkRow *row_changed_unseen(Oid relid, const uint8 *key, size_t keylen, TransactionId xid)
{
    ChunkKey k;
    ChunkKeyEntry *entry;

    /* by the relation itself (a leaf): not by name, which a rename changes and which
     * several partitions share under partition-root */
    if (!snap.open || keylen == 0 || relid != snap.relid || snap.keys == NULL)
        return NULL;
    k.data = key;
    k.len = keylen;
    entry = hash_search(snap.keys, &k, HASH_FIND, NULL);
    if (entry == NULL)
        return NULL;
    if (TransactionIdIsValid(xid) && chunk_saw(xid))
        return NULL; /* the chunk's row has this change already */
    return &snap.rows[entry->row];
}

/* A record of a change: a key of the open chunk that the chunk's snapshot did not see
 * change is dropped from it (the change is newer). */
static void drop_key(Oid relid, const uint8 *key, size_t keylen, TransactionId xid)
{
    ChunkRow *row = row_changed_unseen(relid, key, keylen, xid);

    if (row != NULL)
        row->dropped = true;
}

/*
 * An UPDATE that lacks TOAST-ed values it left alone, of a row of the open chunk that the
 * chunk did not see: dropping the row would leave a copy that never had it without those
 * values for good. The chunk is read again instead (up to MAX_CHUNK_REREADS times in a
 * row), with a snapshot that sees the update, so the whole row follows it.
 */
void snapshot_on_partial(Oid relid, const uint8 *key, size_t keylen, TransactionId xid)
{
    if (row_changed_unseen(relid, key, keylen, xid) != NULL)
        snap.reread = true;
}

void snapshot_on_event(Oid relid, const ws_record *record, TransactionId xid)
{
    drop_key(relid, record->key, record->keylen, xid);
}

void snapshot_on_moved(Oid relid, const uint8 *key, size_t keylen, TransactionId xid)
{
    drop_key(relid, key, keylen, xid);
}

/* A TRUNCATE the open chunk did not see: none of its rows exists any more. */
void snapshot_on_truncated(Oid relid, TransactionId xid)
{
    if (!snap.open || relid != snap.relid || (TransactionIdIsValid(xid) && chunk_saw(xid)))
        return;
    for (int i = 0; i < snap.nrows; i++)
        snap.rows[i].dropped = true;
}

void snapshot_on_commit(TransactionId xid, uint64 nevents)
{
    if (!snap.attached || nevents == 0 || !TransactionIdIsValid(xid))
        return;
    snap.recent[snap.recent_next] = xid;
    snap.recent_next = (snap.recent_next + 1) % RECENT_XIDS;
    if (snap.nrecent < RECENT_XIDS)
        snap.nrecent++;
}

/* The chunk's window is over: its rows are forgotten. */
static void close_chunk(void)
{
    snap.open = false;
    MemoryContextReset(snap.chunk_context);
    snap.rows = NULL;
    snap.nrows = 0;
    snap.keys = NULL;
    snap.topic = NULL;
    snap.table = NULL;
}

void snapshot_on_watermark(const char *content, Size len, XLogRecPtr end_lsn)
{
    ChunkDone *done;
    MemoryContext old;
    int64 sent = 0;

    if (!snap.open)
        return;
    if (len == strlen(snap.low_mark) && memcmp(content, snap.low_mark, len) == 0) {
        snap.low_seen = true;
        return;
    }
    if (len != strlen(snap.high_mark) || memcmp(content, snap.high_mark, len) != 0)
        return; /* an earlier worker's */
    if (!snap.low_seen)
        elog(WARNING, "walship stream \"%s\": a snapshot's high watermark came before its low one",
             snap.stream);
    if (snap.reread) {
        snap.reread = false;
        if (snap.limit > 1 || snap.rereads < MAX_CHUNK_REREADS) {
            /*
             * Nothing sent, last_key as it was: the next chunk is this one again, half as
             * long (a shorter read and window are hit less often), down to one row, which
             * is read again up to MAX_CHUNK_REREADS times.
             */
            if (snap.limit > 1)
                snap.limit = Max(1, snap.limit / 2);
            else
                snap.rereads++;
            list_free_deep(snap.chunk_last_key);
            snap.chunk_last_key = NIL;
            close_chunk();
            return;
        }
        ereport(WARNING,
                (errmsg("walship stream \"%s\": rows of %s kept changing while the snapshot "
                        "read them; it goes on without them",
                        snap.stream, snap.table_name),
                 errdetail("Their updates left TOAST-ed values alone, which the WAL does not "
                           "carry: a copy that had not received those rows before lacks those "
                           "values until they change."),
                 errhint("walship.snapshot('%s', ARRAY['%s']) reads the table again.", snap.stream,
                         snap.table_name)));
    }
    snap.rereads = 0;
    /* back towards snapshot_chunk_size after a chunk had to be shortened */
    snap.limit = Min(snap.chunk_size, snap.limit * 2);

    ws_sink_begin_txn(snap.sink, end_lsn);
    for (int i = 0; i < snap.nrows; i++) {
        ws_record record;

        if (snap.rows[i].dropped)
            continue;
        memset(&record, 0, sizeof(record));
        record.key = snap.rows[i].key;
        record.keylen = snap.rows[i].keylen;
        record.value = snap.rows[i].value;
        record.valuelen = snap.rows[i].valuelen;
        stream_worker_produce(snap.topic, snap.table, &record, InvalidTransactionId, end_lsn);
        sent++;
    }
    ws_sink_end_txn(snap.sink, end_lsn);

    old = MemoryContextSwitchTo(snap.context);
    done = palloc0(sizeof(ChunkDone));
    done->lsn = end_lsn;
    done->relid = snap.relid;
    done->last_key = snap.chunk_last_key;
    done->rows = sent;
    done->chunks = 1;
    done->last = snap.chunk_last;
    snap.unacknowledged = lappend(snap.unacknowledged, done);
    MemoryContextSwitchTo(old);

    if (snap.chunk_last_key != NIL) {
        ListCell *lc;

        list_free_deep(snap.last_key);
        snap.last_key = NIL;
        foreach (lc, snap.chunk_last_key)
            snap.last_key = lappend(snap.last_key, pstrdup(lfirst(lc)));
    }
    snap.chunk_last_key = NIL;
    if (snap.chunk_last) {
        snap.reading = false;
        snap.look = true;
    }
    close_chunk();
}
