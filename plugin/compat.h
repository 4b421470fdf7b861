/*
 * compat.h: every PostgreSQL 15..18 difference walship's C files depend on, in one place:
 * the output plugin's (tuples, attribute maps, keys, the magic block) and the extension's
 * (slots, wait events, name parsing, symbol export), each behind one spelling.
 *
 * CI builds and tests against 15, 16, 17 and 18 (scripts/test.sh). Include after
 * postgres.h.
 */
#ifndef WALSHIP_COMPAT_H
#define WALSHIP_COMPAT_H

#include "fmgr.h"
#include "access/attmap.h"
#include "replication/reorderbuffer.h"
#include "replication/slot.h"
#include "utils/regproc.h"
#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000
#error "walship needs PostgreSQL 15 or later"
#endif

/*
 * PostgreSQL 17 made ReorderBufferChange's tuples plain HeapTuples; before, they
 * were ReorderBufferTupleBuf wrappers around a HeapTupleData.
 */
#if PG_VERSION_NUM >= 170000
#define WS_CHANGE_OLDTUPLE(change) ((change)->data.tp.oldtuple)
#define WS_CHANGE_NEWTUPLE(change) ((change)->data.tp.newtuple)
#else
#define WS_CHANGE_OLDTUPLE(change)                                                                 \
    ((change)->data.tp.oldtuple != NULL ? &(change)->data.tp.oldtuple->tuple : (HeapTuple)NULL)
#define WS_CHANGE_NEWTUPLE(change)                                                                 \
    ((change)->data.tp.newtuple != NULL ? &(change)->data.tp.newtuple->tuple : (HeapTuple)NULL)
#endif

/* PostgreSQL 16 added missing_ok to build_attrmap_by_name(). */
#if PG_VERSION_NUM >= 160000
#define ws_build_attrmap_by_name(indesc, outdesc) build_attrmap_by_name((indesc), (outdesc), false)
#else
#define ws_build_attrmap_by_name(indesc, outdesc) build_attrmap_by_name((indesc), (outdesc))
#endif

/* PostgreSQL 18 added deferrable_ok; walship's key is an immediate primary key, as before. */
#if PG_VERSION_NUM >= 180000
#define ws_relation_primary_key_index(rel) RelationGetPrimaryKeyIndex((rel), false)
#else
#define ws_relation_primary_key_index(rel) RelationGetPrimaryKeyIndex(rel)
#endif

/*
 * The module is built with -fvisibility=hidden. From PostgreSQL 16 on, PGDLLEXPORT
 * marks symbols visible and PG_MODULE_MAGIC / PG_FUNCTION_INFO_V1 apply it; on 15 it
 * is empty, and the magic block, the fmgr records and _PG_output_plugin_init would
 * be hidden from dlsym; so would the SQL-callable functions and the background worker
 * entry points.
 */
#if PG_VERSION_NUM < 160000 && defined(__GNUC__) && !defined(WIN32)
#undef PGDLLEXPORT
#define PGDLLEXPORT __attribute__((visibility("default")))
#endif

/* PostgreSQL 18 lets a module name itself and its version in the magic block. */
#if PG_VERSION_NUM >= 180000
#define WS_MODULE_MAGIC PG_MODULE_MAGIC_EXT(.name = "walship", .version = WALSHIP_VERSION)
#else
#define WS_MODULE_MAGIC PG_MODULE_MAGIC
#endif

/* SQL-callable functions: declared visibly, with their fmgr records. */
#define WS_SQL_FUNCTION(fn)                                                                        \
    extern PGDLLEXPORT Datum fn(PG_FUNCTION_ARGS);                                                 \
    PG_FUNCTION_INFO_V1(fn)

/*
 * 17 added failover and synced: a stream's slot is a failover slot when its stream asks
 * (the option is refused before 17), and never a synced one.
 */
#if PG_VERSION_NUM >= 170000
#define WS_HAVE_FAILOVER_SLOTS 1
#define ws_replication_slot_create(name, persistency, failover)                                    \
    ReplicationSlotCreate((name), true, (persistency), false, (failover), false)
#else
#define WS_HAVE_FAILOVER_SLOTS 0
#define ws_replication_slot_create(name, persistency, failover)                                    \
    ReplicationSlotCreate((name), true, (persistency), false)
#endif

/*
 * 18 added error_if_invalid. walship checks an invalidated slot itself right after taking
 * it, to say by which cause and how to recover, so it never asks for PostgreSQL's error.
 */
#if PG_VERSION_NUM >= 180000
#define ws_replication_slot_acquire(name, nowait) ReplicationSlotAcquire((name), (nowait), false)
#else
#define ws_replication_slot_acquire(name, nowait) ReplicationSlotAcquire((name), (nowait))
#endif

/* Has the slot been invalidated (max_slot_wal_keep_size, and from 16 other causes)? */
#if PG_VERSION_NUM >= 160000
#define ws_slot_invalidated(slot) ((slot)->data.invalidated != RS_INVAL_NONE)
#else
#define ws_slot_invalidated(slot) (!XLogRecPtrIsInvalid((slot)->data.invalidated_at))
#endif

/* 17 lets an extension name its wait events; before that they all show as "Extension". */
#if PG_VERSION_NUM >= 170000
#define ws_wait_event(name) WaitEventExtensionNew(name)
#else
#define ws_wait_event(name) ((uint32)PG_WAIT_EXTENSION)
#endif

/* 16 added a soft-error context; NULL keeps 15's behaviour (bad syntax is an ERROR). */
#if PG_VERSION_NUM >= 160000
#define ws_string_to_qualified_name_list(s) stringToQualifiedNameList((s), NULL)
#else
#define ws_string_to_qualified_name_list(s) stringToQualifiedNameList(s)
#endif

#endif /* WALSHIP_COMPAT_H */
