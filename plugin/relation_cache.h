/*
 * relation_cache.h: what the output plugin remembers per relation.
 *
 * Decoding one row must not look anything up in the catalogs: whether the table
 * is streamed, under which name and topic, and how its tuples become rows are
 * worked out once per relation and kept here until an invalidation says the
 * relation (or a type or schema it depends on) changed.
 */
#ifndef WALSHIP_RELATION_CACHE_H
#define WALSHIP_RELATION_CACHE_H

#include "postgres.h"

#include "utils/relcache.h"

#include "rowview.h"
#include "walship_core.h"

typedef struct RelationCacheEntry {
    Oid relid; /* hash key: the relation changes arrive for (a leaf, for partitions) */

    /*
     * Invalidation callbacks only clear this flag; the entry is rebuilt the next
     * time a change needs it, inside a transaction with a historic snapshot,
     * where catalog access is allowed.
     */
    bool valid;
    MemoryContext context; /* holds everything below; reset on rebuild */

    /*
     * The relation events name: the topmost partitioned ancestor with
     * partition-root=on, else the relation itself.
     */
    Oid published_relid;
    char *schema;
    char *table;
    bool included; /* tables / exclude-tables let it through */

    /* Only built for included relations. */
    char *topic;     /* <topic-prefix>.<schema>.<table>, made valid for Kafka */
    char *qualified; /* <schema>.<table>, for the stream worker's dead letters */
    RowView view;
    /*
     * The core's handle of this table version (walship_core.h): created with the view,
     * destroyed when the entry's context is reset or deleted, which every rebuild and
     * purge does, so it never outlives the relation version it describes.
     */
    ws_table *table_handle;
} RelationCacheEntry;

/*
 * Creates the session's cache in a child of `parent`; it goes away with that
 * context. The cache keeps pointers to opts, encoder (table handles are made for it)
 * and topic_prefix, which must live as long. Only one cache is active per backend (a backend
 * decodes one slot at a time); invalidation callbacks act on it.
 */
extern void relation_cache_create(MemoryContext parent, const ws_options *opts,
                                  const ws_encoder *encoder, bool partition_root,
                                  const char *topic_prefix);

/*
 * The up-to-date entry for a relation a change arrived for. Valid until the next
 * relation_cache_purge.
 */
extern RelationCacheEntry *relation_cache_get(Relation relation);

/*
 * Selects tables by OID from now on (a stream's tables, followed through renames)
 * instead of by the tables option's names; exclude-tables still applies.
 */
extern void relation_cache_follow(const Oid *relids, int nrelids);

/* Frees the entries invalidated since the last call; no entry may be in use. */
extern void relation_cache_purge(void);

#endif /* WALSHIP_RELATION_CACHE_H */
