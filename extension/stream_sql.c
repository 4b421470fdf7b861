/*
 * stream_sql.c: walship.create_stream, alter_stream, start_stream, stop_stream,
 * drop_stream, snapshot.
 *
 * The catalog (walship.streams) is transactional; replication slots and running
 * workers are not. Each function therefore does its non-transactional part in the one
 * order that a failure can undo, and leaves the rest to the end of the transaction:
 *
 *   create_stream  validates everything, creates the slot first (logical slots can only
 *                  be created before the transaction writes), then inserts the row; if
 *                  the transaction aborts, the slot is dropped again.
 *   stop_stream    marks the stream disabled, asks its worker to stop and waits for it;
 *                  if the transaction aborts, the stop request is withdrawn and the
 *                  launcher starts the worker again.
 *   drop_stream    stops the worker the same way, deletes the row, and drops the slot just
 *                  before the transaction commits (an error there still aborts it).
 *   start_stream   marks the stream enabled and clears any restart backoff.
 *   alter_stream   changes the row (and the stream's snapshots); when the transaction
 *                  commits, asks the worker to exit so that the launcher starts it
 *                  again at once with the new row; an abort leaves the worker alone.
 *
 * All of them wake the launcher when their transaction commits.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "catalog/partition.h"
#include "access/relation.h"
#include "access/table.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "access/xlogutils.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include <signal.h>

#include "core_report.h"
#include "rowview.h"
#include "walship_sink.h"
#include "walship_streams.h"

WS_SQL_FUNCTION(walship_create_stream);
WS_SQL_FUNCTION(walship_start_stream);
WS_SQL_FUNCTION(walship_stop_stream);
WS_SQL_FUNCTION(walship_drop_stream);
WS_SQL_FUNCTION(walship_snapshot);

/* ------------------------------------------------------------------------- */
/* What the end of the transaction has to do                                */

typedef enum PendingKind {
    PENDING_DROP_SLOT_ON_ABORT,  /* create_stream made a slot */
    PENDING_DROP_SLOT_AT_COMMIT, /* drop_stream removed the row */
    PENDING_CLEAR_STOP_ON_ABORT, /* stop_stream/drop_stream asked a worker to stop */
    PENDING_WAKE_LAUNCHER,       /* at commit */
    PENDING_WAKE_SNAPSHOTS,      /* at commit: the stream's worker looks at its snapshots */
    PENDING_RESTART_WORKER,      /* at commit: alter_stream changed the stream's row */
} PendingKind;

typedef struct PendingAction {
    PendingKind kind;
    char name[NAMEDATALEN]; /* the stream (slot name for the slot actions) */
    SubTransactionId subid;
} PendingAction;

static List *pending_actions = NIL; /* list and actions in TopMemoryContext */
static bool callbacks_registered = false;

static void stream_xact_callback(XactEvent event, void *arg);
static void restart_worker(const char *name);
static bool restart_pending(const char *name);
static void stream_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
                                    SubTransactionId parentSubid, void *arg);

static void add_pending(PendingKind kind, const char *name)
{
    PendingAction *action;
    MemoryContext old;

    if (!callbacks_registered) {
        RegisterXactCallback(stream_xact_callback, NULL);
        RegisterSubXactCallback(stream_subxact_callback, NULL);
        callbacks_registered = true;
    }
    old = MemoryContextSwitchTo(TopMemoryContext);
    action = palloc0(sizeof(PendingAction));
    action->kind = kind;
    strlcpy(action->name, name, NAMEDATALEN);
    action->subid = GetCurrentSubTransactionId();
    pending_actions = lappend(pending_actions, action);
    MemoryContextSwitchTo(old);
}

static void drop_slot_if_exists(const char *slot_name)
{
    /* an error while creating it left it acquired: releasing drops an ephemeral slot */
    if (MyReplicationSlot != NULL && strcmp(NameStr(MyReplicationSlot->data.name), slot_name) == 0)
        ReplicationSlotRelease();
    if (SearchNamedReplicationSlot(slot_name, true) != NULL)
        ReplicationSlotDrop(slot_name, true);
}

/*
 * Undoes what an aborting (sub)transaction did outside the catalog. Errors here must not
 * escape into the abort in progress: they become warnings.
 */
static void undo_action(PendingAction *action)
{
    switch (action->kind) {
    case PENDING_DROP_SLOT_ON_ABORT: {
        MemoryContext cxt = CurrentMemoryContext;

        PG_TRY();
        {
            drop_slot_if_exists(action->name);
            (void)stream_position_forget(action->name);
            (void)stream_slot_forget_owned(action->name);
        }
        PG_CATCH();
        {
            ErrorData *edata;

            MemoryContextSwitchTo(cxt);
            edata = CopyErrorData();
            FlushErrorState();
            ereport(WARNING,
                    (errmsg("could not drop replication slot \"%s\" of an aborted "
                            "create_stream: %s",
                            action->name, edata->message),
                     errhint("Drop it with pg_drop_replication_slot('%s').", action->name)));
            FreeErrorData(edata);
        }
        PG_END_TRY();
        break;
    }
    case PENDING_CLEAR_STOP_ON_ABORT:
        if (walship_shmem != NULL) {
            StreamShared *entry;

            LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
            entry = stream_shmem_find(action->name);
            if (entry != NULL)
                entry->stop_requested = false;
            LWLockRelease(walship_shmem->lock);
            stream_wake_launcher();
        }
        break;
    default:
        break;
    }
}

static void clear_pending(void)
{
    list_free_deep(pending_actions);
    pending_actions = NIL;
}

static void stream_xact_callback(XactEvent event, void *arg)
{
    ListCell *lc;

    if (pending_actions == NIL)
        return;
    switch (event) {
    case XACT_EVENT_PRE_COMMIT:
        /* still allowed to fail: a slot that cannot be dropped aborts drop_stream */
        foreach (lc, pending_actions) {
            PendingAction *action = lfirst(lc);

            if (action->kind != PENDING_DROP_SLOT_AT_COMMIT)
                continue;
            if (SearchNamedReplicationSlot(action->name, true) != NULL)
                ReplicationSlotDrop(action->name, true);
            (void)stream_position_forget(action->name);
            (void)stream_slot_forget_owned(action->name);
        }
        break;
    case XACT_EVENT_PRE_PREPARE:
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("cannot prepare a transaction that changed walship streams"),
                        errdetail("Replication slots and stream workers are not transactional.")));
        break;
    case XACT_EVENT_COMMIT: {
        bool woken = false;

        foreach (lc, pending_actions) {
            PendingAction *action = lfirst(lc);

            if (action->kind == PENDING_WAKE_LAUNCHER && !woken) {
                stream_wake_launcher();
                woken = true;
            } else if (action->kind == PENDING_WAKE_SNAPSHOTS && !restart_pending(action->name))
                stream_wake_snapshots(action->name);
            else if (action->kind == PENDING_RESTART_WORKER)
                restart_worker(action->name);
        }
        clear_pending();
    } break;
    case XACT_EVENT_ABORT:
        foreach (lc, pending_actions)
            undo_action(lfirst(lc));
        clear_pending();
        break;
    default:
        break;
    }
}

static void stream_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
                                    SubTransactionId parentSubid, void *arg)
{
    ListCell *lc;

    if (event == SUBXACT_EVENT_COMMIT_SUB) {
        foreach (lc, pending_actions) {
            PendingAction *action = lfirst(lc);

            if (action->subid == mySubid)
                action->subid = parentSubid;
        }
    } else if (event == SUBXACT_EVENT_ABORT_SUB) {
        foreach (lc, pending_actions) {
            PendingAction *action = lfirst(lc);

            if (action->subid == mySubid) {
                undo_action(action);
                pending_actions = foreach_delete_current(pending_actions, lc);
                pfree(action);
            }
        }
    }
}

/* ------------------------------------------------------------------------- */
/* Checks shared by the functions                                            */

static char *stream_name_arg(FunctionCallInfo fcinfo, int argno)
{
    char *name;

    if (PG_ARGISNULL(argno))
        ereport(ERROR,
                (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("stream name must not be null")));
    name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
    if (!stream_name_is_valid(name))
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_NAME), errmsg("invalid stream name \"%s\"", name),
                 errdetail("A stream name is 1 to %d characters from a-z, 0-9 and _, so that "
                           "its replication slot walship_<name> is a valid slot name.",
                           STREAM_NAME_MAXLEN),
                 errhint("For example: orders_to_kafka.")));
    return name;
}

/*
 * A tables argument: a non-empty one-dimensional array of names without NULL, as text.
 * what names it in errors ("tables of", "tables to snapshot in"); empty_hint says what
 * NULL means instead.
 */
static List *table_names_arg(ArrayType *arr, const char *what, const char *name,
                             const char *empty_hint)
{
    Datum *elems;
    bool *elnulls;
    int n;
    List *names = NIL;

    if (ARR_NDIM(arr) > 1)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("%s stream \"%s\" must be a one-dimensional array", what, name)));
    deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &elnulls, &n);
    if (n == 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("%s stream \"%s\" must not be empty", what, name),
                        errhint("%s", empty_hint)));
    for (int i = 0; i < n; i++) {
        if (elnulls[i])
            ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                            errmsg("%s stream \"%s\" must not contain NULL", what, name)));
        names = lappend(names, TextDatumGetCString(elems[i]));
    }
    return names;
}

/*
 * The one check of a stream's Kafka properties, each and together, as the worker's
 * ws_sink_create makes it; its messages carry no secret of the stream.
 */
static void check_kafka_config(const StreamConfig *config, const char *name)
{
    ws_sink_config sc;
    ws_error err;

    stream_config_sink(config, &sc);
    if (ws_sink_check_config(&sc, &err) != WS_OK)
        ws_ereport(ERROR, &err, psprintf("invalid Kafka configuration for stream \"%s\"", name));
}

/* The catalog lives in walship.database: stream functions run there. */
static void require_stream_database(void)
{
    char *current = get_database_name(MyDatabaseId);

    if (walship_database == NULL || strcmp(current, walship_database) != 0)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("walship streams are managed in database \"%s\", not \"%s\"",
                               walship_database ? walship_database : "", current),
                        errdetail("walship.database names the database of the stream catalog "
                                  "and of the launcher."),
                        errhint("Connect to \"%s\", or set walship.database = '%s' and restart "
                                "the server.",
                                walship_database ? walship_database : "", current)));
}

/*
 * Streams are managed by roles with the privileges of walship_admin (superusers have
 * them). EXECUTE on start/stop/drop_stream is granted to that role only, on create_stream
 * to PUBLIC (see the extension script); checking here keeps the rule for all four, also
 * when a superuser grants EXECUTE to someone else, and says what to do.
 */
static void require_stream_admin(const char *action, const char *name)
{
    Oid admin = get_role_oid(STREAM_ADMIN_ROLE, true);

    if (OidIsValid(admin) ? has_privs_of_role(GetUserId(), admin) : superuser())
        return;
    ereport(ERROR,
            (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
             errmsg("permission denied to %s stream \"%s\"", action, name),
             errdetail("Only roles with the privileges of role \"%s\" manage walship streams.",
                       STREAM_ADMIN_ROLE),
             errhint("A superuser can grant them: GRANT %s TO %s;", STREAM_ADMIN_ROLE,
                     quote_identifier(GetUserNameFromId(GetUserId(), false)))));
}

/*
 * walship.streams is read by walship_admin but written only here, as the table's owner,
 * so that nothing reaches the catalog that these functions did not check. A failing
 * (sub)transaction restores the caller's identity by itself.
 */
static Oid catalog_saved_user = InvalidOid;
static int catalog_saved_context = 0;
static int catalog_guc_level = 0;

static Oid catalog_owner(void)
{
    Oid nsp = get_namespace_oid("walship", false);
    Oid relid = get_relname_relid("streams", nsp);
    HeapTuple tuple;
    Oid owner;

    if (!OidIsValid(relid))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                        errmsg("the walship stream catalog walship.streams does not exist"),
                        errhint("CREATE EXTENSION walship in database \"%s\".",
                                walship_database ? walship_database : "")));
    tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
    if (!HeapTupleIsValid(tuple))
        elog(ERROR, "cache lookup failed for relation %u", relid);
    owner = ((Form_pg_class)GETSTRUCT(tuple))->relowner;
    ReleaseSysCache(tuple);
    return owner;
}

static void spi_connect(void);

/* SPI_connect, running as the catalog's owner until catalog_finish. */
static void catalog_connect(void)
{
    Oid owner = catalog_owner();

    spi_connect();
    GetUserIdAndSecContext(&catalog_saved_user, &catalog_saved_context);
    SetUserIdAndSecContext(owner, catalog_saved_context | SECURITY_LOCAL_USERID_CHANGE |
                                      SECURITY_RESTRICTED_OPERATION);
    /*
     * The queries below run with the owner's rights: the caller's search_path must not
     * decide which function or operator they call (an "=" of the caller's own, placed
     * before pg_catalog, would run as the owner).
     */
    catalog_guc_level = NewGUCNestLevel();
    (void)set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
                            GUC_ACTION_SAVE, true, 0, false);
}

static void catalog_finish(void)
{
    AtEOXact_GUC(true, catalog_guc_level);
    SetUserIdAndSecContext(catalog_saved_user, catalog_saved_context);
    SPI_finish();
}

static int spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
                    bool read_only)
{
    int ret = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, 0);

    if (ret < 0)
        elog(ERROR, "SPI_execute_with_args failed: %s: %s", SPI_result_code_string(ret), sql);
    return ret;
}

static void spi_connect(void)
{
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
}

static void stream_not_found(const char *name)
{
    ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("stream \"%s\" does not exist", name),
                    errhint("See SELECT name FROM walship.streams.")));
}

/*
 * Locks the stream's catalog row until the transaction ends, or says there is none.
 * FOR NO KEY UPDATE: a worker saving its snapshot's progress checks its foreign key to
 * this row (FOR KEY SHARE), which FOR UPDATE would block, while drop_stream waits for
 * that worker to exit.
 */
static void lock_stream_row(const char *name)
{
    Oid types[1] = {TEXTOID};

    catalog_connect();
    spi_exec("SELECT 1 FROM walship.streams WHERE name = $1 FOR NO KEY UPDATE", 1, types,
             (Datum[]){CStringGetTextDatum(name)}, NULL, false);
    if (SPI_processed == 0)
        stream_not_found(name);
    catalog_finish();
}

/*
 * Asks the stream's worker to stop and waits for it to exit. Returns false if it still
 * runs after the wait. The request is withdrawn if the transaction aborts.
 */
static bool stop_worker_and_wait(const char *name)
{
    StreamShared *entry;
    pid_t pid;
    uint32 generation;
    TimestampTz deadline;
    uint32 wait_event;

    if (walship_shmem == NULL)
        return true; /* not preloaded: no worker can run */

    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    entry = stream_shmem_claim(name);
    if (entry == NULL) {
        LWLockRelease(walship_shmem->lock);
        return true; /* the table is full, so this stream has no entry and no worker */
    }
    entry->stop_requested = true;
    pid = entry->pid;
    generation = entry->generation;
    LWLockRelease(walship_shmem->lock);
    add_pending(PENDING_CLEAR_STOP_ON_ABORT, name);

    if (pid == 0)
        return true;
    kill(pid, SIGTERM);

    /* the worker waits up to walship.stop_timeout for Kafka; give it a margin */
    deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), walship_stop_timeout + 5000);
    wait_event = ws_wait_event("WalshipStopStream");
    for (;;) {
        bool gone;

        LWLockAcquire(walship_shmem->lock, LW_SHARED);
        gone = !entry->in_use || entry->generation != generation || entry->pid != pid;
        LWLockRelease(walship_shmem->lock);
        if (gone)
            return true;
        if (GetCurrentTimestamp() >= deadline)
            return false;
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20, wait_event);
        ResetLatch(MyLatch);
        CHECK_FOR_INTERRUPTS();
    }
}

/* ------------------------------------------------------------------------- */
/* Statements that hold secrets                                              */

/*
 * A stream's Kafka secrets given inline are part of the text of the statement that
 * called create_stream or alter_stream. PostgreSQL shows that text in pg_stat_activity
 * (to members of pg_monitor too), prints it as STATEMENT under the session's log lines
 * and errors (the LOG that creating the slot emits, every ERROR), and as a CONTEXT line
 * when the call came through SPI (a PL/pgSQL function, a DO block). So as soon as either
 * is given options it makes the session report this text instead, until the next
 * statement reports its own; and errors raised inside it carry no outer context.
 */
#define HIDDEN_STATEMENT(function)                                                                 \
    "walship." function "(...) -- statement text hidden by walship: its options may hold "         \
    "Kafka secrets"

/*
 * Any options may hold a secret: inline in "kafka", but also in a shape create_stream
 * refuses (an array, a misspelled key, a property in the wrong place), and that refusal
 * is an error that would show the statement. Only empty options are surely safe.
 */
static bool options_may_hold_secret(Jsonb *options)
{
    return options != NULL && JB_ROOT_COUNT(options) > 0;
}

static void hide_statement(const char *text)
{
    debug_query_string = text;
    pgstat_report_activity(STATE_RUNNING, text);
}

/* ------------------------------------------------------------------------- */
/* Snapshots: what create_stream, alter_stream and walship.snapshot queue     */

/*
 * What a snapshot reads: ordinary tables, each a leaf (a partitioned table's partitions
 * are read one by one; with partition-root their rows are published as the root's), with
 * a key to read them in chunks by and to deduplicate against changes.
 */
typedef struct SnapshotTarget {
    Oid relid;
    char *name; /* quoted schema.table */
} SnapshotTarget;

static bool snapshot_target_listed(List *targets, Oid relid)
{
    ListCell *lc;

    foreach (lc, targets)
        if (((SnapshotTarget *)lfirst(lc))->relid == relid)
            return true;
    return false;
}

/* A plugin option parser holding the stream's plugin options, for its table filters. */
static ws_options *stream_filters(const StreamConfig *config)
{
    ws_error err;
    ws_options *opts = ws_options_create(&err);
    ListCell *lc;

    if (opts == NULL)
        ws_ereport(ERROR, &err, NULL);
    foreach (lc, config->plugin_options) {
        DefElem *elem = lfirst(lc);

        if (strcmp(elem->defname, "tables") == 0 || strcmp(elem->defname, "exclude-tables") == 0)
            if (ws_options_set(opts, elem->defname, strVal(elem->arg), &err) != WS_OK) {
                ws_options_destroy(opts);
                ws_ereport(ERROR, &err, NULL);
            }
    }
    return opts;
}

/*
 * Adds what a snapshot of relid reads to *targets. named: the caller names the table
 * (the stream's list, walship.snapshot's): one without a key is an error. Otherwise
 * (every table) such a table is left out of the snapshot, named in *keyless.
 */
static void add_snapshot_target(const StreamConfig *config, ws_options *filters, List **targets,
                                Oid relid, bool named, List **keyless)
{
    Relation rel = try_relation_open(relid, AccessShareLock);
    char *schema;
    char *canonical;
    SnapshotTarget *target;

    if (rel == NULL)
        return; /* dropped meanwhile */
    schema = get_namespace_name(RelationGetNamespace(rel));
    canonical = quote_qualified_identifier(schema, RelationGetRelationName(rel));
    if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE) {
        List *children = find_all_inheritors(relid, AccessShareLock, NULL);
        ListCell *lc;

        foreach (lc, children) {
            Oid child = lfirst_oid(lc);

            if (child != relid && get_rel_relkind(child) == RELKIND_RELATION)
                add_snapshot_target(config, filters, targets, child, named, keyless);
        }
        relation_close(rel, AccessShareLock);
        return;
    }
    if (rel->rd_rel->relkind != RELKIND_RELATION ||
        rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT ||
        ws_options_table_excluded(filters, schema, RelationGetRelationName(rel)) ||
        (!named && !ws_options_table_included(filters, schema, RelationGetRelationName(rel))) ||
        snapshot_target_listed(*targets, relid)) {
        relation_close(rel, AccessShareLock);
        return;
    }
    if (!OidIsValid(rowview_key_index(rel)) && !named) {
        *keyless = lappend(*keyless, canonical);
        relation_close(rel, AccessShareLock);
        return;
    }
    if (!OidIsValid(rowview_key_index(rel)))
        ereport(ERROR,
                (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                 errmsg("table %s of stream \"%s\" cannot be snapshotted: it has no primary key "
                        "or replica identity index",
                        canonical, config->name),
                 errdetail("A snapshot reads a table in chunks in key order and drops from each "
                           "chunk the rows that changed meanwhile, by key; without a key a "
                           "snapshot row could overwrite a newer change."),
                 errhint("Add a primary key (or ALTER TABLE %s REPLICA IDENTITY USING INDEX on a "
                         "unique index of NOT NULL columns), or leave the table out of the "
                         "snapshot: snapshot_mode \"no_data\", or walship.snapshot with the other "
                         "tables.",
                         canonical)));
    target = palloc(sizeof(SnapshotTarget));
    target->relid = relid;
    target->name = canonical;
    *targets = lappend(*targets, target);
    relation_close(rel, AccessShareLock);
}

/*
 * The tables a snapshot reads: relids (tables of the stream, resolved by the caller), or,
 * when NIL, every table of the stream (stream_relids, or with those NIL every table the
 * stream's options let through). ERRORs name a table that cannot be read.
 */
static List *snapshot_targets(const StreamConfig *config, List *relids, List *stream_relids)
{
    List *targets = NIL;
    List *keyless = NIL;
    ws_options *filters = stream_filters(config);
    MemoryContext cxt = CurrentMemoryContext;
    ListCell *lc;

    PG_TRY();
    {
        if (relids != NIL) {
            foreach (lc, relids)
                add_snapshot_target(config, filters, &targets, lfirst_oid(lc), true, &keyless);
        } else if (stream_relids != NIL) {
            foreach (lc, stream_relids)
                add_snapshot_target(config, filters, &targets, lfirst_oid(lc), true, &keyless);
        } else {
            /* every table, as the plugin streams them: users' ordinary and partitioned
             * tables, partitions through their partitioned table */
            int ret;

            catalog_connect();
            ret = spi_exec("SELECT c.oid FROM pg_catalog.pg_class c "
                           "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
                           "AND c.relpersistence = 'p' AND c.oid >= 16384 "
                           "AND n.nspname <> 'walship' AND n.nspname <> 'information_schema' "
                           "AND n.nspname NOT LIKE 'pg\\_%' "
                           "AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d "
                           "  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid "
                           "  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass "
                           "    AND d.objid = c.oid AND d.deptype = 'e' "
                           "    AND e.extname = 'walship') "
                           "ORDER BY c.oid",
                           0, NULL, NULL, NULL, true);
            if (ret == SPI_OK_SELECT) {
                List *all = NIL;
                MemoryContext spi = MemoryContextSwitchTo(cxt);

                for (uint64 i = 0; i < SPI_processed; i++) {
                    bool isnull;

                    all = lappend_oid(
                        all, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
                                                            SPI_tuptable->tupdesc, 1, &isnull)));
                }
                MemoryContextSwitchTo(spi);
                catalog_finish();
                foreach (lc, all)
                    add_snapshot_target(config, filters, &targets, lfirst_oid(lc), false, &keyless);
            } else
                catalog_finish();
        }
    }
    PG_CATCH();
    {
        ws_options_destroy(filters);
        PG_RE_THROW();
    }
    PG_END_TRY();
    ws_options_destroy(filters);
    if (keyless != NIL) {
        StringInfoData names;

        initStringInfo(&names);
        foreach (lc, keyless)
            appendStringInfo(&names, "%s%s", names.len > 0 ? ", " : "", (char *)lfirst(lc));
        ereport(WARNING,
                (errmsg("stream \"%s\" snapshots every table but %d without a primary key or "
                        "replica identity index: %s",
                        config->name, list_length(keyless), names.data),
                 errdetail("A snapshot drops from each chunk the rows that changed meanwhile, by "
                           "key; without one a snapshot row could overwrite a newer change. The "
                           "changes of these tables stream all the same."),
                 errhint("Give them a primary key (or REPLICA IDENTITY USING INDEX), then "
                         "walship.snapshot('%s', ARRAY[...]) sends their rows.",
                         config->name)));
    }
    return targets;
}

/* walship_streams.h; a table snapshotted before starts again from its beginning. */
int stream_snapshot_request(const StreamConfig *config, List *relids, List *stream_relids)
{
    List *targets = snapshot_targets(config, relids, stream_relids);
    Oid types[3] = {TEXTOID, OIDOID, TEXTOID};
    ListCell *lc;

    if (targets == NIL)
        return 0;
    catalog_connect();
    foreach (lc, targets) {
        SnapshotTarget *target = lfirst(lc);
        Datum values[3] = {CStringGetTextDatum(config->name), ObjectIdGetDatum(target->relid),
                           CStringGetTextDatum(target->name)};

        spi_exec("SELECT state FROM walship.snapshots WHERE stream = $1 AND table_oid = $2 "
                 "AND state IN ('pending', 'running') FOR UPDATE",
                 2, types, values, NULL, false);
        if (SPI_processed > 0)
            ereport(ERROR,
                    (errcode(ERRCODE_OBJECT_IN_USE),
                     errmsg("table %s of stream \"%s\" is already being snapshotted", target->name,
                            config->name),
                     errhint("Wait until walship.stream_status shows snapshot_state \"done\" "
                             "(walship.snapshots lists each table), then ask again.")));
        spi_exec("INSERT INTO walship.snapshots (stream, table_oid, table_name) "
                 "VALUES ($1, $2, $3) ON CONFLICT (stream, table_oid) DO UPDATE SET "
                 "table_name = EXCLUDED.table_name, state = 'pending', last_key = NULL, "
                 "rows_emitted = 0, chunks = 0, resumes = 0, requested_at = now(), "
                 "started_at = NULL, finished_at = NULL, error = NULL",
                 3, types, values, NULL, false);
    }
    catalog_finish();
    add_pending(PENDING_WAKE_SNAPSHOTS, config->name);
    return list_length(targets);
}

/* walship.snapshot(stream, tables): the stream's tables, or some of them, again. */
Datum walship_snapshot(PG_FUNCTION_ARGS)
{
    char *name;
    StreamConfig *config;
    List *relids = NIL;

    stream_require_preloaded();
    require_stream_database();
    name = stream_name_arg(fcinfo, 0);
    require_stream_admin("snapshot", name);

    lock_stream_row(name);
    config = stream_config_load(name);

    if (!PG_ARGISNULL(1)) {
        List *table_names = table_names_arg(PG_GETARG_ARRAYTYPE_P(1), "tables to snapshot in", name,
                                            "Pass NULL to snapshot every table of the stream.");
        ListCell *name_cell;
        ListCell *oid_cell;

        forboth(name_cell, stream_resolve_tables(name, table_names, &relids), oid_cell, relids)
        {
            Oid relid = lfirst_oid(oid_cell);
            bool member = config->table_oids == NIL && config->tables == NIL;

            if (config->table_oids != NIL)
                member = list_member_oid(config->table_oids, relid);
            /* a partition of a partitioned table of the stream is in it too */
            if (!member && config->table_oids != NIL && get_rel_relispartition(relid)) {
                ListCell *lc;

                foreach (lc, get_partition_ancestors(relid))
                    member = member || list_member_oid(config->table_oids, lfirst_oid(lc));
            }
            if (!member)
                ereport(
                    ERROR,
                    (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                     errmsg("table %s is not in stream \"%s\"", strVal(lfirst(name_cell)), name),
                     errhint("A snapshot reads tables the stream streams; add the table with "
                             "walship.alter_stream('%s', tables => ...) first (which "
                             "snapshots it too).",
                             name)));
        }
    }
    if (stream_snapshot_request(config, relids, config->table_oids) == 0)
        ereport(NOTICE, (errmsg("stream \"%s\" has no table to snapshot", name)));
    PG_RETURN_VOID();
}

/* ------------------------------------------------------------------------- */
/* create_stream                                                             */

/*
 * Creates the stream's logical slot the way pg_create_logical_replication_slot does;
 * returns its confirmed position.
 */
static XLogRecPtr create_stream_slot(const char *slot_name, bool failover)
{
    LogicalDecodingContext *ctx;
    XLogRecPtr confirmed;

    /*
     * Ephemeral first, so that an error before it is complete drops it; persistent once
     * it has found its start point.
     */
    ws_replication_slot_create(slot_name, RS_EPHEMERAL, failover);
    ctx = CreateInitDecodingContext("walship", NIL, false, InvalidXLogRecPtr,
                                    XL_ROUTINE(.page_read = read_local_xlog_page,
                                               .segment_open = wal_segment_open,
                                               .segment_close = wal_segment_close),
                                    NULL, NULL, NULL);
    DecodingContextFindStartpoint(ctx);
    FreeDecodingContext(ctx);
    ReplicationSlotPersist();
    confirmed = MyReplicationSlot->data.confirmed_flush;
    ReplicationSlotRelease();
    return confirmed;
}

/*
 * Runs a function whose argument options_arg may hold secrets: given options, the
 * statement is hidden first (every check may fail, and its error would show it), and
 * errors carry no CONTEXT of the caller's statement. An error leaves the stack empty:
 * whoever catches it restores the one it saved.
 */
static void run_hiding_secrets(FunctionCallInfo fcinfo, int options_arg, const char *hidden,
                               void (*body)(FunctionCallInfo))
{
    ErrorContextCallback *outer_context = error_context_stack;

    if (PG_ARGISNULL(options_arg) || !options_may_hold_secret(PG_GETARG_JSONB_P(options_arg))) {
        body(fcinfo);
        return;
    }
    hide_statement(hidden);
    error_context_stack = NULL;
    body(fcinfo);
    error_context_stack = outer_context;
}

static void create_stream(FunctionCallInfo fcinfo);

Datum walship_create_stream(PG_FUNCTION_ARGS)
{
    run_hiding_secrets(fcinfo, 3, HIDDEN_STATEMENT("create_stream"), create_stream);
    PG_RETURN_VOID();
}

static void create_stream(FunctionCallInfo fcinfo)
{
    char *name;
    char *bootstrap;
    List *table_names = NIL;
    List *tables = NIL;
    List *relids = NIL;
    Jsonb *options = NULL;
    StreamConfig *config;
    char *slot_name;
    XLogRecPtr start_lsn;
    int ret;
    Datum values[5];
    char nulls[5] = {' ', ' ', ' ', ' ', ' '};
    Oid types[5] = {TEXTOID, TEXTOID, TEXTARRAYOID, JSONBOID, OIDARRAYOID};

    stream_require_preloaded();
    require_stream_database();
    name = stream_name_arg(fcinfo, 0);
    slot_name = stream_slot_name(name);
    require_stream_admin("create", name);
    stream_check_server_settings();

    if (PG_ARGISNULL(1))
        ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                        errmsg("bootstrap_servers of stream \"%s\" must not be null", name),
                        errhint("Give the Kafka brokers as host:port[,host:port...].")));
    bootstrap = text_to_cstring(PG_GETARG_TEXT_PP(1));
    if (!PG_ARGISNULL(2))
        table_names = table_names_arg(PG_GETARG_ARRAYTYPE_P(2), "tables of", name,
                                      "Pass NULL to stream every table.");
    if (!PG_ARGISNULL(3))
        options = PG_GETARG_JSONB_P(3);

    /* everything is checked before anything changes */
    catalog_connect();
    ret = spi_exec("SELECT 1 FROM walship.streams WHERE name = $1", 1, types,
                   (Datum[]){CStringGetTextDatum(name)}, NULL, true);
    if (SPI_processed > 0)
        ereport(ERROR,
                (errcode(ERRCODE_DUPLICATE_OBJECT), errmsg("stream \"%s\" already exists", name),
                 errhint("Drop it first with walship.drop_stream('%s'), or choose another "
                         "name.",
                         name)));
    ret = spi_exec("SELECT count(*) FROM walship.streams", 0, NULL, NULL, NULL, true);
    if (ret == SPI_OK_SELECT && SPI_processed == 1) {
        bool isnull;
        int64 count =
            DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

        if (count >= walship_max_streams)
            ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
                            errmsg("cannot create stream \"%s\": walship.max_streams (%d) "
                                   "streams exist",
                                   name, walship_max_streams),
                            errhint("Drop a stream, or raise walship.max_streams and restart "
                                    "the server.")));
    }
    catalog_finish();

    if (table_names != NIL)
        tables = stream_resolve_tables(name, table_names, &relids);
    config = stream_config_build(name, bootstrap, tables, options);
    check_kafka_config(config, name);

    /* tables the snapshot cannot read are refused before the slot exists */
    if (config->snapshot_initial)
        (void)snapshot_targets(config, NIL, relids);

    if (SearchNamedReplicationSlot(slot_name, true) != NULL)
        ereport(ERROR, (errcode(ERRCODE_DUPLICATE_OBJECT),
                        errmsg("replication slot \"%s\" for stream \"%s\" already exists",
                               slot_name, name),
                        errhint("Drop the slot with pg_drop_replication_slot('%s') if nothing "
                                "uses it, or choose another stream name.",
                                slot_name)));
    if (GetTopTransactionIdIfAny() != InvalidTransactionId)
        ereport(ERROR,
                (errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
                 errmsg("create_stream must run before its transaction writes anything"),
                 errdetail("A logical replication slot cannot be created in a transaction that "
                           "has performed writes."),
                 errhint("Call walship.create_stream in a transaction of its own.")));
    CheckLogicalDecodingRequirements();

    /* the slot first: afterwards this transaction writes */
    add_pending(PENDING_DROP_SLOT_ON_ABORT, slot_name);
    start_lsn = create_stream_slot(slot_name, config->failover);
    /*
     * The slot's first note (stream_position.c), replacing any of a dropped stream of the
     * same name: a slot moved before any worker ran is noticed too.
     */
    if (!stream_slot_mark_owned(slot_name, MyProcPid) ||
        !stream_position_save(slot_name, start_lsn))
        ereport(ERROR,
                (errcode_for_file_access(),
                 errmsg("could not note the position of replication slot \"%s\": %m", slot_name)));

    values[0] = CStringGetTextDatum(name);
    values[1] = CStringGetTextDatum(bootstrap);
    if (tables != NIL) {
        Datum *elems = palloc(sizeof(Datum) * list_length(tables));
        int i = 0;
        ListCell *lc;

        foreach (lc, tables)
            elems[i++] = CStringGetTextDatum(strVal(lfirst(lc)));
        values[2] = PointerGetDatum(construct_array(elems, i, TEXTOID, -1, false, TYPALIGN_INT));
        i = 0;
        foreach (lc, relids)
            elems[i++] = ObjectIdGetDatum(lfirst_oid(lc));
        values[4] =
            PointerGetDatum(construct_array(elems, i, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
    } else {
        nulls[2] = 'n';
        nulls[4] = 'n';
    }
    /* the options as the worker takes them, checked above: it passes them through */
    values[3] = JsonbPGetDatum(config->options);

    catalog_connect();
    ret = spi_exec("INSERT INTO walship.streams (name, bootstrap_servers, tables, options, "
                   "table_oids) VALUES ($1, $2, $3, $4, $5::pg_catalog.regclass[])",
                   5, types, values, nulls, false);
    if (ret != SPI_OK_INSERT)
        elog(ERROR, "could not insert stream \"%s\" into walship.streams", name);
    catalog_finish();
    /* the worker starts after this commits and finds them queued */
    if (config->snapshot_initial)
        (void)stream_snapshot_request(config, NIL, relids);

    /* a stream of the same name dropped a moment ago may still have its entry */
    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    {
        StreamShared *entry = stream_shmem_find(name);

        if (entry != NULL && entry->pid == 0) {
            entry->stop_requested = false;
            entry->restart_now = true;
            entry->state = STREAM_STATE_NONE;
            entry->last_error[0] = '\0';
            entry->last_error_time = 0;
        }
    }
    LWLockRelease(walship_shmem->lock);
    add_pending(PENDING_WAKE_LAUNCHER, name);
}

/* ------------------------------------------------------------------------- */
/* start_stream, stop_stream, drop_stream                                    */

static void set_enabled(const char *name, bool enabled)
{
    Oid types[2] = {TEXTOID, BOOLOID};
    Datum values[2] = {CStringGetTextDatum(name), BoolGetDatum(enabled)};

    catalog_connect();
    spi_exec("UPDATE walship.streams SET enabled = $2 WHERE name = $1", 2, types, values, NULL,
             false);
    if (SPI_processed == 0)
        stream_not_found(name);
    catalog_finish();
}

Datum walship_start_stream(PG_FUNCTION_ARGS)
{
    char *name;
    StreamShared *entry;

    stream_require_preloaded();
    require_stream_database();
    name = stream_name_arg(fcinfo, 0);
    require_stream_admin("start", name);
    set_enabled(name, true);

    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    entry = stream_shmem_find(name);
    if (entry != NULL) {
        entry->stop_requested = false;
        entry->restart_now = true;
    }
    LWLockRelease(walship_shmem->lock);
    add_pending(PENDING_WAKE_LAUNCHER, name);
    PG_RETURN_VOID();
}

Datum walship_stop_stream(PG_FUNCTION_ARGS)
{
    char *name;

    stream_require_preloaded();
    require_stream_database();
    name = stream_name_arg(fcinfo, 0);
    require_stream_admin("stop", name);
    set_enabled(name, false);
    if (!stop_worker_and_wait(name))
        ereport(WARNING,
                (errmsg("the worker of stream \"%s\" has not exited yet", name),
                 errdetail("It is still waiting for Kafka to acknowledge what it produced."),
                 errhint("It exits on its own; walship.stream_status shows when it has.")));
    add_pending(PENDING_WAKE_LAUNCHER, name);
    PG_RETURN_VOID();
}

Datum walship_drop_stream(PG_FUNCTION_ARGS)
{
    char *name;
    Oid types[1] = {TEXTOID};

    /*
     * Allowed without shared_preload_libraries (no worker can run then), so that a
     * stream and its slot can always be removed.
     */
    if (walship_shmem != NULL)
        require_stream_database();
    name = stream_name_arg(fcinfo, 0);
    require_stream_admin("drop", name);

    lock_stream_row(name);

    if (!stop_worker_and_wait(name))
        ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
                        errmsg("could not drop stream \"%s\": its worker has not exited", name),
                        errdetail("It is still waiting for Kafka to acknowledge what it produced."),
                        errhint("Try again in a moment, or lower walship.stop_timeout.")));

    catalog_connect();
    spi_exec("DELETE FROM walship.streams WHERE name = $1", 1, types,
             (Datum[]){CStringGetTextDatum(name)}, NULL, false);
    catalog_finish();

    add_pending(PENDING_DROP_SLOT_AT_COMMIT, stream_slot_name(name));
    add_pending(PENDING_WAKE_LAUNCHER, name);
    PG_RETURN_VOID();
}

/* ------------------------------------------------------------------------- */
/* DROP EXTENSION walship                                                    */

static ProcessUtility_hook_type prev_process_utility = NULL;

static bool drops_walship(Node *parsetree)
{
    DropStmt *drop;
    ListCell *lc;

    if (!IsA(parsetree, DropStmt))
        return false;
    drop = (DropStmt *)parsetree;
    if (drop->removeType != OBJECT_EXTENSION)
        return false;
    foreach (lc, drop->objects)
        if (strcmp(strVal(lfirst(lc)), "walship") == 0)
            return true;
    return false;
}

/*
 * Dropping the extension drops its streams first, exactly as drop_stream does (workers
 * stopped, slots dropped when the transaction commits), so that no slot is left behind
 * holding WAL for a catalog that no longer exists.
 */
static void walship_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
                                    ProcessUtilityContext context, ParamListInfo params,
                                    QueryEnvironment *queryEnv, DestReceiver *dest,
                                    QueryCompletion *qc)
{
    if (drops_walship(pstmt->utilityStmt) && OidIsValid(get_extension_oid("walship", true)) &&
        walship_database != NULL &&
        strcmp(get_database_name(MyDatabaseId), walship_database) == 0) {
        spi_connect();
        spi_exec("SELECT walship.drop_stream(name) FROM walship.streams", 0, NULL, NULL, NULL,
                 false);
        if (SPI_processed > 0)
            ereport(NOTICE, (errmsg("dropped %lld walship stream(s) and their slots",
                                    (long long)SPI_processed)));
        SPI_finish();
    }
    if (prev_process_utility)
        prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
    else
        standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest,
                                qc);
}

void stream_install_drop_hook(void)
{
    prev_process_utility = ProcessUtility_hook;
    ProcessUtility_hook = walship_process_utility;
}

/* ------------------------------------------------------------------------- */
/* alter_stream                                                              */

/*
 * alter_stream(name, tables, options) changes a stream in place, keeping its slot and so
 * its position: tables non-NULL is the new list (resolved and checked as create_stream's;
 * tables that join are snapshotted when the stream's snapshot_mode is initial, pending or
 * running snapshots of tables that leave are cancelled), NULL keeps the list; options
 * non-NULL are merged over the stored ones (stream_options_merge), NULL keeps them. The
 * whole new configuration is checked as create_stream checks it. Only the catalog
 * changes in the caller's transaction; when it commits, the stream's worker, which reads
 * the catalog when it starts, is asked to stop (gracefully: what Kafka acknowledged is
 * confirmed) and the launcher starts it again at once, from the slot.
 */
WS_SQL_FUNCTION(walship_alter_stream);

/*
 * At commit: the worker exits and the launcher starts it again without a backoff. An
 * enabled stream whose worker is not running (starting, or waiting out a backoff after a
 * failure) starts at once too, with the new row.
 */
static void restart_worker(const char *name)
{
    StreamShared *entry;

    if (walship_shmem == NULL)
        return;
    LWLockAcquire(walship_shmem->lock, LW_EXCLUSIVE);
    entry = stream_shmem_find(name);
    if (entry != NULL && !entry->stop_requested) {
        entry->restart_now = true;
        /* under the lock: the pid cannot be another process's yet */
        if (entry->pid != 0)
            kill(entry->pid, SIGTERM);
    }
    LWLockRelease(walship_shmem->lock);
}

/*
 * Does the transaction restart the stream's worker? Then the old worker is not told of
 * new snapshots (it would start one of a table it does not stream): the new one finds
 * them when it starts.
 */
static bool restart_pending(const char *name)
{
    ListCell *lc;

    foreach (lc, pending_actions) {
        PendingAction *action = lfirst(lc);

        if (action->kind == PENDING_RESTART_WORKER && strcmp(action->name, name) == 0)
            return true;
    }
    return false;
}

/* alter_stream's tables: like create_stream's, a non-empty array of names. */
static List *alter_table_names(FunctionCallInfo fcinfo, int argno, const char *name)
{
    return table_names_arg(PG_GETARG_ARRAYTYPE_P(argno), "tables of", name,
                           "Pass NULL to keep the stream's tables. A stream of listed tables "
                           "cannot become one of every table: create a new stream for that.");
}

/* Is relid one of relids, or a partition (at any depth) of one of them? */
static bool table_covered(List *relids, Oid relid)
{
    ListCell *lc;

    if (list_member_oid(relids, relid))
        return true;
    if (!get_rel_relispartition(relid))
        return false;
    foreach (lc, get_partition_ancestors(relid))
        if (list_member_oid(relids, lfirst_oid(lc)))
            return true;
    return false;
}

/*
 * The stream's tables by OID: its table_oids, or for a row written before there were
 * OIDs, its names as they resolve now (a name that no longer does is left out).
 */
static List *stream_relids(const StreamConfig *config)
{
    List *relids = NIL;
    ListCell *lc;

    if (config->table_oids != NIL || config->tables == NIL)
        return config->table_oids;
    foreach (lc, config->tables) {
        List *qualified = ws_string_to_qualified_name_list(strVal(lfirst(lc)));
        Oid relid = RangeVarGetRelid(makeRangeVarFromNameList(qualified), NoLock, true);

        if (OidIsValid(relid))
            relids = lappend_oid(relids, relid);
    }
    return relids;
}

/* The value of a plugin option of config, or NULL when it is not given. */
static const char *plugin_option(const StreamConfig *config, const char *name)
{
    ListCell *lc;

    foreach (lc, config->plugin_options) {
        DefElem *elem = lfirst(lc);

        if (strcmp(elem->defname, name) == 0)
            return strVal(elem->arg);
    }
    return NULL;
}

/*
 * Cancels the pending and running snapshots of tables that left the stream (relids are
 * its new tables): their rows go, with a NOTICE each. Only those rows are locked: the
 * worker goes on saving the progress of the others while the transaction is open.
 */
static void cancel_left_snapshots(const char *name, List *relids)
{
    MemoryContext caller = CurrentMemoryContext;
    Oid types[2] = {TEXTOID, OIDARRAYOID};
    List *left = NIL;
    List *cancelled = NIL;
    ListCell *lc;
    Datum *elems;
    int i = 0;

    catalog_connect();
    spi_exec("SELECT table_oid::pg_catalog.oid FROM walship.snapshots "
             "WHERE stream = $1 AND state IN ('pending', 'running')",
             1, types, (Datum[]){CStringGetTextDatum(name)}, NULL, true);
    for (uint64 r = 0; r < SPI_processed; r++) {
        bool isnull;
        Oid relid = DatumGetObjectId(
            SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));

        if (!table_covered(relids, relid)) {
            MemoryContext spi = MemoryContextSwitchTo(caller);

            left = lappend_oid(left, relid);
            MemoryContextSwitchTo(spi);
        }
    }
    if (left == NIL) {
        catalog_finish();
        return;
    }
    elems = palloc(sizeof(Datum) * list_length(left));
    foreach (lc, left)
        elems[i++] = ObjectIdGetDatum(lfirst_oid(lc));
    /* a snapshot that finished meanwhile stays */
    spi_exec("DELETE FROM walship.snapshots WHERE stream = $1 "
             "AND table_oid::pg_catalog.oid = ANY ($2) AND state IN ('pending', 'running') "
             "RETURNING table_name",
             2, types,
             (Datum[]){CStringGetTextDatum(name),
                       PointerGetDatum(
                           construct_array(elems, i, OIDOID, sizeof(Oid), true, TYPALIGN_INT))},
             NULL, false);
    for (uint64 r = 0; r < SPI_processed; r++) {
        char *table = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
        MemoryContext spi = MemoryContextSwitchTo(caller);

        cancelled = lappend(cancelled, pstrdup(table != NULL ? table : ""));
        MemoryContextSwitchTo(spi);
    }
    catalog_finish();
    foreach (lc, cancelled)
        ereport(NOTICE, (errmsg("the snapshot of table %s in stream \"%s\" is cancelled: the "
                                "table leaves the stream",
                                (char *)lfirst(lc), name)));
}

/* NOTICEs of changes that consumers of the stream see. */
static void notice_visible_changes(const StreamConfig *old, const StreamConfig *config)
{
    const char *old_format = plugin_option(old, "format");
    const char *new_format = plugin_option(config, "format");

    if (strcmp(old->topic_prefix, config->topic_prefix) != 0)
        ereport(
            NOTICE,
            (errmsg("stream \"%s\" moves to topics prefixed \"%s\" (was \"%s\")", config->name,
                    config->topic_prefix, old->topic_prefix),
             errdetail("Events produced after the stream restarts go to the topics "
                       "%s.<schema>.<table> (and its dead-letter topic %s.walship.dead_letter); "
                       "the old topics keep what was written to them.",
                       config->topic_prefix, config->topic_prefix)));
    /* the plugin's default format is protobuf */
    old_format = old_format != NULL ? old_format : "protobuf";
    new_format = new_format != NULL ? new_format : "protobuf";
    if (pg_strcasecmp(old_format, new_format) != 0)
        ereport(NOTICE, (errmsg("stream \"%s\" changes its event format from %s to %s",
                                config->name, old_format, new_format),
                         errdetail("Events produced after the stream restarts are %s, on the same "
                                   "topics; events Kafka had not acknowledged by then are produced "
                                   "again, as %s.",
                                   new_format, new_format)));
}

static void alter_stream(FunctionCallInfo fcinfo);

Datum walship_alter_stream(PG_FUNCTION_ARGS)
{
    run_hiding_secrets(fcinfo, 2, HIDDEN_STATEMENT("alter_stream"), alter_stream);
    PG_RETURN_VOID();
}

static void alter_stream(FunctionCallInfo fcinfo)
{
    MemoryContext caller = CurrentMemoryContext;
    char *name;
    bool enabled;
    Jsonb *stored = NULL;
    Jsonb *changes = NULL;
    StreamConfig *old;
    StreamConfig *config;
    List *old_relids;
    List *tables;
    List *relids;
    List *added = NIL;
    bool tables_given = !PG_ARGISNULL(1);
    bool tables_changed = false;
    bool options_changed = false;
    ListCell *lc;

    stream_require_preloaded();
    require_stream_database();
    name = stream_name_arg(fcinfo, 0);
    require_stream_admin("alter", name);
    if (!PG_ARGISNULL(2))
        changes = PG_GETARG_JSONB_P(2);

    /*
     * The row, locked until this transaction ends: alter, stop and drop wait for it. Not
     * FOR UPDATE: the worker saving a snapshot's progress checks its foreign key to the
     * row (FOR KEY SHARE) while holding the snapshot's row, which this transaction may
     * wait for (cancel_left_snapshots): that would be a deadlock.
     */
    catalog_connect();
    spi_exec("SELECT enabled, options FROM walship.streams WHERE name = $1 FOR NO KEY UPDATE", 1,
             (Oid[]){TEXTOID}, (Datum[]){CStringGetTextDatum(name)}, NULL, false);
    if (SPI_processed == 0)
        stream_not_found(name);
    {
        bool isnull;
        Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
        MemoryContext spi;

        enabled = !isnull && DatumGetBool(d);
        d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
        spi = MemoryContextSwitchTo(caller);
        if (!isnull)
            stored = DatumGetJsonbPCopy(d);
        MemoryContextSwitchTo(spi);
    }
    catalog_finish();
    if (!tables_given && changes == NULL) {
        ereport(NOTICE, (errmsg("alter_stream of stream \"%s\" changes nothing", name),
                         errhint("Give the stream's new tables, or options to change.")));
        return;
    }
    /* not its Kafka properties: a file of one that cannot be read may be what changes */
    old = stream_config_load_without_kafka(name);
    old_relids = stream_relids(old);

    /* the new configuration, checked as create_stream checks it, before anything changes */
    if (tables_given)
        tables = stream_resolve_tables(name, alter_table_names(fcinfo, 1, name), &relids);
    else {
        tables = old->tables;
        relids = old_relids;
    }
    config = stream_config_build(name, old->bootstrap_servers, tables,
                                 stream_options_merge(name, stored, changes));
    check_kafka_config(config, name);
    if (config->failover != old->failover)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("option \"failover\" of stream \"%s\" cannot be changed", name),
                        errdetail("failover is a property of the stream's replication slot \"%s\", "
                                  "created %s; alter_stream keeps the slot, and with it the "
                                  "stream's position.",
                                  config->slot_name,
                                  old->failover ? "as a failover slot" : "without failover"),
                        errhint("Drop the stream and create it again with failover %s; the new "
                                "stream starts at the current end of the WAL (and snapshots its "
                                "tables per snapshot_mode).",
                                config->failover ? "true" : "false")));

    if (tables_given) {
        tables_changed = !equal(old->tables, tables) || !equal(old->table_oids, relids);
        /* a stream of every table gains none */
        if (old_relids != NIL) {
            foreach (lc, relids)
                if (!table_covered(old_relids, lfirst_oid(lc)))
                    added = lappend_oid(added, lfirst_oid(lc));
        }
    }
    if (changes != NULL)
        options_changed =
            stored == NULL || DatumGetBool(DirectFunctionCall2(jsonb_ne, JsonbPGetDatum(stored),
                                                               JsonbPGetDatum(config->options)));
    if (options_changed)
        notice_visible_changes(old, config);

    /* the row, then the snapshots: all in the caller's transaction */
    if (tables_given || changes != NULL) {
        Oid types[4] = {TEXTOID, TEXTARRAYOID, OIDARRAYOID, JSONBOID};
        Datum values[4];
        char nulls[4] = {' ', ' ', ' ', ' '};
        Datum *elems = palloc(sizeof(Datum) * Max(list_length(tables), 1));
        int i = 0;

        values[0] = CStringGetTextDatum(name);
        if (tables != NIL) {
            foreach (lc, tables)
                elems[i++] = CStringGetTextDatum(strVal(lfirst(lc)));
            values[1] =
                PointerGetDatum(construct_array(elems, i, TEXTOID, -1, false, TYPALIGN_INT));
        } else
            nulls[1] = 'n';
        if (relids != NIL) {
            i = 0;
            elems = palloc(sizeof(Datum) * list_length(relids));
            foreach (lc, relids)
                elems[i++] = ObjectIdGetDatum(lfirst_oid(lc));
            values[2] =
                PointerGetDatum(construct_array(elems, i, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
        } else
            nulls[2] = 'n';
        if (changes != NULL)
            values[3] = JsonbPGetDatum(config->options);
        else
            nulls[3] = 'n';

        catalog_connect();
        /* kept tables keep the column as it is, also a row's without table_oids */
        spi_exec(tables_given && changes != NULL
                     ? "UPDATE walship.streams SET tables = $2, "
                       "table_oids = $3::pg_catalog.regclass[], options = $4 WHERE name = $1"
                 : tables_given ? "UPDATE walship.streams SET tables = $2, "
                                  "table_oids = $3::pg_catalog.regclass[] WHERE name = $1"
                                : "UPDATE walship.streams SET options = $4 WHERE name = $1",
                 4, types, values, nulls, false);
        if (SPI_processed != 1)
            elog(ERROR, "could not update stream \"%s\" in walship.streams", name);
        catalog_finish();
    }
    if (tables_given)
        cancel_left_snapshots(name, relids);
    if (added != NIL && config->snapshot_initial)
        (void)stream_snapshot_request(config, added, relids);

    if (enabled && (tables_changed || options_changed)) {
        add_pending(PENDING_RESTART_WORKER, name);
        add_pending(PENDING_WAKE_LAUNCHER, name);
    }
}
