/*
 * worker_compat.h: the PostgreSQL API differences (15 -> 18) that the launcher, the stream
 * worker and the stream SQL functions meet, hidden behind one spelling each.
 *
 * The output plugin's differences live in plugin/compat.h; these are the ones only the
 * extension side touches (slots, wait events, symbol export).
 */
#ifndef WALSHIP_WORKER_COMPAT_H
#define WALSHIP_WORKER_COMPAT_H

#include "postgres.h"
#include "replication/slot.h"
#include "utils/regproc.h"
#include "utils/wait_event.h"

/*
 * The module is built with -fvisibility=hidden. From PostgreSQL 16 on PGDLLEXPORT marks
 * symbols visible and PG_FUNCTION_INFO_V1 applies it to the function too; on 15 it is
 * empty, so the fmgr info records, the SQL-callable functions and the background worker
 * entry points would be hidden from dlsym. WS_SQL_FUNCTION declares both visibly.
 */
#if PG_VERSION_NUM < 160000 && defined(__GNUC__) && !defined(WIN32)
#undef PGDLLEXPORT
#define PGDLLEXPORT __attribute__((visibility("default")))
#endif

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

/* 18 added error_if_invalid: a slot invalidated for lack of WAL cannot be decoded. */
#if PG_VERSION_NUM >= 180000
#define ws_replication_slot_acquire(name, nowait) ReplicationSlotAcquire((name), (nowait), true)
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

#endif /* WALSHIP_WORKER_COMPAT_H */
