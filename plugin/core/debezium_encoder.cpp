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
 * The schema part of a row event is the same for every row of a table version: the
 * table's plan (debezium_schema.cpp) holds it, with each column's representation, from
 * the moment the shim creates the table's handle until it destroys it.
 */
#include "core_error.hpp"
#include "debezium.hpp"
#include "json_out.hpp"
#include "pg_values.hpp"

#include <charconv>
#include <cstdint>
#include <chrono>
#include <memory>
#include <utility>

namespace walship
{
namespace debezium
{

namespace
{

using json::append_int;
using json::append_raw;
using json::append_string;
using json::append_uint;

const char *or_empty(const char *s)
{
    return s != nullptr ? s : "";
}

int64_t now_nanos()
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/*
 * A number's decimal digits, converted once and written where an event repeats it (an
 * LSN three times, a time as millis, micros and nanos).
 */
struct Digits {
    char text[24];
    size_t len = 0;

    explicit Digits(uint64_t v)
    {
        len = static_cast<size_t>(std::to_chars(text, text + sizeof(text), v).ptr - text);
    }
    explicit Digits(int64_t v)
    {
        len = static_cast<size_t>(std::to_chars(text, text + sizeof(text), v).ptr - text);
    }
    std::string_view view() const
    {
        return std::string_view(text, len);
    }
    /* v / 10^n rounded down, for the positive v of at least n + 1 digits the clocks give */
    bool has_prefix(size_t n) const
    {
        return text[0] != '-' && len > n;
    }
    std::string_view drop(size_t n) const
    {
        return std::string_view(text, len - n);
    }
};

/* ,"ts_ms":..,"ts_us":..,"ts_ns":.. of a time in nanoseconds */
void append_timestamps(OutBuf &out, int64_t nanos)
{
    Digits ns(nanos);
    out += "\"ts_ms\":";
    if (ns.has_prefix(6))
        out += ns.drop(6);
    else
        append_int(out, pgval::floor_div(nanos, 1000000));
    out += ",\"ts_us\":";
    if (ns.has_prefix(3))
        out += ns.drop(3);
    else
        append_int(out, pgval::floor_div(nanos, 1000));
    out += ",\"ts_ns\":";
    out += ns.view();
}

/*
 * Debezium's transaction id, "<xid>:<LSN>", with the LSN of the record it is written in:
 * each row event's own, BEGIN's (its first event's), and for END the commit's end.
 */
void append_transaction_id(OutBuf &out, uint32_t xid, std::string_view lsn)
{
    out += '"';
    append_uint(out, xid);
    out += ':';
    out += lsn;
    out += '"';
}

void append_transaction_id(OutBuf &out, const ws_change &change)
{
    const ws_source &source = change.source;
    Digits lsn(change.op == WS_OP_COMMIT ? source.commit_lsn : source.change_lsn);
    append_transaction_id(out, source.xid, lsn.view());
}

class DebeziumEncoder final : public Encoder
{
  public:
    DebeziumEncoder(const Options &options, std::string database)
        : options_(options), framed_(options.framing == Framing::Varint),
          database_(std::move(database))
    {
        values_.replace_null_with_default = options.replace_null_with_default;
    }

    std::unique_ptr<TablePlan> plan_table(const Table &table) const override
    {
        return std::make_unique<DebeziumPlan>(table, options_, logical_name(database_), database_);
    }

    Encoded encode(const ws_change &change, const TablePlan *table_plan, bool with_key) override
    {
        validate_change(change, table_plan != nullptr ? &table_plan->table() : nullptr);
        const DebeziumPlan *plan = static_cast<const DebeziumPlan *>(table_plan);
        bool row_event =
            change.op != WS_OP_BEGIN && change.op != WS_OP_COMMIT && change.op != WS_OP_MESSAGE;
        if (plan == nullptr && row_event) {
            /* a caller without handles: plan the change's own columns, for this event only */
            scratch_table_ = describe_change_table(change);
            scratch_plan_ = std::make_unique<DebeziumPlan>(
                scratch_table_, options_, logical_name(or_empty(change.source.database)),
                or_empty(change.source.database));
            plan = scratch_plan_.get();
        }

        Encoded out;
        OutBuf &value = event_buffer_.begin();
        switch (change.op) {
        case WS_OP_BEGIN:
        case WS_OP_COMMIT:
            write_transaction_event(value, change);
            break;
        case WS_OP_MESSAGE:
            write_message_event(value, change);
            break;
        default:
            write_row_event(value, change, *plan);
            break;
        }
        out.value = event_buffer_.finish(framed_);
        if (with_key)
            out.key = encode_key(change, plan);
        return out;
    }

    /*
     * Connect's SimpleHeaderConverter writes a struct as {"field":value,...}: the key's
     * payload, without its schema.
     */
    std::string_view key_as_header(std::string_view key, const TablePlan *table_plan) const override
    {
        const DebeziumPlan *plan = static_cast<const DebeziumPlan *>(table_plan);
        if (plan == nullptr)
            plan = scratch_plan_.get();
        if (plan == nullptr || plan->key_open.empty() || key.size() <= plan->key_open.size())
            return key;
        return key.substr(plan->key_open.size(), key.size() - plan->key_open.size() - 1);
    }

  private:
    std::string_view encode_key(const ws_change &change, const DebeziumPlan *plan)
    {
        OutBuf &out = key_buffer_.begin();
        switch (change.op) {
        case WS_OP_BEGIN:
        case WS_OP_COMMIT:
            open_with_schema(out, kTransactionKeySchema);
            out += "{\"id\":";
            append_transaction_id(out, change);
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
            if (row == nullptr || plan->key.empty())
                return std::string_view();
            const std::vector<int> *columns =
                row == change.before ? &plan->table().before : nullptr;
            append_raw(out, plan->key_open);
            write_row(out, row, columns, *plan, true);
        }
        }
        close_with_schema(out);
        return key_buffer_.finish(false);
    }

    /* {"schema":<schema>,"payload": when schemas are on; nothing otherwise */
    void open_with_schema(OutBuf &out, std::string_view schema) const
    {
        if (!options_.json_schema)
            return;
        out += "{\"schema\":";
        append_raw(out, schema);
        out += ",\"payload\":";
    }

    void close_with_schema(OutBuf &out) const
    {
        if (options_.json_schema)
            out += '}';
    }

    /* Debezium's logical server name: the topic prefix, else the database name. */
    std::string_view logical_name(std::string_view database) const
    {
        return !options_.topic_prefix.empty() ? std::string_view(options_.topic_prefix) : database;
    }

    std::string_view logical_name(const ws_change &change) const
    {
        return logical_name(or_empty(change.source.database));
    }

    void write_row_event(OutBuf &out, const ws_change &change, const DebeziumPlan &plan)
    {
        append_raw(out, plan.value_open);

        bool with_before = options_.include_before && change.before != nullptr &&
                           (change.op == WS_OP_UPDATE || change.op == WS_OP_DELETE);
        bool with_after =
            change.after != nullptr && change.op != WS_OP_DELETE && change.op != WS_OP_TRUNCATE;
        if (with_before)
            write_old_row(out, change.before, plan);
        else
            out += "null";
        out += ",\"after\":";
        if (with_after)
            write_row(out, change.after, nullptr, plan, false);
        else
            out += "null";
        Digits lsn(change.source.change_lsn);
        out += ",\"source\":";
        write_source(out, change, change.source.commit_time_us, plan.source, lsn);
        out += ",\"transaction\":";
        write_transaction_block(out, change, lsn);
        out += ",\"op\":\"";
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

    /* include-transaction: the event's place in its transaction; else null */
    /* lsn: the event's own, which is the transaction id's LSN of a row or message event */
    void write_transaction_block(OutBuf &out, const ws_change &change, const Digits &lsn) const
    {
        if (change.total_order == 0) {
            out += "null";
            return;
        }
        out += "{\"id\":";
        append_transaction_id(out, change.source.xid, lsn.view());
        out += ",\"total_order\":";
        append_uint(out, change.total_order);
        out += ",\"data_collection_order\":";
        append_uint(out, change.collection_order);
        out += '}';
    }

    void write_message_event(OutBuf &out, const ws_change &change)
    {
        open_with_schema(out, message_value_schema(options_.source_commit_lsn));
        int64_t now = now_nanos();
        out += "{\"op\":\"m\",\"ts_ms\":";
        append_int(out, pgval::floor_div(now, 1000000));
        out += ",\"source\":";
        /* a non-transactional message has no commit: the shim gives the last commit's time
         * (as Debezium); before any commit, Debezium's clock */
        int64_t time_us = change.source.commit_time_us != 0 ? change.source.commit_time_us
                          : change.source.prev_commit_time_us != 0
                              ? change.source.prev_commit_time_us
                              : pgval::floor_div(now, 1000);
        SourceParts &parts = message_source_;
        parts.build(logical_name(change), or_empty(change.source.database),
                    or_empty(change.source.schema), or_empty(change.source.table));
        Digits lsn(change.source.change_lsn);
        write_source(out, change, time_us, parts, lsn);
        out += ",\"transaction\":";
        write_transaction_block(out, change, lsn);
        out += ",\"message\":{\"prefix\":";
        append_string(out, or_empty(change.message_prefix));
        out += ",\"content\":";
        json::append_base64(out, change.message_content, change.message_len);
        out += "}}";
        close_with_schema(out);
    }

    void write_transaction_event(OutBuf &out, const ws_change &change)
    {
        open_with_schema(out, kTransactionValueSchema);
        out += "{\"status\":";
        out += change.op == WS_OP_BEGIN ? "\"BEGIN\"" : "\"END\"";
        out += ",\"id\":";
        append_transaction_id(out, change);
        out += ",\"event_count\":";
        if (change.op == WS_OP_COMMIT)
            append_uint(out, change.event_count);
        else
            out += "null";
        out += ",\"data_collections\":";
        if (change.op == WS_OP_COMMIT) {
            out += '[';
            for (int i = 0; i < change.ncollections; i++) {
                if (i > 0)
                    out += ',';
                out += "{\"data_collection\":";
                append_string(out, or_empty(change.collections[i].name));
                out += ",\"event_count\":";
                append_uint(out, change.collections[i].count);
                out += '}';
            }
            out += ']';
        } else {
            out += "null";
        }
        out += ",\"ts_ms\":";
        append_int(out, pgval::floor_div(change.source.commit_time_us, 1000));
        out += '}';
        close_with_schema(out);
    }

    /* lsn: the digits of source.change_lsn */
    void write_source(OutBuf &out, const ws_change &change, int64_t time_us,
                      const SourceParts &parts, const Digits &lsn) const
    {
        const ws_source &source = change.source;
        Digits us(time_us);
        append_raw(out, parts.open);
        if (us.has_prefix(3))
            out += us.drop(3);
        else
            append_int(out, pgval::floor_div(time_us, 1000));
        /* walship's snapshots are Debezium's incremental ones: chunks between watermarks */
        out +=
            change.op == WS_OP_READ ? ",\"snapshot\":\"incremental\"" : ",\"snapshot\":\"false\"";
        append_raw(out, parts.db);
        /* Debezium's sequence: [the previous transaction's commit LSN, this LSN], as text */
        if (source.prev_commit_lsn != 0) {
            out += "[\\\"";
            append_uint(out, source.prev_commit_lsn);
            out += "\\\",\\\"";
        } else {
            out += "[null,\\\"";
        }
        out += lsn.view();
        out += "\\\"]\",\"ts_us\":";
        out += us.view();
        out += ",\"ts_ns\":";
        if (time_us == 0) {
            out += '0';
        } else if (time_us > INT64_MAX / 1000 || time_us < INT64_MIN / 1000) {
            /* past the year 2262 nanoseconds overflow a long, and wrap as in Debezium's Java */
            append_int(out, static_cast<int64_t>(static_cast<uint64_t>(time_us) * 1000u));
        } else {
            out += us.view();
            out += "000";
        }
        append_raw(out, parts.table);
        if (source.xid != 0)
            append_uint(out, source.xid);
        else
            out += "null";
        out += ",\"lsn\":";
        out += lsn.view();
        out += ",\"xmin\":null";
        if (options_.source_commit_lsn) {
            /* walship's own: the commit record's end, as protobuf's source.commit_lsn (a
             * non-transactional message: its own record's end; null only when unknown) */
            out += ",\"commit_lsn\":";
            if (source.commit_lsn != 0)
                append_uint(out, source.commit_lsn);
            else
                out += "null";
        }
        out += '}';
    }

    /*
     * An old row written with every field of the table's schema. PostgreSQL logs
     * only the replica identity columns of an old row (unless REPLICA IDENTITY
     * FULL); the others are written as NULL, which the value writer turns into
     * Debezium's zero value where the column is NOT NULL.
     */
    void write_old_row(OutBuf &out, const ws_row *row, const DebeziumPlan &plan)
    {
        const Table &table = plan.table();
        static const ws_value kAbsent{}; /* WS_VALUE_NULL */
        out += '{';
        for (size_t k = 0; k < table.columns.size(); k++) {
            const TableColumn &column = table.columns[k];
            if (k > 0)
                out += ',';
            append_raw(out, plan.field_keys[k]);
            int b = column.before_index;
            const ws_value &value = b >= 0 && b < row->ncolumns ? row->columns[b].value : kAbsent;
            values_.write(out, plan.reprs[k], column.not_null, plan.defaults[k], value);
        }
        out += '}';
    }

    /*
     * A row: every column of the table (columns NULL), or the old tuple's, whose
     * column i is the table's (*columns)[i]; keys_only writes the key columns alone.
     */
    void write_row(OutBuf &out, const ws_row *row, const std::vector<int> *columns,
                   const DebeziumPlan &plan, bool keys_only)
    {
        const Table &table = plan.table();
        out += '{';
        bool first = true;
        for (int i = 0; i < row->ncolumns; i++) {
            size_t k = columns != nullptr ? static_cast<size_t>((*columns)[static_cast<size_t>(i)])
                                          : static_cast<size_t>(i);
            const TableColumn &column = table.columns[k];
            if (keys_only && !column.is_key)
                continue;
            if (!first)
                out += ',';
            first = false;
            append_raw(out, plan.field_keys[k]);
            values_.write(out, plan.reprs[k], column.not_null, plan.defaults[k],
                          row->columns[i].value);
        }
        out += '}';
    }

    Options options_;
    bool framed_;
    std::string database_;
    Table scratch_table_;
    std::unique_ptr<DebeziumPlan> scratch_plan_;
    ValueWriter values_;
    SourceParts message_source_; /* of the event of no table being written */
    EventBuffer event_buffer_;
    EventBuffer key_buffer_;
};

} // namespace

} // namespace debezium

std::unique_ptr<Encoder> make_debezium_encoder(const Options &options, std::string database)
{
    return std::make_unique<debezium::DebeziumEncoder>(options, std::move(database));
}

} // namespace walship
