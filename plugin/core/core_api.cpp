/*
 * core_api.cpp: the extern "C" functions of walship_core.h.
 *
 * The only place where the plugin's C++ meets the C shim. Every function runs its body
 * inside the one guard (boundary.hpp), which fills the caller's ws_error, so no
 * exception ever reaches C (and no PostgreSQL ERROR ever unwinds C++ frames: the
 * shim ereports after we return).
 */
#include "boundary.hpp"
#include "core_error.hpp"
#include "encoder.hpp"
#include "records.hpp"
#include "type_map.hpp"
#include "options.hpp"
#include "walship_core.h"

#include "walship/v1/change_event.pb.h"

#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/json_util.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <new>

struct ws_options {
    walship::Options options;
};

struct ws_encoder {
    std::unique_ptr<walship::RecordMaker> records;
};

using walship::guarded;

namespace
{

[[noreturn]] void null_argument(const char *function)
{
    throw walship::CoreError(WS_ERR_INTERNAL,
                             std::string(function) + " called with a null argument");
}

} // namespace

extern "C" {

ws_options *ws_options_create(ws_error *err)
{
    ws_options *opts = nullptr;
    guarded(err, [&] { opts = new ws_options(); });
    return opts;
}

void ws_options_destroy(ws_options *opts)
{
    delete opts;
}

ws_status ws_options_set(ws_options *opts, const char *name, const char *value, ws_error *err)
{
    return guarded(err, [&] {
        if (opts == nullptr)
            null_argument("ws_options_set");
        opts->options.set(name, value);
    });
}

void ws_options_settings(const ws_options *opts, ws_plugin_settings *out)
{
    if (out == nullptr)
        return;
    walship::Options defaults;
    const walship::Options &o = opts != nullptr ? opts->options : defaults;
    out->format = o.format == walship::EventFormat::Json ? WS_FORMAT_JSON : WS_FORMAT_PROTOBUF;
    out->include_transaction = o.include_transaction;
    out->include_before = o.include_before;
    out->truncate = o.truncate_events();
    out->messages = o.messages;
    out->origin = o.origin == walship::OriginFilter::None ? WS_ORIGIN_NONE : WS_ORIGIN_ANY;
    out->partition_root = o.partition_root;
    out->array_elements = o.format == walship::EventFormat::Protobuf;
}

bool ws_options_table_included(const ws_options *opts, const char *schema, const char *table)
{
    if (opts == nullptr)
        return true;
    return opts->options.table_included(schema != nullptr ? schema : "",
                                        table != nullptr ? table : "");
}

bool ws_options_table_excluded(const ws_options *opts, const char *schema, const char *table)
{
    if (opts == nullptr)
        return false;
    return opts->options.table_excluded(schema != nullptr ? schema : "",
                                        table != nullptr ? table : "");
}

bool ws_options_message_included(const ws_options *opts, const char *prefix)
{
    if (opts == nullptr)
        return false;
    return opts->options.message_included(prefix != nullptr ? prefix : "");
}

ws_encoder *ws_encoder_create(const ws_options *opts, const char *database, ws_error *err)
{
    ws_encoder *enc = nullptr;
    guarded(err, [&] {
        walship::Options defaults;
        const walship::Options &o = opts != nullptr ? opts->options : defaults;
        std::string db = database != nullptr ? database : "";
        auto holder = std::make_unique<ws_encoder>();
        holder->records = std::make_unique<walship::RecordMaker>(
            o, o.format == walship::EventFormat::Json
                   ? walship::make_debezium_encoder(o, std::move(db))
                   : walship::make_protobuf_encoder(o, std::move(db)));
        enc = holder.release();
    });
    return enc;
}

void ws_encoder_destroy(ws_encoder *enc)
{
    delete enc;
}

ws_table *ws_table_create(const ws_encoder *enc, const ws_table_desc *desc, ws_error *err)
{
    ws_table *table = nullptr;
    guarded(err, [&] {
        if (enc == nullptr || desc == nullptr)
            null_argument("ws_table_create");
        auto holder = std::make_unique<ws_table>();
        holder->table = walship::describe_table(*desc);
        holder->plan = enc->records->encoder().plan_table(holder->table);
        table = holder.release();
    });
    return table;
}

void ws_table_destroy(ws_table *table)
{
    delete table;
}

ws_status ws_encode(ws_encoder *enc, const ws_change *change, bool with_key, ws_encoded *out,
                    ws_error *err)
{
    return guarded(err, [&] {
        if (enc == nullptr || change == nullptr || out == nullptr)
            null_argument("ws_encode");
        enc->records->encode(*change,
                             change->table != nullptr ? change->table->plan.get() : nullptr,
                             with_key, *out);
    });
}

ws_value_kind ws_type_value_kind(uint32_t type_oid)
{
    return walship::value_kind_for_type(type_oid);
}

/*
 * libprotobuf reports a bad message (e.g. a string that is not UTF-8) on stderr, which is
 * the server log: one line per call of decode_event with bad input. The caller gets an
 * error of its own instead; silence libprotobuf's logging once.
 */
static void silence_protobuf_logging()
{
    static const bool silenced = [] {
        google::protobuf::SetLogHandler(nullptr);
        return true;
    }();
    (void)silenced;
}

ws_status ws_event_to_json(const uint8_t *data, size_t len, char **json, ws_error *err)
{
    silence_protobuf_logging();
    return guarded(err, [&] {
        if (json == nullptr)
            null_argument("ws_event_to_json");
        /* every refusal says what decode_event takes */
        auto invalid = [](const std::string &message) {
            return walship::InputError(
                message, {},
                "walship.decode_event() takes one walship.v1.ChangeEvent as the walship output "
                "plugin writes it with format=protobuf.");
        };
        *json = nullptr;
        if (data == nullptr && len > 0)
            throw invalid("invalid walship event: no data");
        if (len > static_cast<size_t>(INT_MAX))
            throw walship::LimitError("invalid walship event: " + std::to_string(len) +
                                      " bytes is larger than a protobuf message can be");
        walship::v1::ChangeEvent event;
        if (!event.ParseFromArray(data, static_cast<int>(len)))
            throw invalid("invalid walship event: the bytes are not a protobuf "
                          "walship.v1.ChangeEvent");
        /* arbitrary bytes often parse as unknown fields: a real event always has op */
        if (event.op() == walship::v1::OPERATION_UNSPECIFIED)
            throw invalid("invalid walship event: no operation (op) set; the bytes are not a "
                          "walship.v1.ChangeEvent (a varint-framed stream must be split first)");
        if (!walship::v1::Operation_IsValid(event.op()))
            throw invalid("invalid walship event: unknown operation " +
                          std::to_string(static_cast<int>(event.op())));

        google::protobuf::util::JsonPrintOptions print;
        print.always_print_primitive_fields = false;
        print.preserve_proto_field_names = true;
        std::string text;
        auto status = google::protobuf::util::MessageToJsonString(event, &text, print);
        if (!status.ok())
            throw invalid("invalid walship event: " + status.ToString());
        char *copy = static_cast<char *>(std::malloc(text.size() + 1));
        if (copy == nullptr)
            throw std::bad_alloc();
        std::memcpy(copy, text.data(), text.size() + 1);
        *json = copy;
    });
}

void ws_free(void *p)
{
    std::free(p);
}

} /* extern "C" */
