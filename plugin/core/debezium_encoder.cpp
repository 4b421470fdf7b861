/*
 * debezium_encoder.cpp: ws_change to the Debezium PostgreSQL connector's JSON
 * (format=json), as Kafka Connect's JsonConverter writes it.
 *
 * Row changes become Debezium's envelope ({"schema":...,"payload":{"before",
 * "after","source","transaction","op","ts_ms","ts_us","ts_ns"}}), logical messages
 * the connector's MessageValue, BEGIN/COMMIT its transaction metadata events, keys
 * its <name>.<schema>.<table>.Key structs. With json-schema=false only the payload
 * is written (JsonConverter's schemas.enable=false). Field order is the schema's
 * field order, as JsonConverter writes Structs.
 *
 * The schema part of a row event is the same for every row of a table, so it is
 * built once per table and cached by relation OID; the cache entry remembers the
 * columns (name, type, typmod, NOT NULL, key) and the names it was built for, and is
 * rebuilt when they change (ALTER TABLE, RENAME) without any invalidation callback.
 */
#include "core_error.hpp"
#include "encoder.hpp"
#include "json_out.hpp"
#include "pg_values.hpp"
#include "type_map.hpp"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <vector>

#ifndef WALSHIP_VERSION
#define WALSHIP_VERSION "0.0.0"
#endif

namespace walship
{

namespace
{

using json::append_int;
using json::append_raw;
using json::append_string;
using json::append_uint;

/*
 * Debezium writes PostgreSQL's timestamp 'infinity' / '-infinity' as the PostgreSQL
 * JDBC driver's sentinels (PGStatement.DATE_POSITIVE_INFINITY and
 * DATE_NEGATIVE_INFINITY) read as microseconds; consumers written for Debezium
 * compare against exactly these numbers.
 */
constexpr int64_t kDebeziumInfinityMicros = 9223372036825200000LL;
constexpr int64_t kDebeziumNegInfinityMicros = -9223372036832400000LL;

/* Debezium's unavailable.value.placeholder default, for unchanged TOAST values. */
constexpr std::string_view kUnavailableValue = "__debezium_unavailable_value";

constexpr std::string_view kSourceSchemaField =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":false,\"field\":\"version\"},"
    "{\"type\":\"string\",\"optional\":false,\"field\":\"connector\"},"
    "{\"type\":\"string\",\"optional\":false,\"field\":\"name\"},"
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"ts_ms\"},"
    "{\"type\":\"string\",\"optional\":true,\"name\":\"io.debezium.data.Enum\",\"version\":1,"
    "\"parameters\":{\"allowed\":\"true,first,first_in_data_collection,last_in_data_collection,"
    "last,false,incremental\"},\"default\":\"false\",\"field\":\"snapshot\"},"
    "{\"type\":\"string\",\"optional\":false,\"field\":\"db\"},"
    "{\"type\":\"string\",\"optional\":true,\"field\":\"sequence\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_us\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ns\"},"
    "{\"type\":\"string\",\"optional\":false,\"field\":\"schema\"},"
    "{\"type\":\"string\",\"optional\":false,\"field\":\"table\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"txId\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"lsn\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"xmin\"},"
    "{\"type\":\"string\",\"optional\":true,\"field\":\"origin\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.Source\",\"version\":1,"
    "\"field\":\"source\"}";

constexpr std::string_view kTransactionBlockField =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":false,\"field\":\"id\"},"
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"total_order\"},"
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"data_collection_order\"}"
    "],\"optional\":true,\"name\":\"event.block\",\"version\":1,\"field\":\"transaction\"}";

constexpr std::string_view kEnvelopeTrailingFields =
    "{\"type\":\"string\",\"optional\":false,\"field\":\"op\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ms\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_us\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ns\"}";

constexpr std::string_view kMessageValueSchemaHead =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":false,\"field\":\"op\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ms\"},";
constexpr std::string_view kMessageValueSchemaTail =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":true,\"field\":\"prefix\"},"
    "{\"type\":\"bytes\",\"optional\":true,\"field\":\"content\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.Message\",\"version\":1,"
    "\"field\":\"message\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.MessageValue\","
    "\"version\":1}";

constexpr std::string_view kMessageKeySchema =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":true,\"field\":\"prefix\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.MessageKey\","
    "\"version\":1}";

constexpr std::string_view kTransactionValueSchema =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":false,\"field\":\"status\"},"
    "{\"type\":\"string\",\"optional\":false,\"field\":\"id\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"event_count\"},"
    "{\"type\":\"array\",\"items\":{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":false,\"field\":\"data_collection\"},"
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"event_count\"}"
    "],\"optional\":true,\"name\":\"event.collection\",\"version\":1},"
    "\"optional\":true,\"field\":\"data_collections\"},"
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"ts_ms\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.common.TransactionMetadataValue\","
    "\"version\":1}";

constexpr std::string_view kTransactionKeySchema =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":false,\"field\":\"id\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.common.TransactionMetadataKey\","
    "\"version\":1}";

const char *or_empty(const char *s)
{
    return s != nullptr ? s : "";
}

std::string_view text_of(const ws_value &value)
{
    return value.data != nullptr ? std::string_view(value.data, value.len) : std::string_view();
}

bool is_text_kind(ws_value_kind kind)
{
    return kind == WS_VALUE_TEXT || kind == WS_VALUE_OTHER || kind == WS_VALUE_NUMERIC ||
           kind == WS_VALUE_JSON;
}

/* What Debezium writes for a NULL in a NOT NULL column (see write_value). */
void append_not_null_fallback(std::string &out, const ColumnRepr &repr)
{
    if (repr.is_array) {
        out += "[]";
        return;
    }
    switch (repr.repr) {
    case JsonRepr::Int16:
    case JsonRepr::Int32:
    case JsonRepr::Int64:
    case JsonRepr::Date:
    case JsonRepr::TimeMillis:
    case JsonRepr::TimeMicros:
    case JsonRepr::TimestampMillis:
    case JsonRepr::TimestampMicros:
    case JsonRepr::IntervalMicros:
        out += '0';
        break;
    case JsonRepr::Float32:
    case JsonRepr::Float64:
    case JsonRepr::NumericDouble:
        out += "0.0";
        break;
    case JsonRepr::Boolean:
        out += "false";
        break;
    case JsonRepr::String:
    case JsonRepr::Uuid:
    case JsonRepr::Json:
    case JsonRepr::Xml:
    case JsonRepr::NumericString:
    case JsonRepr::Bytes:
        out += "\"\"";
        break;
    case JsonRepr::ZonedTime:
        out += "\"00:00:00Z\"";
        break;
    case JsonRepr::ZonedTimestamp:
        out += "\"1970-01-01T00:00:00Z\"";
        break;
    case JsonRepr::IntervalString:
        out += "\"P0Y0M0DT0H0M0S\"";
        break;
    case JsonRepr::NumericDecimal:
        out += "\"AA==\"";
        break;
    case JsonRepr::NumericVariable:
        out += "{\"scale\":0,\"value\":\"AA==\"}";
        break;
    }
}

/* Debezium's placeholder for an unchanged TOAST value, in the column's shape. */
void append_unavailable(std::string &out, const ColumnRepr &repr)
{
    switch (repr.repr) {
    case JsonRepr::String:
    case JsonRepr::Uuid:
    case JsonRepr::Json:
    case JsonRepr::Xml:
    case JsonRepr::NumericString:
        if (repr.is_array)
            out += '[';
        append_string(out, kUnavailableValue);
        if (repr.is_array)
            out += ']';
        return;
    case JsonRepr::Bytes:
    case JsonRepr::NumericDecimal:
        if (repr.is_array)
            out += '[';
        json::append_base64(out, kUnavailableValue.data(), kUnavailableValue.size());
        if (repr.is_array)
            out += ']';
        return;
    case JsonRepr::Int16:
    case JsonRepr::Int32:
    case JsonRepr::Int64:
        if (repr.is_array) { /* Debezium's placeholder bytes as numbers */
            out += '[';
            for (size_t i = 0; i < kUnavailableValue.size(); i++) {
                if (i > 0)
                    out += ',';
                append_int(out, static_cast<unsigned char>(kUnavailableValue[i]));
            }
            out += ']';
            return;
        }
        break;
    default:
        break;
    }
    out += "null"; /* types that cannot be TOAST-ed */
}

int64_t now_nanos()
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/* Millis, micros and nanos of a microsecond timestamp, as "ts_ms":..,"ts_us":..,"ts_ns":.. */
void append_timestamps(std::string &out, int64_t nanos)
{
    out += "\"ts_ms\":";
    append_int(out, pgval::floor_div(nanos, 1000000));
    out += ",\"ts_us\":";
    append_int(out, pgval::floor_div(nanos, 1000));
    out += ",\"ts_ns\":";
    append_int(out, nanos);
}

void append_transaction_id(std::string &out, const ws_source &source)
{
    char buf[48];
    char *p = std::to_chars(buf, buf + 20, source.xid).ptr;
    *p++ = ':';
    p = std::to_chars(p, buf + sizeof(buf), source.commit_lsn).ptr;
    append_string(out, buf, static_cast<size_t>(p - buf));
}

/* A column as the schema cache remembers it. */
struct ColumnSignature {
    std::string name;
    uint32_t type_oid;
    int32_t typmod;
    uint32_t elem_type_oid;
    bool not_null;
    bool is_key;

    bool matches(const ws_column &column) const
    {
        return type_oid == column.type_oid && typmod == column.typmod &&
               elem_type_oid == column.elem_type_oid && not_null == column.not_null &&
               is_key == column.is_key && name == column.name;
    }
};

/* The cached schema JSON of one table. */
struct TableSchemas {
    std::string name; /* logical server name: topic-prefix or database */
    std::string schema;
    std::string table;
    std::vector<ColumnSignature> columns;
    std::string envelope; /* the value schema of row events */
    std::string key;      /* the key schema; empty when the table has no key columns */

    bool matches(std::string_view name_, std::string_view schema_, std::string_view table_,
                 const ws_row *row) const
    {
        int n = row != nullptr ? row->ncolumns : 0;
        if (static_cast<size_t>(n) != columns.size() || name != name_ || schema != schema_ ||
            table != table_)
            return false;
        for (int i = 0; i < n; i++)
            if (!columns[static_cast<size_t>(i)].matches(row->columns[i]))
                return false;
        return true;
    }

    /* Every column of row is one of ours, in our order: an old row that carries
     * only the replica identity columns. */
    bool covers(std::string_view name_, std::string_view schema_, std::string_view table_,
                const ws_row *row) const
    {
        if (name != name_ || schema != schema_ || table != table_)
            return false;
        size_t next = 0;
        int n = row != nullptr ? row->ncolumns : 0;
        for (int i = 0; i < n; i++) {
            while (next < columns.size() && !columns[next].matches(row->columns[i]))
                next++;
            if (next == columns.size())
                return false;
            next++;
        }
        return true;
    }
};

class DebeziumEncoder final : public Encoder
{
  public:
    explicit DebeziumEncoder(const Options &options)
        : options_(options), framed_(options.framing == Framing::Varint)
    {
    }

    std::string_view encode_event(const ws_change &change) override
    {
        validate_change(change);
        std::string &out = event_buffer_.begin();
        switch (change.op) {
        case WS_OP_BEGIN:
        case WS_OP_COMMIT:
            write_transaction_event(out, change);
            break;
        case WS_OP_MESSAGE:
            write_message_event(out, change);
            break;
        default:
            write_row_event(out, change);
            break;
        }
        return event_buffer_.finish(framed_);
    }

    std::string_view encode_key(const ws_change &change) override
    {
        validate_change(change);
        std::string &out = key_buffer_.begin();
        switch (change.op) {
        case WS_OP_BEGIN:
        case WS_OP_COMMIT:
            open_with_schema(out, kTransactionKeySchema);
            out += "{\"id\":";
            append_transaction_id(out, change.source);
            out += '}';
            break;
        case WS_OP_MESSAGE:
            open_with_schema(out, kMessageKeySchema);
            out += "{\"prefix\":";
            append_string(out, or_empty(change.message_prefix));
            out += '}';
            break;
        case WS_OP_TRUNCATE:
            return std::string_view();
        default: {
            const ws_row *row = key_row(change);
            if (row == nullptr)
                return std::string_view();
            bool any_key = false;
            for (int i = 0; i < row->ncolumns && !any_key; i++)
                any_key = row->columns[i].is_key;
            if (!any_key)
                return std::string_view();
            const TableSchemas &schemas = table_schemas(change, schema_row(change));
            if (schemas.key.empty())
                return std::string_view();
            open_with_schema(out, schemas.key);
            write_row(out, row, true);
        }
        }
        close_with_schema(out);
        return key_buffer_.finish(false);
    }

  private:
    /* {"schema":<schema>,"payload": when schemas are on; nothing otherwise */
    void open_with_schema(std::string &out, std::string_view schema) const
    {
        if (!options_.json_schema)
            return;
        out += "{\"schema\":";
        append_raw(out, schema);
        out += ",\"payload\":";
    }

    void close_with_schema(std::string &out) const
    {
        if (options_.json_schema)
            out += '}';
    }

    std::string_view logical_name(const ws_change &change) const
    {
        if (!options_.topic_prefix.empty())
            return options_.topic_prefix;
        return or_empty(change.source.database);
    }

    /* The row that describes the table's columns: the new row, else the old one. */
    static const ws_row *schema_row(const ws_change &change)
    {
        return change.after != nullptr ? change.after : change.before;
    }

    /*
     * The schemas of the change's table, described by row. A change without a new
     * row (DELETE, TRUNCATE) may only know some columns: the replica identity of
     * the old row, or none. Such a change reuses the table's cached schemas when
     * they cover its columns, so that a table keeps one schema as Debezium's does.
     */
    const TableSchemas &table_schemas(const ws_change &change, const ws_row *row)
    {
        std::string_view name = logical_name(change);
        std::string_view schema = or_empty(change.source.schema);
        std::string_view table = or_empty(change.source.table);
        uint32_t oid = change.source.relation_oid;
        bool partial = change.after == nullptr;
        if (oid != 0) {
            auto found = cache_.find(oid);
            if (found != cache_.end() &&
                (found->second.matches(name, schema, table, row) ||
                 (partial && found->second.covers(name, schema, table, row))))
                return found->second;
        }
        /* a TRUNCATE knows no columns: never let it replace a table's real schemas */
        bool cacheable = oid != 0 && row != nullptr;
        TableSchemas &entry = cacheable ? cache_[oid] : uncached_;
        build_table_schemas(entry, name, schema, table, row);
        return entry;
    }

    void build_table_schemas(TableSchemas &entry, std::string_view name, std::string_view schema,
                             std::string_view table, const ws_row *row)
    {
        entry.name.assign(name);
        entry.schema.assign(schema);
        entry.table.assign(table);
        entry.columns.clear();
        int n = row != nullptr ? row->ncolumns : 0;
        for (int i = 0; i < n; i++) {
            const ws_column &c = row->columns[i];
            entry.columns.push_back(ColumnSignature{c.name, c.type_oid, c.typmod, c.elem_type_oid,
                                                    c.not_null, c.is_key});
        }

        std::string prefix(name);
        prefix += '.';
        prefix += schema;
        prefix += '.';
        prefix += table;

        /* the Value struct, shared by before and after */
        std::string value;
        value += "{\"type\":\"struct\",\"fields\":[";
        append_field_schemas(value, row, false);
        value += "],\"optional\":true,\"name\":";
        append_string(value, prefix + ".Value");

        std::string &envelope = entry.envelope;
        envelope.clear();
        envelope += "{\"type\":\"struct\",\"fields\":[";
        envelope += value;
        envelope += ",\"field\":\"before\"},";
        envelope += value;
        envelope += ",\"field\":\"after\"},";
        append_raw(envelope, kSourceSchemaField);
        envelope += ',';
        append_raw(envelope, kTransactionBlockField);
        envelope += ',';
        append_raw(envelope, kEnvelopeTrailingFields);
        envelope += "],\"optional\":false,\"name\":";
        append_string(envelope, prefix + ".Envelope");
        envelope += ",\"version\":2}";

        entry.key.clear();
        bool any_key = false;
        for (int i = 0; i < n && !any_key; i++)
            any_key = row->columns[i].is_key;
        if (any_key) {
            entry.key += "{\"type\":\"struct\",\"fields\":[";
            append_field_schemas(entry.key, row, true);
            entry.key += "],\"optional\":false,\"name\":";
            append_string(entry.key, prefix + ".Key");
            entry.key += '}';
        }
    }

    void append_field_schemas(std::string &out, const ws_row *row, bool keys_only) const
    {
        bool first = true;
        int n = row != nullptr ? row->ncolumns : 0;
        for (int i = 0; i < n; i++) {
            const ws_column &column = row->columns[i];
            if (keys_only && !column.is_key)
                continue;
            if (!first)
                out += ',';
            first = false;
            append_field_schema_open(out, json_repr_for(column, options_), !column.not_null);
            out += ",\"field\":";
            append_string(out, column.name);
            out += '}';
        }
    }

    void write_row_event(std::string &out, const ws_change &change)
    {
        const ws_row *row = schema_row(change);
        const TableSchemas &schemas = table_schemas(change, row);
        open_with_schema(out, schemas.envelope);

        bool with_before = options_.include_before && change.before != nullptr &&
                           (change.op == WS_OP_UPDATE || change.op == WS_OP_DELETE);
        bool with_after =
            change.after != nullptr && change.op != WS_OP_DELETE && change.op != WS_OP_TRUNCATE;
        out += "{\"before\":";
        if (with_before)
            write_row_as(out, change.before, schemas);
        else
            out += "null";
        out += ",\"after\":";
        if (with_after)
            write_row(out, change.after, false);
        else
            out += "null";
        out += ",\"source\":";
        write_source(out, change, change.source.commit_time_us);
        out += ",\"transaction\":null,\"op\":\"";
        switch (change.op) {
        case WS_OP_INSERT:
            out += 'c';
            break;
        case WS_OP_UPDATE:
            out += 'u';
            break;
        case WS_OP_DELETE:
            out += 'd';
            break;
        case WS_OP_TRUNCATE:
            out += 't';
            break;
        default: /* READ */
            out += 'r';
            break;
        }
        out += "\",";
        append_timestamps(out, now_nanos());
        out += '}';
        close_with_schema(out);
    }

    void write_message_event(std::string &out, const ws_change &change)
    {
        if (options_.json_schema) {
            out += "{\"schema\":";
            append_raw(out, kMessageValueSchemaHead);
            append_raw(out, kSourceSchemaField);
            out += ',';
            append_raw(out, kTransactionBlockField);
            out += ',';
            append_raw(out, kMessageValueSchemaTail);
            out += ",\"payload\":";
        }
        int64_t now = now_nanos();
        out += "{\"op\":\"m\",\"ts_ms\":";
        append_int(out, pgval::floor_div(now, 1000000));
        out += ",\"source\":";
        /* a non-transactional message has no commit: Debezium uses the time it saw it */
        int64_t time_us = change.source.commit_time_us != 0 ? change.source.commit_time_us
                                                            : pgval::floor_div(now, 1000);
        write_source(out, change, time_us);
        out += ",\"transaction\":null,\"message\":{\"prefix\":";
        append_string(out, or_empty(change.message_prefix));
        out += ",\"content\":";
        json::append_base64(out, change.message_content, change.message_len);
        out += "}}";
        close_with_schema(out);
    }

    void write_transaction_event(std::string &out, const ws_change &change)
    {
        open_with_schema(out, kTransactionValueSchema);
        out += "{\"status\":";
        out += change.op == WS_OP_BEGIN ? "\"BEGIN\"" : "\"END\"";
        out += ",\"id\":";
        append_transaction_id(out, change.source);
        out += ",\"event_count\":";
        if (change.op == WS_OP_COMMIT)
            append_uint(out, change.event_count);
        else
            out += "null";
        out += ",\"data_collections\":null,\"ts_ms\":";
        append_int(out, pgval::floor_div(change.source.commit_time_us, 1000));
        out += '}';
        close_with_schema(out);
    }

    void write_source(std::string &out, const ws_change &change, int64_t time_us) const
    {
        const ws_source &source = change.source;
        out += "{\"version\":\"" WALSHIP_VERSION "\",\"connector\":\"postgresql\",\"name\":";
        append_string(out, logical_name(change));
        out += ",\"ts_ms\":";
        append_int(out, pgval::floor_div(time_us, 1000));
        out += change.op == WS_OP_READ ? ",\"snapshot\":\"true\"" : ",\"snapshot\":\"false\"";
        out += ",\"db\":";
        append_string(out, or_empty(source.database));
        /* Debezium's [last commit LSN, this LSN]; walship does not track the former */
        out += ",\"sequence\":\"[null,\\\"";
        append_uint(out, source.change_lsn);
        out += "\\\"]\",\"ts_us\":";
        append_int(out, time_us);
        out += ",\"ts_ns\":";
        append_int(out, time_us * 1000);
        out += ",\"schema\":";
        append_string(out, or_empty(source.schema));
        out += ",\"table\":";
        append_string(out, or_empty(source.table));
        out += ",\"txId\":";
        if (source.xid != 0)
            append_uint(out, source.xid);
        else
            out += "null";
        out += ",\"lsn\":";
        append_uint(out, source.change_lsn);
        out += ",\"xmin\":null,\"origin\":";
        if (source.origin != nullptr)
            append_string(out, source.origin);
        else
            out += "null";
        out += '}';
    }

    /*
     * An old row written with every field of the table's schema. PostgreSQL logs
     * only the replica identity columns of an old row (unless REPLICA IDENTITY
     * FULL); the others are written as NULL, which write_value turns into
     * Debezium's zero value where the column is NOT NULL.
     */
    void write_row_as(std::string &out, const ws_row *row, const TableSchemas &schemas)
    {
        if (static_cast<size_t>(row->ncolumns) == schemas.columns.size()) {
            write_row(out, row, false);
            return;
        }
        out += '{';
        int next = 0;
        for (size_t k = 0; k < schemas.columns.size(); k++) {
            const ColumnSignature &field = schemas.columns[k];
            if (k > 0)
                out += ',';
            append_string(out, field.name);
            out += ':';
            if (next < row->ncolumns && field.matches(row->columns[next])) {
                write_value(out, row->columns[next]);
                next++;
                continue;
            }
            ws_column absent{};
            absent.name = field.name.c_str();
            absent.type_oid = field.type_oid;
            absent.typmod = field.typmod;
            absent.elem_type_oid = field.elem_type_oid;
            absent.not_null = field.not_null;
            absent.is_key = field.is_key;
            absent.value.kind = WS_VALUE_NULL;
            write_value(out, absent);
        }
        out += '}';
    }

    void write_row(std::string &out, const ws_row *row, bool keys_only)
    {
        out += '{';
        bool first = true;
        for (int i = 0; i < row->ncolumns; i++) {
            const ws_column &column = row->columns[i];
            if (keys_only && !column.is_key)
                continue;
            if (!first)
                out += ',';
            first = false;
            append_string(out, column.name);
            out += ':';
            write_value(out, column);
        }
        out += '}';
    }

    void write_value(std::string &out, const ws_column &column)
    {
        ColumnRepr repr = json_repr_for(column, options_);
        const ws_value &value = column.value;
        if (value.kind == WS_VALUE_NULL) {
            /*
             * In an old row PostgreSQL logs only the replica identity; the other
             * columns arrive as NULL even when declared NOT NULL. JsonConverter
             * rejects null in a required field, so Debezium writes the type's zero
             * value there; so does walship.
             */
            if (column.not_null)
                append_not_null_fallback(out, repr);
            else
                out += "null";
            return;
        }
        if (value.kind == WS_VALUE_UNCHANGED_TOAST) {
            append_unavailable(out, repr);
            return;
        }
        if (repr.is_array)
            write_array(out, repr, value);
        else
            write_scalar(out, repr, value);
    }

    void write_scalar(std::string &out, const ColumnRepr &repr, const ws_value &value)
    {
        switch (repr.repr) {
        case JsonRepr::Int16:
        case JsonRepr::Int32:
        case JsonRepr::Int64:
            if (value.kind == WS_VALUE_INT64)
                return append_int(out, value.v.i64);
            break;
        case JsonRepr::Float32:
            if (value.kind == WS_VALUE_DOUBLE)
                return json::append_float(out, static_cast<float>(value.v.f64));
            break;
        case JsonRepr::Float64:
            if (value.kind == WS_VALUE_DOUBLE)
                return json::append_double(out, value.v.f64);
            break;
        case JsonRepr::Boolean:
            if (value.kind == WS_VALUE_BOOL) {
                out += value.v.b ? "true" : "false";
                return;
            }
            break;
        case JsonRepr::Bytes:
            if (value.kind == WS_VALUE_BYTES)
                return json::append_base64(out, value.data, value.len);
            break;
        case JsonRepr::Uuid:
            if (value.kind == WS_VALUE_UUID)
                return append_uuid(out, value.v.uuid);
            break;
        case JsonRepr::Date:
            if (value.kind == WS_VALUE_DATE)
                return append_int(out, value.v.i32);
            break;
        case JsonRepr::TimeMillis:
            if (value.kind == WS_VALUE_TIME)
                return append_int(out, pgval::floor_div(value.v.i64, 1000));
            break;
        case JsonRepr::TimeMicros:
            if (value.kind == WS_VALUE_TIME)
                return append_int(out, value.v.i64);
            break;
        case JsonRepr::ZonedTime:
            if (value.kind == WS_VALUE_TIMETZ) {
                out += '"';
                pgval::append_zoned_time(out, value.v.timetz.time_us, value.v.timetz.zone_s);
                out += '"';
                return;
            }
            break;
        case JsonRepr::TimestampMillis:
        case JsonRepr::TimestampMicros:
            if (value.kind == WS_VALUE_TIMESTAMP) {
                int64_t us = value.v.i64;
                if (us == WS_TIMESTAMP_POS_INFINITY)
                    us = kDebeziumInfinityMicros;
                else if (us == WS_TIMESTAMP_NEG_INFINITY)
                    us = kDebeziumNegInfinityMicros;
                return append_int(
                    out, repr.repr == JsonRepr::TimestampMillis ? pgval::floor_div(us, 1000) : us);
            }
            break;
        case JsonRepr::ZonedTimestamp:
            if (value.kind == WS_VALUE_TIMESTAMP) {
                if (value.v.i64 == WS_TIMESTAMP_POS_INFINITY) {
                    out += "\"infinity\"";
                } else if (value.v.i64 == WS_TIMESTAMP_NEG_INFINITY) {
                    out += "\"-infinity\"";
                } else {
                    out += '"';
                    pgval::append_zoned_timestamp(out, value.v.i64, repr.fraction_digits);
                    out += '"';
                }
                return;
            }
            break;
        case JsonRepr::IntervalMicros:
            if (value.kind == WS_VALUE_INTERVAL)
                return append_int(out, pgval::interval_micro_duration(value.v.interval.months,
                                                                      value.v.interval.days,
                                                                      value.v.interval.time_us));
            break;
        case JsonRepr::IntervalString:
            if (value.kind == WS_VALUE_INTERVAL) {
                out += '"';
                pgval::append_iso_interval(out, value.v.interval.months, value.v.interval.days,
                                           value.v.interval.time_us);
                out += '"';
                return;
            }
            break;
        case JsonRepr::NumericString:
        case JsonRepr::NumericDouble:
        case JsonRepr::NumericDecimal:
        case JsonRepr::NumericVariable:
            if (is_text_kind(value.kind) && value.data != nullptr)
                return write_numeric(out, repr, text_of(value));
            break;
        case JsonRepr::String:
        case JsonRepr::Json:
        case JsonRepr::Xml:
            break;
        }
        write_as_string(out, value);
    }

    /*
     * The value as a JSON string: its text when the shim gave one, else its native
     * value in text form. This is the path of every type the map writes as a string
     * and the safety net when a value's kind does not fit its column's type.
     */
    void write_as_string(std::string &out, const ws_value &value)
    {
        if (value.data != nullptr || is_text_kind(value.kind) || value.kind == WS_VALUE_BYTES) {
            append_string(out, text_of(value));
            return;
        }
        std::string &text = scratch_;
        text.clear();
        switch (value.kind) {
        case WS_VALUE_INT64:
            append_int(text, value.v.i64);
            break;
        case WS_VALUE_DOUBLE:
            json::append_double(text, value.v.f64);
            if (text.front() == '"') /* NaN and infinities come quoted */
                text = text.substr(1, text.size() - 2);
            break;
        case WS_VALUE_BOOL:
            text = value.v.b ? "true" : "false";
            break;
        case WS_VALUE_DATE:
            if (value.v.i32 == WS_DATE_POS_INFINITY)
                text = "infinity";
            else if (value.v.i32 == WS_DATE_NEG_INFINITY)
                text = "-infinity";
            else
                pgval::append_iso_date(text, value.v.i32);
            break;
        case WS_VALUE_TIMESTAMP:
            if (value.v.i64 == WS_TIMESTAMP_POS_INFINITY)
                text = "infinity";
            else if (value.v.i64 == WS_TIMESTAMP_NEG_INFINITY)
                text = "-infinity";
            else
                pgval::append_zoned_timestamp(text, value.v.i64, -1);
            break;
        case WS_VALUE_UUID:
            append_uuid(out, value.v.uuid);
            return;
        case WS_VALUE_TIME:
            pgval::append_time_of_day(text, value.v.i64, -1);
            break;
        case WS_VALUE_TIMETZ:
            pgval::append_zoned_time(text, value.v.timetz.time_us, value.v.timetz.zone_s);
            break;
        case WS_VALUE_INTERVAL:
            pgval::append_iso_interval(text, value.v.interval.months, value.v.interval.days,
                                       value.v.interval.time_us);
            break;
        default:
            break;
        }
        append_string(out, text);
    }

    static void append_uuid(std::string &out, const unsigned char *uuid)
    {
        static constexpr char kHex[] = "0123456789abcdef";
        char text[38];
        size_t n = 0;
        text[n++] = '"';
        for (int i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                text[n++] = '-';
            text[n++] = kHex[uuid[i] >> 4];
            text[n++] = kHex[uuid[i] & 0xF];
        }
        text[n++] = '"';
        out.append(text, n);
    }

    void write_numeric(std::string &out, const ColumnRepr &repr, std::string_view text)
    {
        pgval::SpecialNumeric special = pgval::special_numeric(text);
        switch (repr.repr) {
        case JsonRepr::NumericString:
            /* Debezium writes its SpecialValueDecimal names for the special values */
            switch (special) {
            case pgval::SpecialNumeric::NaN:
                out += "\"NAN\"";
                return;
            case pgval::SpecialNumeric::PosInfinity:
                out += "\"POSITIVE_INFINITY\"";
                return;
            case pgval::SpecialNumeric::NegInfinity:
                out += "\"NEGATIVE_INFINITY\"";
                return;
            case pgval::SpecialNumeric::None:
                append_string(out, text);
                return;
            }
            return;
        case JsonRepr::NumericDouble: {
            double d = 0;
            auto res = std::from_chars(text.data(), text.data() + text.size(), d);
            if (res.ec == std::errc() && res.ptr == text.data() + text.size()) {
                json::append_double(out, d);
            } else if (res.ec == std::errc::result_out_of_range) {
                json::append_double(out, text[0] == '-' ? -HUGE_VAL : HUGE_VAL);
            } else {
                append_string(out, text);
            }
            return;
        }
        default:
            break;
        }
        /* precise: Debezium cannot represent NaN or infinities in a Decimal */
        if (special != pgval::SpecialNumeric::None || !pgval::parse_decimal(text, decimal_)) {
            out += "null";
            return;
        }
        if (repr.repr == JsonRepr::NumericDecimal) {
            pgval::rescale_decimal(decimal_, repr.scale);
            pgval::unscaled_twos_complement(decimal_, scratch_);
            json::append_base64(out, scratch_.data(), scratch_.size());
            return;
        }
        pgval::strip_trailing_zeros(decimal_);
        pgval::unscaled_twos_complement(decimal_, scratch_);
        out += "{\"scale\":";
        append_int(out, decimal_.scale);
        out += ",\"value\":";
        json::append_base64(out, scratch_.data(), scratch_.size());
        out += '}';
    }

    void write_array(std::string &out, const ColumnRepr &repr, const ws_value &value)
    {
        release_if_large(element_storage_);
        release_if_large(bytes_);
        std::string_view text = text_of(value);
        if (value.data == nullptr ||
            !pgval::parse_array_text(text, repr.array_delimiter, elements_, element_storage_)) {
            /* multi-dimensional arrays (and anything unparsable) stay text */
            append_string(out, text);
            return;
        }
        out += '[';
        for (size_t i = 0; i < elements_.size(); i++) {
            if (i > 0)
                out += ',';
            const pgval::ArrayElement &element = elements_[i];
            if (element.is_null) {
                out += "null";
                continue;
            }
            write_array_element(
                out, repr, std::string_view(element_storage_.data() + element.offset, element.len));
        }
        out += ']';
    }

    void write_array_element(std::string &out, const ColumnRepr &repr, std::string_view text)
    {
        const char *first = text.data();
        const char *last = text.data() + text.size();
        switch (repr.repr) {
        case JsonRepr::Int16:
        case JsonRepr::Int32:
        case JsonRepr::Int64: {
            int64_t v = 0;
            auto res = std::from_chars(first, last, v);
            if (res.ec == std::errc() && res.ptr == last)
                return append_int(out, v);
            break;
        }
        case JsonRepr::Float32: {
            float v = 0;
            auto res = std::from_chars(first, last, v);
            if (res.ec == std::errc() && res.ptr == last)
                return json::append_float(out, v);
            break;
        }
        case JsonRepr::Float64: {
            double v = 0;
            auto res = std::from_chars(first, last, v);
            if (res.ec == std::errc() && res.ptr == last)
                return json::append_double(out, v);
            break;
        }
        case JsonRepr::Boolean:
            if (text == "t" || text == "true") {
                out += "true";
                return;
            }
            if (text == "f" || text == "false") {
                out += "false";
                return;
            }
            break;
        case JsonRepr::Bytes:
            if (pgval::decode_bytea_hex(text, bytes_)) {
                json::append_base64(out, bytes_.data(), bytes_.size());
                return;
            }
            break;
        case JsonRepr::NumericString:
        case JsonRepr::NumericDouble:
        case JsonRepr::NumericDecimal:
        case JsonRepr::NumericVariable:
            return write_numeric(out, repr, text);
        default:
            break;
        }
        append_string(out, text);
    }

    Options options_;
    bool framed_;
    EventBuffer event_buffer_;
    EventBuffer key_buffer_;
    std::unordered_map<uint32_t, TableSchemas> cache_;
    TableSchemas uncached_;
    /* scratch space reused by value writers */
    std::string scratch_;
    std::string bytes_;
    pgval::Decimal decimal_;
    std::vector<pgval::ArrayElement> elements_;
    std::string element_storage_;
};

} // namespace

std::unique_ptr<Encoder> make_debezium_encoder(const Options &options)
{
    return std::make_unique<DebeziumEncoder>(options);
}

} // namespace walship
