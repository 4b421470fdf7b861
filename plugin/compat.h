/*
 * compat.h: the PostgreSQL 15..18 differences the C shim depends on, in one place.
 *
 * Only PostgreSQL 15 is built in CI here; every other branch is guarded by
 * PG_VERSION_NUM so that the same sources compile against 16, 17 and 18 headers.
 * Include after postgres.h.
 */
#ifndef WALSHIP_COMPAT_H
#define WALSHIP_COMPAT_H

#include "access/attmap.h"
#include "replication/reorderbuffer.h"

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
 * be hidden from dlsym. (extension/worker_compat.h does the same for its files.)
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

#endif /* WALSHIP_COMPAT_H */
