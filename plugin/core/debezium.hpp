/*
 * debezium.hpp: the parts of the Debezium JSON encoder (format=json), by concern:
 *
 *   debezium_schema.cpp   the Kafka Connect schemas: fixed ones (source, transaction
 *                         and message events) and each table's key and value schema,
 *                         built once per table version (DebeziumPlan)
 *   debezium_values.cpp   one column value as Debezium writes it (ValueWriter)
 *   debezium_encoder.cpp  the envelopes of row, message and transaction events, keys
 */
#ifndef WALSHIP_DEBEZIUM_HPP
#define WALSHIP_DEBEZIUM_HPP

#include "core_error.hpp"
#include "encoder.hpp"
#include "options.hpp"
#include "pg_values.hpp"
#include "type_map.hpp"

#include <string>
#include <string_view>
#include <vector>

#ifndef WALSHIP_VERSION
#define WALSHIP_VERSION "0.0.0"
#endif

namespace walship
{
namespace debezium
{

/* ------------------------------------------------------------------------- */
/* Fixed schemas, as JsonConverter writes them                                  */

inline constexpr std::string_view kSourceSchemaField =
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
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"xmin\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.Source\",\"version\":1,"
    "\"field\":\"source\"}";

inline constexpr std::string_view kTransactionBlockField =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":false,\"field\":\"id\"},"
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"total_order\"},"
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"data_collection_order\"}"
    "],\"optional\":true,\"name\":\"event.block\",\"version\":1,\"field\":\"transaction\"}";

inline constexpr std::string_view kEnvelopeTrailingFields =
    "{\"type\":\"string\",\"optional\":false,\"field\":\"op\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ms\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_us\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ns\"}";

inline constexpr std::string_view kMessageValueSchemaHead =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":false,\"field\":\"op\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ms\"},";
inline constexpr std::string_view kMessageValueSchemaTail =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":true,\"field\":\"prefix\"},"
    "{\"type\":\"bytes\",\"optional\":true,\"field\":\"content\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.Message\",\"version\":1,"
    "\"field\":\"message\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.MessageValue\","
    "\"version\":1}";

inline constexpr std::string_view kMessageKeySchema =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":true,\"field\":\"prefix\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.MessageKey\","
    "\"version\":1}";

inline constexpr std::string_view kTransactionValueSchema =
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

inline constexpr std::string_view kTransactionKeySchema =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":false,\"field\":\"id\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.common.TransactionMetadataKey\","
    "\"version\":1}";

/* The value schema of logical message events (built once). */
const std::string &message_value_schema(bool commit_lsn);

/*
 * The source field of a value schema: Debezium's, or with source-commit-lsn walship's
 * optional int64 "commit_lsn" after Debezium's fields.
 */
std::string_view source_schema_field(bool commit_lsn);

/* ------------------------------------------------------------------------- */
/* One table version                                                            */

/* The parts of an event's source block that are the same for every event of a table. */
struct SourceParts {
    std::string open;  /* {"version":..,"connector":"postgresql","name":<name>,"ts_ms": */
    std::string db;    /* ,"db":<database>,"sequence":" */
    std::string table; /* ,"schema":<schema>,"table":<table>,"txId": */

    void build(std::string_view logical_name, std::string_view database, std::string_view schema,
               std::string_view table_name);
};

/*
 * What every row event of one table version shares: each column's representation and
 * the complete schemas of key and value, which never change between its rows.
 */
class DebeziumPlan final : public TablePlan
{
  public:
    /* logical_name: the topic prefix, else the database name (Debezium's topic.prefix) */
    DebeziumPlan(const Table &table, const Options &options, std::string_view logical_name,
                 std::string_view database);

    std::vector<ColumnRepr> reprs;     /* per column of the table */
    std::vector<std::string> defaults; /* per column: its default as JSON, empty when none */
    std::string envelope;              /* the value schema of row events */
    std::string key;                   /* the key schema; empty when the table has no key columns */

    /* What every event of the table starts with, ready to copy: */
    std::string
        value_open;       /* {"schema":<envelope>,"payload": (json-schema=true), then {"before": */
    std::string key_open; /* {"schema":<key>,"payload": (json-schema=true); else empty */
    std::vector<std::string> field_keys; /* per column: "name": (escaped) */
    SourceParts source;
};

/* ------------------------------------------------------------------------- */
/* Values                                                                       */

class ValueWriter;

/* A column's DEFAULT as Debezium declares it, as JSON; empty when it declares none. */
std::string column_default_json(const TableColumn &column, const ColumnRepr &repr,
                                ValueWriter &writer);

/* Writes column values; owns the scratch buffers that keep the hot path allocation-free. */
class ValueWriter
{
  public:
    /*
     * One value of a column of representation repr (not_null: declared NOT NULL;
     * default_json: the column's default as JSON, empty when none).
     */
    void write(OutBuf &out, const ColumnRepr &repr, bool not_null, std::string_view default_json,
               const ws_value &value);

    /* A NULL of a column with a default is written as the default (JsonConverter's
     * replace.null.with.default); a NOT NULL column missing from an old row always is. */
    bool replace_null_with_default = true;

  private:
    void write_scalar(OutBuf &out, const ColumnRepr &repr, const ws_value &value);
    void write_as_string(OutBuf &out, const ws_value &value);
    void write_numeric(OutBuf &out, const ColumnRepr &repr, std::string_view text);
    void write_array(OutBuf &out, const ColumnRepr &repr, const ws_value &value);
    void write_array_element(OutBuf &out, const ColumnRepr &repr, std::string_view text);
    void write_bits(OutBuf &out, std::string_view bits);
    bool write_point(OutBuf &out, std::string_view text);

    std::string scratch_;
    std::string bytes_;
    pgval::Decimal decimal_;
    std::vector<pgval::ArrayElement> elements_;
    std::string element_storage_;
};

} // namespace debezium
} // namespace walship

#endif
