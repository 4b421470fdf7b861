/*
 * relation_cache.c: per-relation state of the output plugin, kept across changes.
 *
 * Shaped like pgoutput's RelationSyncCache: a hash by relation OID, entries
 * rebuilt lazily, invalidation callbacks that only mark entries invalid (they may
 * run at any catalog access, where building anything would be unsafe).
 *
 * Invalidation callbacks cannot be unregistered, so they are registered once per
 * backend and act on whatever cache is active; the active cache is forgotten
 * when its memory context goes away, including on an ERROR that never reaches the
 * plugin's shutdown callback.
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/dependency.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "commands/extension.h"
#include "mb/pg_wchar.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "core_report.h"
#include "relation_cache.h"
#include "walship_plugin.h"

typedef struct RelationCache {
    MemoryContext context;
    HTAB *entries;
    const ws_options *options;
    const ws_encoder *encoder;
    bool partition_root;
    bool array_elements; /* the encoder takes arrays element by element */
    const char *topic_prefix;
    /* relation_cache_follow: the selected tables by OID, sorted */
    bool following;
    Oid *followed;
    int nfollowed;
    MemoryContextCallback forget;
} RelationCache;

static RelationCache *active_cache = NULL;
static bool callbacks_registered = false;

/* Some entry was invalidated since the last purge (see relation_cache_purge). */
static bool purge_pending = false;

/*
 * Bumped by every invalidation, so that an entry whose build raced with one
 * (catalog access while building can process invalidations) stays invalid.
 */
static uint64 invalidation_count = 0;

static void invalidate_all(void)
{
    HASH_SEQ_STATUS status;
    RelationCacheEntry *entry;

    invalidation_count++;
    purge_pending = true;
    if (active_cache == NULL)
        return;
    hash_seq_init(&status, active_cache->entries);
    while ((entry = hash_seq_search(&status)) != NULL)
        entry->valid = false;
}

static void relcache_invalidated(Datum arg, Oid relid)
{
    HASH_SEQ_STATUS status;
    RelationCacheEntry *entry;

    if (!OidIsValid(relid)) {
        invalidate_all();
        return;
    }

    invalidation_count++;
    purge_pending = true;
    if (active_cache == NULL)
        return;

    entry = hash_search(active_cache->entries, &relid, HASH_FIND, NULL);
    if (entry != NULL)
        entry->valid = false;

    /* a renamed or altered root changes what its partitions publish */
    if (active_cache->partition_root) {
        hash_seq_init(&status, active_cache->entries);
        while ((entry = hash_seq_search(&status)) != NULL) {
            if (entry->published_relid == relid)
                entry->valid = false;
        }
    }
}

/* Type and schema renames change the names entries hold. */
static void syscache_invalidated(Datum arg, int cacheid, uint32 hashvalue)
{
    invalidate_all();
}

static void forget_cache(void *arg)
{
    if (active_cache == arg)
        active_cache = NULL;
}

void relation_cache_create(MemoryContext parent, const ws_options *opts, const ws_encoder *encoder,
                           bool partition_root, const char *topic_prefix)
{
    MemoryContext context;
    RelationCache *cache;
    HASHCTL ctl;
    ws_plugin_settings settings;

    context = AllocSetContextCreate(parent, "walship relation cache", ALLOCSET_DEFAULT_SIZES);
    cache = MemoryContextAllocZero(context, sizeof(RelationCache));
    cache->context = context;
    cache->options = opts;
    cache->encoder = encoder;
    cache->partition_root = partition_root;
    ws_options_settings(opts, &settings);
    cache->array_elements = settings.array_elements;
    cache->topic_prefix = topic_prefix;

    ctl.keysize = sizeof(Oid);
    ctl.entrysize = sizeof(RelationCacheEntry);
    ctl.hcxt = context;
    cache->entries =
        hash_create("walship relation cache", 128, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

    cache->forget.func = forget_cache;
    cache->forget.arg = cache;
    MemoryContextRegisterResetCallback(context, &cache->forget);

    if (!callbacks_registered) {
        CacheRegisterRelcacheCallback(relcache_invalidated, (Datum)0);
        CacheRegisterSyscacheCallback(TYPEOID, syscache_invalidated, (Datum)0);
        CacheRegisterSyscacheCallback(NAMESPACEOID, syscache_invalidated, (Datum)0);
        /* an enum's labels are in table handles; ALTER TYPE ... ADD VALUE changes pg_enum */
        CacheRegisterSyscacheCallback(ENUMOID, syscache_invalidated, (Datum)0);
        callbacks_registered = true;
    }
    active_cache = cache;
}

/*
 * walship's own tables (the extension's schema, or members of the extension wherever they
 * are) are never emitted, in any mode and whatever the options say: walship.streams holds
 * Kafka credentials, and a REPLICATION role that decodes with walship must not read them.
 * Both lookups read catalogs, which the historic snapshot of decoding allows.
 */
static bool is_walship_table(Relation relation)
{
    Oid extension;
    char *schema = get_namespace_name(RelationGetNamespace(relation));

    if (schema != NULL && strcmp(schema, "walship") == 0)
        return true;
    extension = getExtensionOfObject(RelationRelationId, RelationGetRelid(relation));
    return OidIsValid(extension) && extension == get_extension_oid("walship", true);
}

/*
 * Tables are streamed, as pgoutput publishes them: ordinary and partitioned tables
 * created by users. Materialized views (whose CONCURRENTLY refreshes arrive as
 * row changes), the tables initdb created and walship's own are not.
 */
static bool is_streamable(Relation relation)
{
    char relkind = relation->rd_rel->relkind;

    return (relkind == RELKIND_RELATION || relkind == RELKIND_PARTITIONED_TABLE) &&
           RelationGetRelid(relation) >= FirstNormalObjectId && !is_walship_table(relation);
}

static int oid_compare(const void *a, const void *b)
{
    Oid x = *(const Oid *)a;
    Oid y = *(const Oid *)b;

    return x < y ? -1 : (x > y ? 1 : 0);
}

void relation_cache_follow(const Oid *relids, int nrelids)
{
    RelationCache *cache = active_cache;

    if (cache == NULL)
        elog(ERROR, "walship relation cache is not initialized");
    cache->followed = MemoryContextAlloc(cache->context, sizeof(Oid) * Max(nrelids, 1));
    if (nrelids > 0)
        memcpy(cache->followed, relids, sizeof(Oid) * nrelids);
    cache->nfollowed = nrelids;
    qsort(cache->followed, nrelids, sizeof(Oid), oid_compare);
    cache->following = true;
    invalidate_all();
}

/* Does the stream name this table (by OID with relation_cache_follow, else by name)? */
static bool table_named(RelationCache *cache, Oid relid, const char *schema, const char *table)
{
    if (cache->following)
        return bsearch(&relid, cache->followed, cache->nfollowed, sizeof(Oid), oid_compare) !=
                   NULL &&
               !ws_options_table_excluded(cache->options, schema, table);
    return ws_options_table_included(cache->options, schema, table);
}

/*
 * Is this table selected by the tables / exclude-tables options? A partition is, when it
 * or any partitioned table above it is (naming a partitioned table streams all its
 * partitions, also those attached later), unless exclude-tables names the partition
 * itself. Ancestors are read from the (historic) catalog when the entry is built.
 */
static bool table_selected(RelationCache *cache, Relation relation, const char *schema,
                           const char *table)
{
    List *ancestors;
    ListCell *lc;
    bool selected = false;

    if (table_named(cache, RelationGetRelid(relation), schema, table))
        return true;
    if (!relation->rd_rel->relispartition ||
        ws_options_table_excluded(cache->options, schema, table))
        return false;
    ancestors = get_partition_ancestors(RelationGetRelid(relation));
    foreach (lc, ancestors) {
        Oid ancestor = lfirst_oid(lc);
        char *ancestor_schema = get_namespace_name(get_rel_namespace(ancestor));
        char *ancestor_table = get_rel_name(ancestor);

        if (ancestor_schema != NULL && ancestor_table != NULL &&
            table_named(cache, ancestor, ancestor_schema, ancestor_table)) {
            selected = true;
            break;
        }
    }
    list_free(ancestors);
    return selected;
}

/*
 * A topic name Kafka accepts, the way Debezium makes one: every character outside
 * [a-zA-Z0-9._-] becomes '_' (one per character as Java counts them, so a character
 * outside the BMP, four bytes of UTF-8, becomes two), and a name longer than Kafka's 249
 * characters is cut there, so that no table name can stop a stream. Distinct names may
 * meet in one topic ("a b" and "a_b", or two long names alike in their first 249
 * characters), as in Debezium.
 */
char *walship_kafka_topic_name(const char *name)
{
    StringInfoData buf;
    const char *p = name;

    initStringInfo(&buf);
    while (*p != '\0' && buf.len < WALSHIP_TOPIC_NAME_MAXLEN) {
        unsigned char c = (unsigned char)*p;
        int len;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '-') {
            appendStringInfoChar(&buf, (char)c);
            p++;
            continue;
        }
        len = pg_mblen(p);
        appendStringInfoString(&buf, GetDatabaseEncoding() == PG_UTF8 && len == 4 ? "__" : "_");
        for (int i = 0; i < len && *p != '\0'; i++)
            p++;
    }
    if (buf.len > WALSHIP_TOPIC_NAME_MAXLEN)
        buf.data[buf.len = WALSHIP_TOPIC_NAME_MAXLEN] = '\0';
    /* "." and ".." are the only names of valid characters Kafka refuses */
    if (strcmp(buf.data, ".") == 0 || strcmp(buf.data, "..") == 0)
        for (char *q = buf.data; *q != '\0'; q++)
            *q = '_';
    return buf.data;
}

/*
 * The one rule for the prefix of a stream's topics: topic-prefix when given (and not
 * empty), else the database name made a valid topic name.
 */
char *walship_topic_prefix(const char *given, const char *database)
{
    if (given != NULL && given[0] != '\0')
        return pstrdup(given);
    return walship_kafka_topic_name(database);
}

/*
 * What frees a table handle, in the entry's own context: the callback touches nothing
 * outside it, whatever order contexts are deleted in.
 */
typedef struct TableHandleOwner {
    MemoryContextCallback callback;
    ws_table *table;
} TableHandleOwner;

static void free_table_handle(void *arg)
{
    TableHandleOwner *owner = arg;

    ws_table_destroy(owner->table);
    owner->table = NULL;
}

/* The core's handle of the entry's table, made from its view (see relation_cache.h). */
static void create_table_handle(RelationCache *cache, RelationCacheEntry *entry)
{
    ws_table_desc desc;
    ws_error err;
    TableHandleOwner *owner;

    desc.schema = entry->schema;
    desc.table = entry->table;
    desc.topic = entry->topic;
    desc.columns = &entry->view.after;
    desc.before = &entry->view.before;
    owner = MemoryContextAllocZero(entry->context, sizeof(TableHandleOwner));
    owner->table = ws_table_create(cache->encoder, &desc, &err);
    if (owner->table == NULL)
        ws_ereport(ERROR, &err, NULL);
    owner->callback.func = free_table_handle;
    owner->callback.arg = owner;
    MemoryContextRegisterResetCallback(entry->context, &owner->callback);
    entry->table_handle = owner->table;
}

static void build_entry(RelationCache *cache, RelationCacheEntry *entry, Relation relation)
{
    Relation published = relation;
    MemoryContext oldcxt;

    MemoryContextReset(entry->context); /* destroys the old table handle too */
    entry->table_handle = NULL;
    oldcxt = MemoryContextSwitchTo(entry->context);

    entry->published_relid = RelationGetRelid(relation);
    if (cache->partition_root && relation->rd_rel->relispartition) {
        List *ancestors = get_partition_ancestors(RelationGetRelid(relation));

        entry->published_relid = llast_oid(ancestors);
        published = RelationIdGetRelation(entry->published_relid);
        if (!RelationIsValid(published))
            elog(ERROR, "could not open relation with OID %u", entry->published_relid);
    }

    entry->schema = get_namespace_name(RelationGetNamespace(published));
    entry->table = pstrdup(RelationGetRelationName(published));
    entry->included =
        is_streamable(published) &&
        table_selected(cache, relation, get_namespace_name(RelationGetNamespace(relation)),
                       RelationGetRelationName(relation));
    entry->topic = NULL;
    entry->qualified = NULL;
    if (entry->included) {
        entry->qualified = psprintf("%s.%s", entry->schema, entry->table);
        entry->topic = walship_kafka_topic_name(
            psprintf("%s.%s.%s", cache->topic_prefix, entry->schema, entry->table));
        rowview_init(&entry->view, relation, published, cache->array_elements);
        create_table_handle(cache, entry);
    }

    if (published != relation)
        RelationClose(published);
    MemoryContextSwitchTo(oldcxt);
}

/*
 * Invalidated entries of relations that were dropped would stay forever: forget
 * every invalid entry (a relation still in use is rebuilt on its next change).
 * Runs only where no entry is in use, and only after an invalidation.
 */
void relation_cache_purge(void)
{
    HASH_SEQ_STATUS status;
    RelationCacheEntry *entry;

    if (!purge_pending || active_cache == NULL)
        return;
    purge_pending = false;

    hash_seq_init(&status, active_cache->entries);
    while ((entry = hash_seq_search(&status)) != NULL) {
        if (entry->valid)
            continue;
        MemoryContextDelete(entry->context);
        /* dynahash allows removing the element the scan just returned */
        hash_search(active_cache->entries, &entry->relid, HASH_REMOVE, NULL);
    }
}

RelationCacheEntry *relation_cache_get(Relation relation)
{
    RelationCache *cache = active_cache;
    Oid relid = RelationGetRelid(relation);
    RelationCacheEntry *entry;
    bool found;

    if (cache == NULL)
        elog(ERROR, "walship relation cache is not initialized");

    entry = hash_search(cache->entries, &relid, HASH_ENTER, &found);
    if (!found) {
        entry->valid = false;
        entry->context =
            AllocSetContextCreate(cache->context, "walship relation", ALLOCSET_SMALL_SIZES);
        entry->published_relid = InvalidOid;
        entry->included = false;
        entry->table_handle = NULL;
    }

    if (entry->valid && entry->included &&
        entry->view.source_natts != RelationGetDescr(relation)->natts)
        entry->valid = false;

    if (!entry->valid) {
        uint64 seen = invalidation_count;

        build_entry(cache, entry, relation);
        entry->valid = (seen == invalidation_count);
    }
    return entry;
}
