/*
 * debezium_schema.cpp: the Kafka Connect schemas of one table version, as Debezium's
 * PostgreSQL connector declares them and JsonConverter writes them: the Value struct
 * shared by before and after, the Envelope around it, and the Key struct. Built once
 * when the table's handle is created, then copied into every event of the table.
 */
#include "core_error.hpp"
#include "debezium.hpp"
#include "json_out.hpp"

#include <stdexcept>

namespace walship
{
namespace debezium
{

namespace
{

using json::append_raw;
using json::append_string;

void append_field_schemas(std::string &out, const Table &table,
                          const std::vector<ColumnRepr> &reprs,
                          const std::vector<std::string> &defaults, bool keys_only)
{
    bool first = true;
    for (size_t i = 0; i < table.columns.size(); i++) {
        const TableColumn &column = table.columns[i];
        if (keys_only && !column.is_key)
            continue;
        if (!first)
            out += ',';
        first = false;
        append_field_schema_open(out, reprs[i], !column.not_null);
        if (!defaults[i].empty()) {
            out += ",\"default\":";
            out += defaults[i];
        }
        out += ",\"field\":";
        append_string(out, column.name);
        out += '}';
    }
}

/* The source and transaction fields every Debezium value schema carries. */
void append_source_and_transaction_fields(std::string &out, bool commit_lsn)
{
    append_raw(out, source_schema_field(commit_lsn));
    out += ',';
    append_raw(out, kTransactionBlockField);
    out += ',';
}

} // namespace

std::string_view source_schema_field(bool commit_lsn)
{
    static const std::string with_commit_lsn = [] {
        constexpr std::string_view last = "\"field\":\"xmin\"}";
        std::string out(kSourceSchemaField);
        size_t at = out.find(last);
        if (at == std::string::npos)
            throw std::logic_error("Debezium's source schema has no xmin field");
        out.insert(at + last.size(), ",{\"type\":\"int64\",\"optional\":true,"
                                     "\"field\":\"commit_lsn\"}");
        return out;
    }();
    return commit_lsn ? std::string_view(with_commit_lsn) : kSourceSchemaField;
}

const std::string &message_value_schema(bool commit_lsn)
{
    static const std::string schemas[2] = {[] {
                                               std::string out(kMessageValueSchemaHead);
                                               append_source_and_transaction_fields(out, false);
                                               append_raw(out, kMessageValueSchemaTail);
                                               return out;
                                           }(),
                                           [] {
                                               std::string out(kMessageValueSchemaHead);
                                               append_source_and_transaction_fields(out, true);
                                               append_raw(out, kMessageValueSchemaTail);
                                               return out;
                                           }()};
    return schemas[commit_lsn ? 1 : 0];
}

void SourceParts::build(std::string_view logical_name, std::string_view database,
                        std::string_view schema, std::string_view table_name)
{
    open = "{\"version\":\"" WALSHIP_VERSION "\",\"connector\":\"postgresql\",\"name\":";
    append_string(open, logical_name);
    open += ",\"ts_ms\":";
    db = ",\"db\":";
    append_string(db, database);
    db += ",\"sequence\":\"";
    table = ",\"schema\":";
    append_string(table, schema);
    table += ",\"table\":";
    append_string(table, table_name);
    table += ",\"txId\":";
}

DebeziumPlan::DebeziumPlan(const Table &table, const Options &options,
                           std::string_view logical_name, std::string_view database)
    : TablePlan(table)
{
    reprs.reserve(table.columns.size());
    defaults.reserve(table.columns.size());
    ValueWriter writer;
    for (const TableColumn &column : table.columns) {
        reprs.push_back(json_repr_for(column, options));
        defaults.push_back(column_default_json(column, reprs.back(), writer));
    }

    /* Debezium names the schemas after the topic, whose name Kafka accepts */
    std::string prefix;
    if (!table.topic.empty()) {
        prefix = table.topic;
    } else {
        prefix = logical_name;
        prefix += '.';
        prefix += table.schema;
        prefix += '.';
        prefix += table.table;
    }

    /* the Value struct, shared by before and after */
    std::string value;
    value += "{\"type\":\"struct\",\"fields\":[";
    append_field_schemas(value, table, reprs, defaults, false);
    value += "],\"optional\":true,\"name\":";
    append_string(value, prefix + ".Value");

    envelope += "{\"type\":\"struct\",\"fields\":[";
    envelope += value;
    envelope += ",\"field\":\"before\"},";
    envelope += value;
    envelope += ",\"field\":\"after\"},";
    append_source_and_transaction_fields(envelope, options.source_commit_lsn);
    append_raw(envelope, kEnvelopeTrailingFields);
    envelope += "],\"optional\":false,\"name\":";
    append_string(envelope, prefix + ".Envelope");
    envelope += ",\"version\":2}";

    if (table.has_key) {
        key += "{\"type\":\"struct\",\"fields\":[";
        append_field_schemas(key, table, reprs, defaults, true);
        key += "],\"optional\":false,\"name\":";
        append_string(key, prefix + ".Key");
        key += '}';
    }

    if (options.json_schema) {
        value_open = "{\"schema\":" + envelope + ",\"payload\":";
        key_open = "{\"schema\":" + key + ",\"payload\":";
    }
    value_open += "{\"before\":";
    field_keys.reserve(table.columns.size());
    for (const TableColumn &column : table.columns) {
        std::string field;
        append_string(field, column.name);
        field += ':';
        field_keys.push_back(std::move(field));
    }
    source.build(logical_name, database, table.schema, table.table);
}

} // namespace debezium
} // namespace walship
