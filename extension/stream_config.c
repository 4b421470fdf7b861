/*
 * stream_config.c: a stream's configuration, from create_stream's arguments or from its
 * catalog row, turned by one function (build_config) into what the stream worker hands
 * on: the output plugin's options, the Kafka sink's settings (producer properties and
 * topic settings) and the stream's own (on_refused, failover).
 *
 * create_stream checks each option once: plugin options with the plugin's own parser
 * (ws_options_set), the Kafka properties as a whole with the sink's one check
 * (ws_sink_check_config, stream_sql.c), walship's own here; and it stores the canonical
 * form of the options in the catalog. The worker reads that form back and passes it
 * through: its plugin checks the plugin options when decoding starts, ws_sink_create the
 * Kafka properties, with the same errors, so a row written behind walship's back is
 * held to the same rules.
 *
 * The options object create_stream takes holds:
 *   - the output plugin's options, spelled with '_' or '-' (topic_prefix, format, ...);
 *     tables comes from create_stream's own argument, and without topic_prefix the
 *     stream's topics are prefixed with the database name (walship_topic_prefix, the
 *     plugin's rule, made explicit here);
 *   - kafka: an object of librdkafka producer properties;
 *   - partitions, replication_factor: for the topics walship creates;
 *   - on_refused: stop (the default) or dead_letter, for events Kafka refuses for good;
 *   - failover: the stream's slot is a failover slot (PostgreSQL 17 and later);
 *   - snapshot_mode: initial (the default: the stream's tables are snapshotted while
 *     their changes stream) or no_data; snapshot_chunk_size: rows per chunk.
 * The canonical form (canonical_options) has the plugin options in an object "plugin",
 * in the plugin's spelling, as the text the plugin takes, topic-prefix always among
 * them; kafka as given (file forms by their path, never the content); partitions and
 * replication_factor when given; on_refused, failover, snapshot_mode and
 * snapshot_chunk_size always:
 *   {"plugin": {"format": "json", "topic-prefix": "shop"}, "kafka": {"linger.ms": 20},
 *    "on_refused": "stop", "failover": false, "snapshot_mode": "initial",
 *    "snapshot_chunk_size": 4096}
 * A row in the first form (written by hand, or by walship before the canonical form)
 * reads the same way: both are one syntax.
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/relation.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "storage/fd.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/varlena.h"

#include "core_report.h"
#include "walship_plugin.h"
#include "walship_sink.h"
#include "walship_streams.h"

#define OPTIONS_HINT                                                                               \
    "Stream options are the walship output plugin's options (topic_prefix, format, "               \
    "include_before, ...; '_' or '-'), plus kafka, partitions, replication_factor, "               \
    "on_refused, failover, snapshot_mode, snapshot_chunk_size, delivery, "                         \
    "transaction_interval_ms and transaction_max_events."

/* walship's own tables, never streamed: the catalog holds Kafka credentials */

bool stream_name_is_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > STREAM_NAME_MAXLEN)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

char *stream_slot_name(const char *name)
{
    return psprintf("%s%s", STREAM_SLOT_PREFIX, name);
}

/*
 * Is the walship library allowed as an output plugin? Servers with the
 * output_plugin_libraries setting refuse every plugin it does not name, in-process
 * decoding included. Probed by name, so that servers without the setting need nothing.
 */
static bool output_plugin_allowed(const char **setting)
{
    const char *value = GetConfigOption("output_plugin_libraries", true, false);
    char *copy;
    List *names;
    ListCell *lc;
    bool allowed = false;

    *setting = value;
    if (value == NULL)
        return true;
    copy = pstrdup(value);
    if (!SplitDirectoriesString(copy, ',', &names))
        return false;
    foreach (lc, names) {
        const char *entry = lfirst(lc);
        const char *base = strrchr(entry, '/');

        base = base ? base + 1 : entry;
        if (strcmp(entry, "*") == 0 || strcmp(base, "walship") == 0 ||
            strcmp(base, "walship.so") == 0)
            allowed = true;
    }
    return allowed;
}

void stream_check_server_settings(void)
{
    const char *setting;

    if (wal_level < WAL_LEVEL_LOGICAL)
        ereport(ERROR,
                (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                 errmsg("walship streams need wal_level = logical"),
                 errdetail("wal_level is \"%s\".", GetConfigOption("wal_level", false, false)),
                 errhint("Set wal_level = logical and restart the server.")));
    if (!output_plugin_allowed(&setting))
        ereport(ERROR,
                (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                 errmsg("output plugin \"walship\" is not allowed by output_plugin_libraries"),
                 errdetail("output_plugin_libraries is '%s'.", setting),
                 errhint("Add walship to output_plugin_libraries (e.g. output_plugin_libraries "
                         "= 'pgoutput, walship') and reload the server configuration.")));
}

/* ------------------------------------------------------------------------- */
/* tables                                                                    */

/*
 * create_stream's text of one table as a qualified name, or an error naming it. The
 * parser's own "invalid name syntax" would not say which element is wrong; it only
 * pallocs before it fails, so its error can be caught without a subtransaction.
 */
static List *table_name_list(const char *stream_name, const char *text)
{
    MemoryContext cxt = CurrentMemoryContext;
    List *names = NIL;

    PG_TRY();
    {
        names = ws_string_to_qualified_name_list(text);
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(cxt);
        FlushErrorState();
        names = NIL;
    }
    PG_END_TRY();
    if (names == NIL || list_length(names) > 3)
        ereport(
            ERROR,
            (errcode(ERRCODE_INVALID_NAME),
             errmsg("invalid table name \"%s\" in the tables of stream \"%s\"", text, stream_name),
             errhint("Give each table as name or schema.name, double-quoting names with "
                     "capitals, spaces or other characters, e.g. public.\"Order Lines\".")));
    return names;
}

List *stream_resolve_tables(const char *stream_name, List *names, List **relids)
{
    List *result = NIL;
    ListCell *lc;

    *relids = NIL;

    foreach (lc, names) {
        const char *text = lfirst(lc);
        RangeVar *rv;
        Oid relid;
        Relation rel;
        char *canonical;

        rv = makeRangeVarFromNameList(table_name_list(stream_name, text));
        relid = RangeVarGetRelid(rv, AccessShareLock, true);
        if (!OidIsValid(relid))
            ereport(ERROR,
                    (errcode(ERRCODE_UNDEFINED_TABLE),
                     errmsg("table \"%s\" of stream \"%s\" does not exist", text, stream_name),
                     errhint("List existing tables, optionally schema-qualified, or pass NULL "
                             "to stream every table.")));
        rel = relation_open(relid, NoLock);
        canonical = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
                                               RelationGetRelationName(rel));

        if (rel->rd_rel->relkind != RELKIND_RELATION &&
            rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
            ereport(ERROR,
                    (errcode(ERRCODE_WRONG_OBJECT_TYPE),
                     errmsg("\"%s\" of stream \"%s\" is not a table", canonical, stream_name),
                     errhint("Streams carry the changes of tables; views, sequences and "
                             "foreign tables have none in the WAL.")));
        if (IsCatalogRelation(rel))
            ereport(ERROR,
                    (errcode(ERRCODE_WRONG_OBJECT_TYPE),
                     errmsg("\"%s\" of stream \"%s\" is a system catalog", canonical, stream_name),
                     errhint("Logical decoding does not stream system catalogs.")));
        if (strcmp(get_namespace_name(RelationGetNamespace(rel)), "walship") == 0)
            ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE),
                            errmsg("\"%s\" of stream \"%s\" is one of walship's own tables",
                                   canonical, stream_name),
                            errhint("walship never streams its catalog: it holds Kafka "
                                    "credentials.")));
        if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
            ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE),
                            errmsg("table \"%s\" of stream \"%s\" is %s", canonical, stream_name,
                                   rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP ? "temporary"
                                                                                      : "unlogged"),
                            errhint("Only permanent, logged tables reach the WAL that logical "
                                    "decoding reads.")));
        if (rel->rd_rel->relreplident == REPLICA_IDENTITY_NOTHING ||
            (rel->rd_rel->relreplident != REPLICA_IDENTITY_FULL &&
             !OidIsValid(RelationGetReplicaIndex(rel))))
            ereport(ERROR,
                    (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                     errmsg("table \"%s\" of stream \"%s\" has no replica identity", canonical,
                            stream_name),
                     errdetail("Its updates and deletes would carry no key: no Kafka key, no "
                               "\"before\" row."),
                     errhint("Add a primary key, or ALTER TABLE %s REPLICA IDENTITY FULL (or "
                             "USING INDEX).",
                             canonical)));
        relation_close(rel, NoLock);

        if (!list_member(result, makeString(canonical))) {
            result = lappend(result, makeString(canonical));
            *relids = lappend_oid(*relids, relid);
        }
    }
    return result;
}

/* The plugin's tables option: a comma-separated list of quoted-as-needed schema.table. */
static char *tables_option_value(List *tables)
{
    StringInfoData buf;
    ListCell *lc;

    initStringInfo(&buf);
    foreach (lc, tables) {
        if (buf.len > 0)
            appendStringInfoString(&buf, ",");
        appendStringInfoString(&buf, strVal(lfirst(lc)));
    }
    return buf.data;
}

/* ------------------------------------------------------------------------- */
/* options                                                                   */

/* A JSON scalar as the text an option parser takes; NULL for null, objects, arrays. */
static char *jsonb_scalar_text(const JsonbValue *v)
{
    switch (v->type) {
    case jbvString:
        return pnstrdup(v->val.string.val, v->val.string.len);
    case jbvNumeric:
        return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
    case jbvBool:
        return pstrdup(v->val.boolean ? "true" : "false");
    default:
        return NULL;
    }
}

#define TOPIC_SETTING_HINT                                                                         \
    "%s is used when walship creates a topic; leave it out for the broker's default."
#define TRANSACTION_SETTING_HINT                                                                   \
    "%s sizes the Kafka transactions of delivery exactly_once (docs/streams.md); leave it out "    \
    "for walship's default."

static int positive_int_option(const char *stream_name, const char *key, const JsonbValue *v,
                               long max, const char *hint)
{
    char *text = jsonb_scalar_text(v);
    char *end;
    long value;

    if (text != NULL && v->type != jbvBool) {
        errno = 0;
        value = strtol(text, &end, 10);
        if (errno == 0 && *end == '\0' && end != text && value >= 1 && value <= max)
            return (int)value;
    }
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("invalid value for option \"%s\" of stream \"%s\"", key, stream_name),
                    errdetail("Expected an integer from 1 to %ld, got %s.", max,
                              text ? text : "no number"),
                    errhint(hint, key)));
    return -1; /* not reached */
}

#define FILE_FORM_HINT                                                                             \
    "Give a Kafka property as a string, number or boolean, or as {\"file\": \"/absolute/path\"} "  \
    "to have the server read its value from a file."

/*
 * The path of a property given in the file form, {"file": "/path"}; NULL when the value
 * is a scalar. Anything else is an error naming the property.
 */
static char *file_form_path(const StreamConfig *config, const char *name, const JsonbValue *v)
{
    JsonbIterator *it;
    JsonbIteratorToken tok;
    JsonbValue item;
    char *path = NULL;
    int keys = 0;

    if (v->type != jbvBinary)
        return NULL;
    if (JsonContainerIsObject(v->val.binary.data)) {
        it = JsonbIteratorInit(v->val.binary.data);
        while ((tok = JsonbIteratorNext(&it, &item, true)) != WJB_DONE) {
            bool is_file;

            if (tok != WJB_KEY)
                continue;
            keys++;
            is_file = item.val.string.len == 4 && memcmp(item.val.string.val, "file", 4) == 0;
            tok = JsonbIteratorNext(&it, &item, true);
            if (is_file && item.type == jbvString)
                path = pnstrdup(item.val.string.val, item.val.string.len);
        }
    }
    if (path == NULL || keys != 1)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("Kafka property \"%s\" of stream \"%s\" must be a string, number, "
                               "boolean or {\"file\": \"/path\"}",
                               name, config->name),
                        errhint(FILE_FORM_HINT)));
    if (!is_absolute_path(path))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("file \"%s\" of Kafka property \"%s\" of stream \"%s\" is not an "
                               "absolute path",
                               path, name, config->name),
                        errhint("The server reads the file; name it from the root, e.g. "
                                "{\"file\": \"/etc/walship/kafka.pw\"}.")));
    return path;
}

/*
 * Reads the value of a property given in the file form. The content is a secret: it
 * never appears in a message, a log, a view or the catalog (which holds only the path).
 * One trailing newline is dropped, as the files that tools write end with one.
 */
static char *read_file_form(const StreamConfig *config, const char *name, const char *path)
{
    StringInfoData buf;
    FILE *file;
    struct stat st;
    char chunk[8192];
    size_t n;

    /* a FIFO or a device could block the server, or swallow what others write to it */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("file \"%s\" of Kafka property \"%s\" of stream \"%s\" is not a "
                               "regular file",
                               path, name, config->name),
                        errhint("Name a file that holds the property's value.")));
    file = AllocateFile(path, PG_BINARY_R);
    if (file == NULL)
        ereport(ERROR, (errcode_for_file_access(),
                        errmsg("could not open file \"%s\" of Kafka property \"%s\" of stream "
                               "\"%s\": %m",
                               path, name, config->name),
                        errhint("The file must exist and be readable by the operating system user "
                                "the PostgreSQL server runs as.")));
    if (fstat(fileno(file), &st) != 0 || !S_ISREG(st.st_mode)) {
        FreeFile(file);
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("file \"%s\" of Kafka property \"%s\" of stream \"%s\" is not a "
                               "regular file",
                               path, name, config->name)));
    }
    initStringInfo(&buf);
    while ((n = fread(chunk, 1, sizeof(chunk), file)) > 0) {
        if (buf.len + n > STREAM_SECRET_FILE_MAXLEN) {
            FreeFile(file);
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("file \"%s\" of Kafka property \"%s\" of stream \"%s\" is "
                                   "larger than %d bytes",
                                   path, name, config->name, STREAM_SECRET_FILE_MAXLEN),
                            errhint("The file holds the property's value only.")));
        }
        appendBinaryStringInfo(&buf, chunk, n);
    }
    if (ferror(file)) {
        int save_errno = errno;

        FreeFile(file);
        errno = save_errno;
        ereport(ERROR, (errcode_for_file_access(),
                        errmsg("could not read file \"%s\" of Kafka property \"%s\" of stream "
                               "\"%s\": %m",
                               path, name, config->name)));
    }
    FreeFile(file);

    if (buf.len > 0 && buf.data[buf.len - 1] == '\n')
        buf.data[--buf.len] = '\0';
    if (buf.len > 0 && buf.data[buf.len - 1] == '\r')
        buf.data[--buf.len] = '\0';
    if (buf.len == 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("file \"%s\" of Kafka property \"%s\" of stream \"%s\" is empty",
                               path, name, config->name),
                        errhint("Write the property's value into the file.")));
    if (strlen(buf.data) != (size_t)buf.len)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("file \"%s\" of Kafka property \"%s\" of stream \"%s\" contains "
                               "a zero byte",
                               path, name, config->name),
                        errhint("The file holds the property's value as text.")));
    return buf.data;
}

/* An option whose value must be a JSON object. */
static void require_object(const StreamConfig *config, const char *key, const JsonbValue *v,
                           const char *hint)
{
    if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                 errmsg("option \"%s\" of stream \"%s\" must be a JSON object", key, config->name),
                 errhint("%s", hint)));
}

typedef void (*member_fn)(StreamConfig *config, ws_options *parser, const char *key,
                          const JsonbValue *v);

/* fn for each member of a JSON object, in the order jsonb keeps them. */
static void each_member(JsonbContainer *object, member_fn fn, StreamConfig *config,
                        ws_options *parser)
{
    JsonbIterator *it = JsonbIteratorInit(object);
    JsonbIteratorToken tok;
    JsonbValue v;

    while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE) {
        char *key;

        if (tok != WJB_KEY)
            continue;
        key = pnstrdup(v.val.string.val, v.val.string.len);
        tok = JsonbIteratorNext(&it, &v, true);
        Assert(tok == WJB_VALUE);
        fn(config, parser, key, &v);
    }
}

/* One Kafka property of the stream, its value read later when it is in the file form. */
static void add_kafka_property(StreamConfig *config, ws_options *parser, const char *name,
                               const JsonbValue *v)
{
    char *path = file_form_path(config, name, v);
    char *value = path != NULL ? NULL : jsonb_scalar_text(v);
    int n = config->nkafka;

    if (path == NULL && value == NULL)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("Kafka property \"%s\" of stream \"%s\" must be a string, number, "
                               "boolean or {\"file\": \"/path\"}",
                               name, config->name),
                        errhint(FILE_FORM_HINT)));
    if (strcmp(name, "bootstrap.servers") == 0 || strcmp(name, "metadata.broker.list") == 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("Kafka property \"%s\" of stream \"%s\" conflicts with the "
                               "bootstrap_servers argument",
                               name, config->name),
                        errhint("Give the brokers as create_stream's bootstrap_servers only.")));
    /* room for 8, then twice as much whenever it is full */
    if (n == 0) {
        config->kafka_names = palloc(sizeof(char *) * 8);
        config->kafka_values = palloc(sizeof(char *) * 8);
        config->kafka_files = palloc(sizeof(char *) * 8);
    } else if (n >= 8 && (n & (n - 1)) == 0) {
        config->kafka_names = repalloc(config->kafka_names, sizeof(char *) * n * 2);
        config->kafka_values = repalloc(config->kafka_values, sizeof(char *) * n * 2);
        config->kafka_files = repalloc(config->kafka_files, sizeof(char *) * n * 2);
    }
    config->kafka_names[n] = pstrdup(name);
    config->kafka_values[n] = value;
    /* the sink treats a value from a file as a secret whatever the property */
    config->kafka_files[n] = path;
    config->nkafka++;
}

static void add_kafka_properties(StreamConfig *config, const JsonbValue *kafka)
{
    require_object(config, "kafka", kafka,
                   "Pass librdkafka producer properties, e.g. "
                   "{\"kafka\": {\"compression.type\": \"lz4\"}}.");
    /* as given (inline values, or the paths of the file form), for the catalog */
    config->kafka_json = JsonbToCString(NULL, kafka->val.binary.data, kafka->val.binary.len);
    each_member(kafka->val.binary.data, add_kafka_property, config, NULL);

    /* files are read once every property is known, so that no message shows a secret */
    for (int i = 0; i < config->nkafka; i++)
        if (config->kafka_files[i] != NULL)
            config->kafka_values[i] =
                read_file_form(config, config->kafka_names[i], config->kafka_files[i]);
}

/*
 * Sets one plugin option, checked by the plugin's parser (create_stream), or passed
 * through as it is (parser NULL: the worker, whose plugin checks its options itself).
 */
static void set_plugin_option(StreamConfig *config, ws_options *parser, const char *key,
                              const char *name, const char *value)
{
    ws_error err;

    /* the plugin's own error, as pg_recvlogical shows it; the context names the stream */
    if (parser != NULL && ws_options_set(parser, name, value, &err) != WS_OK)
        ws_ereport(ERROR, &err,
                   psprintf("invalid option \"%s\" for stream \"%s\"", key, config->name));
    config->plugin_options = lappend(
        config->plugin_options, makeDefElem(pstrdup(name), (Node *)makeString(pstrdup(value)), -1));
}

static void free_parser(ws_options **parser)
{
    if (*parser != NULL)
        ws_options_destroy(*parser);
    *parser = NULL;
}

/*
 * What is wrong with one broker address of bootstrap_servers ([scheme://]host[:port],
 * host may be [IPv6]); NULL when nothing is. librdkafka would take a port of 99999
 * modulo 65536 and connect somewhere else.
 */
static const char *broker_address_problem(char *address)
{
    char *host = address;
    char *port = NULL;
    char *scheme = strstr(address, "://");

    if (scheme != NULL)
        host = scheme + 3;
    if (*host == '[') {
        char *close = strchr(host, ']');

        if (close == NULL)
            return "an IPv6 address needs its closing ]";
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return "expected :port after the IPv6 address";
    } else {
        char *colon = strrchr(host, ':');

        if (colon != NULL && strchr(host, ':') != colon)
            return "write an IPv6 address in brackets, e.g. [::1]:9092";
        if (colon != NULL) {
            *colon = '\0';
            port = colon + 1;
        }
        if (*host == '\0')
            return "the host is missing";
    }
    if (port != NULL) {
        char *end;
        long value;

        errno = 0;
        value = strtol(port, &end, 10);
        if (*port == '\0' || *end != '\0' || errno != 0 || value < 1 || value > 65535)
            return "the port must be a number from 1 to 65535";
    }
    return NULL;
}

/* bootstrap_servers as create_stream takes them: host:port[,host:port...] */
static void check_bootstrap_servers(const char *name, const char *bootstrap_servers)
{
    if (bootstrap_servers == NULL || bootstrap_servers[0] == '\0')
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("bootstrap_servers of stream \"%s\" must not be empty", name),
                        errhint("Give the Kafka brokers as host:port[,host:port...].")));
    {
        /* librdkafka accepts any text here and fails later, at connect time */
        char *copy = pstrdup(bootstrap_servers);
        char *save = NULL;
        int n = 0;

        for (char *part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
            char *start = part;
            char *end = part + strlen(part);

            while (*start == ' ')
                start++;
            while (end > start && end[-1] == ' ')
                end--;
            for (char *p = start; p < end; p++)
                if (isspace((unsigned char)*p) || *p == '\'' || *p == '"')
                    ereport(ERROR,
                            (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                             errmsg("invalid bootstrap_servers for stream \"%s\": \"%s\"", name,
                                    bootstrap_servers),
                             errhint("Give the Kafka brokers as host:port[,host:port...].")));
            if (end > start) {
                const char *why_bad = broker_address_problem(pnstrdup(start, end - start));

                if (why_bad != NULL)
                    ereport(ERROR,
                            (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                             errmsg("invalid broker \"%.*s\" in bootstrap_servers of stream "
                                    "\"%s\": %s",
                                    (int)(end - start), start, name, why_bad),
                             errhint("Give the Kafka brokers as host:port[,host:port...], e.g. "
                                     "kafka1:9092,kafka2:9092.")));
                n++;
            }
        }
        if (n == 0 || strstr(bootstrap_servers, ",,") != NULL)
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("invalid bootstrap_servers for stream \"%s\": \"%s\"", name,
                                   bootstrap_servers),
                            errhint("Give the Kafka brokers as host:port[,host:port...].")));
    }
}

/*
 * One output plugin option of a stream, given as key (either spelling) with the JSON
 * value v, set in the plugin's spelling (see set_plugin_option).
 */
static void add_plugin_option(StreamConfig *config, ws_options *parser, const char *key,
                              const JsonbValue *v)
{
    char *plugin_name = pstrdup(key);
    char *value;

    for (char *p = plugin_name; *p; p++)
        if (*p == '_')
            *p = '-';
    if (strcmp(plugin_name, "tables") == 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("option \"%s\" of stream \"%s\" is given as create_stream's "
                               "tables argument",
                               key, config->name),
                        errhint("Pass the tables as an array: create_stream(name, servers, "
                                "ARRAY['public.orders'], options).")));
    if (strcmp(plugin_name, "framing") == 0)
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                 errmsg("option \"%s\" cannot be set for stream \"%s\"", key, config->name),
                 errdetail("Kafka frames every event as one message."), errhint(OPTIONS_HINT)));
    value = jsonb_scalar_text(v);
    if (value == NULL)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("option \"%s\" of stream \"%s\" must be a string, number or boolean",
                               key, config->name),
                        errhint(OPTIONS_HINT)));
    set_plugin_option(config, parser, key, plugin_name, value);
}

/* The plugin options of the canonical form: {"plugin": {"topic-prefix": "...", ...}}. */
static void add_plugin_options(StreamConfig *config, ws_options *parser, const JsonbValue *plugin)
{
    require_object(config, "plugin", plugin, OPTIONS_HINT);
    each_member(plugin->val.binary.data, add_plugin_option, config, parser);
}

/*
 * One option of a stream's options object: walship's own (kafka, partitions,
 * replication_factor, on_refused, failover), the canonical form's plugin object, or an
 * output plugin option.
 */
static void add_stream_option(StreamConfig *config, ws_options *parser, const char *key,
                              const JsonbValue *v)
{
    if (strcmp(key, "kafka") == 0) {
        add_kafka_properties(config, v);
    } else if (strcmp(key, "plugin") == 0) {
        add_plugin_options(config, parser, v);
    } else if (strcmp(key, "partitions") == 0) {
        config->partitions =
            positive_int_option(config->name, key, v, STREAM_MAX_PARTITIONS, TOPIC_SETTING_HINT);
    } else if (strcmp(key, "replication_factor") == 0 || strcmp(key, "replication-factor") == 0) {
        config->replication_factor = positive_int_option(
            config->name, key, v, STREAM_MAX_REPLICATION_FACTOR, TOPIC_SETTING_HINT);
    } else if (strcmp(key, "delivery") == 0) {
        char *mode = jsonb_scalar_text(v);

        if (mode != NULL && v->type == jbvString &&
            (strcmp(mode, "at_least_once") == 0 || strcmp(mode, "at-least-once") == 0))
            config->exactly_once = false;
        else if (mode != NULL && v->type == jbvString &&
                 (strcmp(mode, "exactly_once") == 0 || strcmp(mode, "exactly-once") == 0))
            config->exactly_once = true;
        else
            ereport(ERROR,
                    (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                     errmsg("invalid value for option \"%s\" of stream \"%s\"", key, config->name),
                     errdetail("Expected \"at_least_once\" or \"exactly_once\", got %s.",
                               mode != NULL ? mode : "no string"),
                     errhint("at_least_once (the default) may send events again after a crash; "
                             "exactly_once sends them in Kafka transactions, each exactly once "
                             "to consumers with isolation.level = read_committed "
                             "(docs/streams.md).")));
    } else if (strcmp(key, "transaction_interval_ms") == 0 ||
               strcmp(key, "transaction-interval-ms") == 0) {
        config->transaction_interval_ms = positive_int_option(
            config->name, key, v, STREAM_MAX_TRANSACTION_INTERVAL_MS, TRANSACTION_SETTING_HINT);
    } else if (strcmp(key, "transaction_max_events") == 0 ||
               strcmp(key, "transaction-max-events") == 0) {
        config->transaction_max_events = positive_int_option(
            config->name, key, v, STREAM_MAX_TRANSACTION_EVENTS, TRANSACTION_SETTING_HINT);
    } else if (strcmp(key, "on_refused") == 0 || strcmp(key, "on-refused") == 0) {
        char *policy = jsonb_scalar_text(v);

        if (policy != NULL && v->type == jbvString && strcmp(policy, "stop") == 0)
            config->dead_letter = false;
        else if (policy != NULL && v->type == jbvString &&
                 (strcmp(policy, "dead_letter") == 0 || strcmp(policy, "dead-letter") == 0))
            config->dead_letter = true;
        else
            ereport(ERROR,
                    (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                     errmsg("invalid value for option \"%s\" of stream \"%s\"", key, config->name),
                     errdetail("Expected \"stop\" or \"dead_letter\", got %s.",
                               policy != NULL ? policy : "no string"),
                     errhint("on_refused says what happens to an event Kafka refuses for good "
                             "(e.g. larger than message.max.bytes): stop the stream in front "
                             "of it (\"stop\", the default) or write a note of it to the topic "
                             "<topic_prefix>.walship.dead_letter and go on "
                             "(\"dead_letter\").")));
    } else if (strcmp(key, "snapshot_mode") == 0 || strcmp(key, "snapshot-mode") == 0) {
        char *mode = jsonb_scalar_text(v);

        if (mode != NULL && v->type == jbvString && strcmp(mode, "initial") == 0)
            config->snapshot_initial = true;
        else if (mode != NULL && v->type == jbvString &&
                 (strcmp(mode, "no_data") == 0 || strcmp(mode, "no-data") == 0))
            config->snapshot_initial = false;
        else
            ereport(ERROR,
                    (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                     errmsg("invalid value for option \"%s\" of stream \"%s\"", key, config->name),
                     errdetail("Expected \"initial\" or \"no_data\", got %s.",
                               mode != NULL ? mode : "no string"),
                     errhint("snapshot_mode initial (the default, as Debezium's) sends the rows "
                             "the stream's tables hold when it is created, as read events, "
                             "while their changes stream; no_data sends changes only.")));
    } else if (strcmp(key, "snapshot_chunk_size") == 0 || strcmp(key, "snapshot-chunk-size") == 0) {
        char *text = jsonb_scalar_text(v);
        char *end;
        long value = 0;

        if (text != NULL && v->type == jbvNumeric) {
            errno = 0;
            value = strtol(text, &end, 10);
            if (errno != 0 || *end != '\0' || end == text)
                value = 0;
        }
        if (value < 1 || value > STREAM_MAX_SNAPSHOT_CHUNK)
            ereport(ERROR,
                    (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                     errmsg("invalid value for option \"%s\" of stream \"%s\"", key, config->name),
                     errdetail("Expected an integer from 1 to %d, got %s.",
                               STREAM_MAX_SNAPSHOT_CHUNK, text != NULL ? text : "no number"),
                     errhint("A snapshot reads its tables in chunks of this many rows, each held "
                             "in the worker's memory until Kafka has it; the default is %d.",
                             STREAM_DEFAULT_SNAPSHOT_CHUNK)));
        config->snapshot_chunk_size = (int)value;
    } else if (strcmp(key, "failover") == 0) {
        if (v->type != jbvBool)
            ereport(ERROR,
                    (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                     errmsg("invalid value for option \"failover\" of stream \"%s\"", config->name),
                     errdetail("Expected true or false."),
                     errhint("failover: true makes the stream's slot a failover slot, which "
                             "physical standbys with sync_replication_slots = on keep in "
                             "step.")));
        config->failover = v->val.boolean;
        if (config->failover && !WS_HAVE_FAILOVER_SLOTS)
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("option \"failover\" of stream \"%s\" needs PostgreSQL 17 or "
                                   "later; this server runs %s",
                                   config->name, PG_VERSION),
                            errhint("Failover slots came with PostgreSQL 17. Leave the option out, "
                                    "or upgrade.")));
    } else {
        add_plugin_option(config, parser, key, v);
    }
}

/*
 * The prefix of the stream's topics, by the plugin's one rule (walship_topic_prefix),
 * made explicit: the stream's plugin options always name it, so the plugin, the
 * dead-letter topic and the catalog agree on it.
 */
static void resolve_topic_prefix(StreamConfig *config, ws_options *parser)
{
    DefElem *given = NULL;
    ListCell *lc;

    foreach (lc, config->plugin_options) {
        DefElem *elem = lfirst(lc);

        if (strcmp(elem->defname, "topic-prefix") == 0)
            given = elem;
    }
    config->topic_prefix = walship_topic_prefix(given != NULL ? strVal(given->arg) : NULL,
                                                get_database_name(MyDatabaseId));
    if (given == NULL)
        set_plugin_option(config, parser, "topic_prefix", "topic-prefix", config->topic_prefix);
    else
        given->arg = (Node *)makeString(config->topic_prefix);
    if (config->dead_letter)
        config->dead_letter_topic =
            walship_kafka_topic_name(psprintf("%s.walship.dead_letter", config->topic_prefix));
}

/*
 * delivery = exactly_once: the transaction sizes (walship's defaults unless given) and
 * the offsets topic; the sizes are refused without it, where they would mean nothing.
 */
static void finish_delivery(StreamConfig *config)
{
    if (!config->exactly_once) {
        if (config->transaction_interval_ms > 0 || config->transaction_max_events > 0)
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("option \"%s\" of stream \"%s\" needs delivery exactly_once",
                                   config->transaction_interval_ms > 0 ? "transaction_interval_ms"
                                                                       : "transaction_max_events",
                                   config->name),
                            errhint("Add \"delivery\": \"exactly_once\", or leave the option out: "
                                    "at least once sends no Kafka transactions.")));
        return;
    }
    if (config->transaction_interval_ms <= 0)
        config->transaction_interval_ms = STREAM_DEFAULT_TRANSACTION_INTERVAL_MS;
    if (config->transaction_max_events <= 0)
        config->transaction_max_events = STREAM_DEFAULT_TRANSACTION_EVENTS;
    config->offsets_topic =
        walship_kafka_topic_name(psprintf("%s.walship.offsets", config->topic_prefix));
}

/*
 * The canonical form of a stream's options, what the catalog keeps: every plugin option
 * in the plugin's spelling as the text the plugin takes, topic-prefix always among them
 * (tables come from the catalog's own column), the Kafka properties as given (file forms
 * by their path), and walship's own options, on_refused and failover always.
 */
static Jsonb *canonical_options(const StreamConfig *config)
{
    StringInfoData buf;
    ListCell *lc;
    bool first = true;

    initStringInfo(&buf);
    appendStringInfoString(&buf, "{\"plugin\": {");
    foreach (lc, config->plugin_options) {
        DefElem *elem = lfirst(lc);

        if (strcmp(elem->defname, "tables") == 0)
            continue;
        if (!first)
            appendStringInfoString(&buf, ", ");
        first = false;
        escape_json(&buf, elem->defname);
        appendStringInfoString(&buf, ": ");
        escape_json(&buf, strVal(elem->arg));
    }
    appendStringInfo(&buf, "}, \"kafka\": %s",
                     config->kafka_json != NULL ? config->kafka_json : "{}");
    if (config->partitions > 0)
        appendStringInfo(&buf, ", \"partitions\": %d", config->partitions);
    if (config->replication_factor > 0)
        appendStringInfo(&buf, ", \"replication_factor\": %d", config->replication_factor);
    appendStringInfo(&buf,
                     ", \"on_refused\": \"%s\", \"failover\": %s, \"snapshot_mode\": \"%s\", "
                     "\"snapshot_chunk_size\": %d}",
                     config->dead_letter ? "dead_letter" : "stop",
                     config->failover ? "true" : "false",
                     config->snapshot_initial ? "initial" : "no_data", config->snapshot_chunk_size);
    /* before the closing brace: delivery always, the transaction sizes with exactly once */
    buf.len--;
    buf.data[buf.len] = '\0';
    appendStringInfo(&buf, ", \"delivery\": \"%s\"",
                     config->exactly_once ? "exactly_once" : "at_least_once");
    if (config->exactly_once)
        appendStringInfo(&buf, ", \"transaction_interval_ms\": %d, \"transaction_max_events\": %d",
                         config->transaction_interval_ms, config->transaction_max_events);
    appendStringInfoChar(&buf, '}');
    return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * The one function from a stream's options to what it runs with: plugin options,
 * producer properties, topic settings. checked: create_stream's input, every option
 * checked once here (plugin options by the plugin's parser; Kafka properties are the
 * sink's to check, once, with ws_sink_check_config), and the canonical form built for
 * the catalog. Not checked: the catalog's row in the worker, passed through (its plugin
 * checks the plugin options, ws_sink_create the Kafka properties); a row in the options'
 * user form (written by hand, or before there was a canonical form) reads the same way.
 */
static StreamConfig *build_config(const char *name, const char *bootstrap_servers, List *tables,
                                  Jsonb *options, bool checked)
{
    StreamConfig *config = palloc0(sizeof(StreamConfig));
    ws_error err;
    ws_options *parser = NULL;

    config->name = pstrdup(name);
    config->slot_name = stream_slot_name(name);
    config->tables = tables;
    config->partitions = -1;
    config->replication_factor = -1;
    config->snapshot_initial = true;
    config->snapshot_chunk_size = STREAM_DEFAULT_SNAPSHOT_CHUNK;
    config->transaction_interval_ms = 0; /* 0: not given */
    config->transaction_max_events = 0;

    /* also for a row written behind walship's back: librdkafka would take port 99999 mod 65536 */
    check_bootstrap_servers(name, bootstrap_servers);
    config->bootstrap_servers = pstrdup(bootstrap_servers != NULL ? bootstrap_servers : "");

    if (options != NULL && !JB_ROOT_IS_OBJECT(options))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("options of stream \"%s\" must be a JSON object", name),
                        errhint(OPTIONS_HINT)));

    /*
     * The parser is a C++ object outside palloc: free it on the error path too.
     * PG_FINALLY would run it twice on success; one PG_TRY with a catch is enough.
     */
    if (checked) {
        parser = ws_options_create(&err);
        if (parser == NULL)
            ws_ereport(ERROR, &err, NULL);
    }
    PG_TRY();
    {
        if (options != NULL)
            each_member(&options->root, add_stream_option, config, parser);
        resolve_topic_prefix(config, parser);
        finish_delivery(config);
        if (checked)
            config->options = canonical_options(config);
        /* walship's own tables never stream: the plugin itself leaves them out */
        if (tables != NIL)
            set_plugin_option(config, parser, "tables", "tables", tables_option_value(tables));
    }
    PG_CATCH();
    {
        free_parser(&parser);
        PG_RE_THROW();
    }
    PG_END_TRY();
    free_parser(&parser);
    return config;
}

StreamConfig *stream_config_build(const char *name, const char *bootstrap_servers, List *tables,
                                  Jsonb *options)
{
    return build_config(name, bootstrap_servers, tables, options, true);
}

/* ------------------------------------------------------------------------- */
/* alter_stream's options over the stored ones                               */

/*
 * walship's own options in the spelling the canonical form keeps, with the other one
 * add_stream_option takes (NULL: none). Every other key but kafka and plugin is an
 * output plugin option.
 */
static const char *const own_options[][2] = {
    {"partitions", NULL},
    {"replication_factor", "replication-factor"},
    {"on_refused", "on-refused"},
    {"failover", NULL},
    {"snapshot_mode", "snapshot-mode"},
    {"snapshot_chunk_size", "snapshot-chunk-size"},
    {"delivery", NULL},
    {"transaction_interval_ms", "transaction-interval-ms"},
    {"transaction_max_events", "transaction-max-events"},
};

static const char *own_option_name(const char *key)
{
    for (size_t i = 0; i < lengthof(own_options); i++)
        if (strcmp(key, own_options[i][0]) == 0 ||
            (own_options[i][1] != NULL && strcmp(key, own_options[i][1]) == 0))
            return own_options[i][0];
    return NULL;
}

/*
 * One option of a merge: a scalar, or a container inside the stored or the new options.
 * It keeps the spelling it was given in, which stream_config_build's errors then show;
 * a plugin option given at the top level stays there (top).
 */
typedef struct MergedOption {
    char *key; /* what identifies it: the plugin's, own_options', or librdkafka's spelling */
    char *spelling;
    bool top;
    JsonbValue value;
} MergedOption;

typedef struct MergedOptions {
    List *plugin; /* in the plugin's spelling */
    List *kafka;  /* librdkafka's property names, as given */
    List *own;    /* in own_options' first spelling */
} MergedOptions;

/* Sets key to v in options, or removes it when v is JSON null. */
static void merged_set(List **options, const char *key, const char *spelling, bool top,
                       const JsonbValue *v)
{
    ListCell *lc;

    foreach (lc, *options) {
        MergedOption *option = lfirst(lc);

        if (strcmp(option->key, key) == 0) {
            *options = foreach_delete_current(*options, lc);
            break;
        }
    }
    if (v->type != jbvNull) {
        MergedOption *option = palloc(sizeof(MergedOption));

        option->key = pstrdup(key);
        option->spelling = pstrdup(spelling);
        option->top = top;
        option->value = *v;
        *options = lappend(*options, option);
    }
}

/*
 * Two keys of one options object that are spellings of the same option (topic_prefix and
 * topic-prefix): which one counts would depend on jsonb's order of keys.
 */
static void merge_once(const char *stream_name, List **seen, const char *option, const char *key)
{
    ListCell *lc;

    foreach (lc, *seen) {
        char *const *pair = lfirst(lc);

        if (strcmp(pair[0], option) == 0)
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("option \"%s\" of stream \"%s\" is given twice, as \"%s\" and "
                                   "\"%s\"",
                                   option, stream_name, pair[1], key),
                            errhint("Give each option once.")));
    }
    {
        char **pair = palloc(sizeof(char *) * 2);

        pair[0] = pstrdup(option);
        pair[1] = pstrdup(key);
        *seen = lappend(*seen, pair);
    }
}

static void merge_plugin_option(const char *stream_name, MergedOptions *merged, List **seen,
                                const char *key, bool top, const JsonbValue *v)
{
    char *plugin_name = pstrdup(key);

    for (char *p = plugin_name; *p; p++)
        if (*p == '_')
            *p = '-';
    if (strcmp(plugin_name, "tables") == 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("option \"%s\" of stream \"%s\" is given as alter_stream's tables "
                               "argument",
                               key, stream_name),
                        errhint("Pass the stream's new tables as an array: "
                                "walship.alter_stream('%s', tables => ARRAY['public.orders']).",
                                stream_name)));
    merge_once(stream_name, seen, plugin_name, key);
    merged_set(&merged->plugin, plugin_name, key, top, v);
}

static void merge_require_object(const char *stream_name, const char *key, const JsonbValue *v)
{
    if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                 errmsg("option \"%s\" of stream \"%s\" must be a JSON object", key, stream_name),
                 errhint("Give it as an object whose members replace the stream's, a member "
                         "that is null removing one; null for the whole option removes them "
                         "all.")));
}

/* The members of one options object (stored, then the changes) into merged. */
static void merge_object(const char *stream_name, MergedOptions *merged, JsonbContainer *object)
{
    JsonbIterator *it = JsonbIteratorInit(object);
    JsonbIteratorToken tok;
    JsonbValue v;
    List *seen = NIL;

    while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE) {
        char *key;
        const char *own;

        if (tok != WJB_KEY)
            continue;
        key = pnstrdup(v.val.string.val, v.val.string.len);
        tok = JsonbIteratorNext(&it, &v, true);
        Assert(tok == WJB_VALUE);
        if (strcmp(key, "kafka") == 0 || strcmp(key, "plugin") == 0) {
            bool kafka = key[0] == 'k';
            JsonbIterator *members;
            JsonbValue member;

            if (v.type == jbvNull) {
                if (kafka)
                    merged->kafka = NIL;
                else
                    merged->plugin = NIL;
                continue;
            }
            merge_require_object(stream_name, key, &v);
            members = JsonbIteratorInit(v.val.binary.data);
            while ((tok = JsonbIteratorNext(&members, &member, true)) != WJB_DONE) {
                char *name;

                if (tok != WJB_KEY)
                    continue;
                name = pnstrdup(member.val.string.val, member.val.string.len);
                tok = JsonbIteratorNext(&members, &member, true);
                Assert(tok == WJB_VALUE);
                if (kafka)
                    merged_set(&merged->kafka, name, name, false, &member);
                else
                    merge_plugin_option(stream_name, merged, &seen, name, false, &member);
            }
        } else if ((own = own_option_name(key)) != NULL) {
            merge_once(stream_name, &seen, own, key);
            merged_set(&merged->own, own, key, true, &v);
        } else
            merge_plugin_option(stream_name, merged, &seen, key, true, &v);
    }
}

static void push_key(JsonbParseState **state, const char *key)
{
    JsonbValue k;

    k.type = jbvString;
    k.val.string.val = (char *)key;
    k.val.string.len = strlen(key);
    (void)pushJsonbValue(state, WJB_KEY, &k);
}

/* The options that are (top) or are not at the top level, each in its spelling. */
static void push_members(JsonbParseState **state, List *options, bool top)
{
    ListCell *lc;

    foreach (lc, options) {
        MergedOption *option = lfirst(lc);

        if (option->top != top)
            continue;
        push_key(state, option->spelling);
        (void)pushJsonbValue(state, WJB_VALUE, &option->value);
    }
}

Jsonb *stream_options_merge(const char *stream_name, Jsonb *stored, Jsonb *changes)
{
    MergedOptions merged = {NIL, NIL, NIL};
    JsonbParseState *state = NULL;
    JsonbValue *result;

    if (changes != NULL && !JB_ROOT_IS_OBJECT(changes))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("options of stream \"%s\" must be a JSON object", stream_name),
                        errhint(OPTIONS_HINT)));
    /* a row written by hand may hold anything: stream_config_build says what is wrong */
    if (stored != NULL && !JB_ROOT_IS_OBJECT(stored))
        return stored;
    if (stored != NULL)
        merge_object(stream_name, &merged, &stored->root);
    if (changes != NULL)
        merge_object(stream_name, &merged, &changes->root);

    (void)pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
    push_key(&state, "plugin");
    (void)pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
    push_members(&state, merged.plugin, false);
    (void)pushJsonbValue(&state, WJB_END_OBJECT, NULL);
    push_key(&state, "kafka");
    (void)pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
    push_members(&state, merged.kafka, false);
    (void)pushJsonbValue(&state, WJB_END_OBJECT, NULL);
    push_members(&state, merged.plugin, true);
    push_members(&state, merged.own, true);
    result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
    return JsonbValueToJsonb(result);
}

/* ------------------------------------------------------------------------- */
/* the catalog row                                                           */

/* The catalog row; with kafka false, its options without their Kafka properties. */
static StreamConfig *load_config(const char *name, bool kafka)
{
    MemoryContext caller = CurrentMemoryContext;
    Oid argtypes[1] = {TEXTOID};
    Datum args[1];
    int ret;
    char *bootstrap = NULL;
    List *tables = NIL;
    List *relids = NIL;
    Jsonb *options = NULL;
    bool found = false;
    StreamConfig *config;

    args[0] = CStringGetTextDatum(name);
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    ret = SPI_execute_with_args("SELECT bootstrap_servers, tables, options, "
                                "table_oids::pg_catalog.oid[] FROM walship.streams "
                                "WHERE name OPERATOR(pg_catalog.=) $1",
                                1, argtypes, args, NULL, true, 1);
    if (ret != SPI_OK_SELECT)
        elog(ERROR, "could not read stream \"%s\" from walship.streams: SPI error %d", name, ret);
    if (SPI_processed == 1) {
        HeapTuple tup = SPI_tuptable->vals[0];
        TupleDesc desc = SPI_tuptable->tupdesc;
        bool isnull;
        Datum d;
        MemoryContext spi = MemoryContextSwitchTo(caller);

        found = true;
        d = SPI_getbinval(tup, desc, 1, &isnull);
        bootstrap = isnull ? NULL : TextDatumGetCString(d);
        d = SPI_getbinval(tup, desc, 2, &isnull);
        if (!isnull) {
            Datum *elems;
            bool *nulls;
            int n;

            deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT, &elems,
                              &nulls, &n);
            for (int i = 0; i < n; i++)
                if (!nulls[i])
                    tables = lappend(tables, makeString(TextDatumGetCString(elems[i])));
        }
        d = SPI_getbinval(tup, desc, 3, &isnull);
        options = isnull ? NULL : DatumGetJsonbPCopy(d);
        d = SPI_getbinval(tup, desc, 4, &isnull);
        if (!isnull) {
            Datum *elems;
            bool *nulls;
            int n;

            deconstruct_array(DatumGetArrayTypeP(d), OIDOID, sizeof(Oid), true, TYPALIGN_INT,
                              &elems, &nulls, &n);
            for (int i = 0; i < n; i++)
                if (!nulls[i])
                    relids = lappend_oid(relids, DatumGetObjectId(elems[i]));
        }
        MemoryContextSwitchTo(spi);
    }
    SPI_finish();
    MemoryContextSwitchTo(caller);
    if (!found)
        return NULL;
    if (!kafka && options != NULL && JB_ROOT_IS_OBJECT(options))
        options = stream_options_merge(
            name, options,
            DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{\"kafka\": null}"))));
    config = build_config(name, bootstrap, tables, options, false);
    config->table_oids = relids;
    return config;
}

StreamConfig *stream_config_load(const char *name)
{
    return load_config(name, true);
}

StreamConfig *stream_config_load_without_kafka(const char *name)
{
    return load_config(name, false);
}

/* The Kafka sink's settings of a stream (pointing into config). */
/*
 * An exactly-once stream's default transactional.id, also its position's key: this
 * server (its system identifier, which its physical standbys share, so a failover keeps
 * it), the database and the stream.
 */
char *stream_transactional_id(const char *name)
{
    return psprintf("walship.%llu.%s.%s", (unsigned long long)GetSystemIdentifier(),
                    get_database_name(MyDatabaseId), name);
}

void stream_config_sink(const StreamConfig *config, ws_sink_config *sc)
{
    ListCell *lc;

    memset(sc, 0, sizeof(*sc));
    sc->bootstrap_servers = config->bootstrap_servers;
    sc->prop_names = (const char *const *)config->kafka_names;
    sc->prop_values = (const char *const *)config->kafka_values;
    sc->prop_files = (const char *const *)config->kafka_files;
    sc->nprops = config->nkafka;
    sc->topic_partitions = config->partitions;
    sc->topic_replication_factor = config->replication_factor;
    sc->dead_letter_topic = config->dead_letter_topic;
    if (config->exactly_once) {
        TimeLineID timeline;

        sc->exactly_once = true;
        sc->transactional_id = stream_transactional_id(config->name);
        sc->offsets_topic = config->offsets_topic;
        sc->transaction_interval_ms = config->transaction_interval_ms;
        sc->transaction_max_events = config->transaction_max_events;
        sc->stream_name = config->name;
        sc->database_name = get_database_name(MyDatabaseId);
        sc->system_identifier = GetSystemIdentifier();
        if (RecoveryInProgress())
            (void)GetXLogReplayRecPtr(&timeline);
        else
            timeline = GetWALInsertionTimeLine();
        sc->timeline = timeline;
    }
    /* JSON streams are Debezium's records: they carry its context headers too */
    foreach (lc, config->plugin_options) {
        DefElem *elem = lfirst(lc);

        if (strcmp(elem->defname, "format") == 0 && pg_strcasecmp(strVal(elem->arg), "json") == 0)
            sc->context_logical_name = config->topic_prefix;
    }
}
