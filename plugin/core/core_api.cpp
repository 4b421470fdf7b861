/*
 * core_api.cpp: the extern "C" functions of walship_core.h.
 *
 * The only place where C++ meets the C shim. Every function runs its body inside
 * guarded(), which turns std::bad_alloc into WS_OUT_OF_MEMORY and every other
 * exception into WS_ERROR with its message copied into the caller's buffer, so no
 * exception ever reaches C (and no PostgreSQL ERROR ever unwinds C++ frames: the
 * shim ereports after we return).
 */
#include "core_error.hpp"
#include "encoder.hpp"
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
    std::unique_ptr<walship::Encoder> encoder;
};

namespace
{

/* Copies msg into the caller's WS_ERRMSG_SIZE buffer, never splitting a UTF-8 character. */
void set_error(char *errmsg, const char *msg)
{
    if (errmsg == nullptr)
        return;
    size_t n = std::strlen(msg);
    if (n >= WS_ERRMSG_SIZE) {
        n = WS_ERRMSG_SIZE - 1;
        while (n > 0 && (static_cast<unsigned char>(msg[n]) & 0xC0) == 0x80)
            n--;
    }
    std::memcpy(errmsg, msg, n);
    errmsg[n] = '\0';
}

template <typename Body> ws_status guarded(char *errmsg, Body &&body) noexcept
{
    try {
        body();
        return WS_OK;
    } catch (const std::bad_alloc &) {
        set_error(errmsg, "out of memory");
        return WS_OUT_OF_MEMORY;
    } catch (const std::exception &e) {
        set_error(errmsg, e.what());
        return WS_ERROR;
    } catch (...) {
        set_error(errmsg, "unexpected internal error in the walship core");
        return WS_ERROR;
    }
}

ws_status encode(ws_encoder *enc, const ws_change *change, const uint8_t **out, size_t *outlen,
                 char *errmsg, bool key)
{
    return guarded(errmsg, [&] {
        if (enc == nullptr || change == nullptr || out == nullptr || outlen == nullptr)
            throw walship::InputError("walship encoder called with a null argument");
        *out = nullptr;
        *outlen = 0;
        std::string_view bytes =
            key ? enc->encoder->encode_key(*change) : enc->encoder->encode_event(*change);
        *out = reinterpret_cast<const uint8_t *>(bytes.data());
        *outlen = bytes.size();
    });
}

} // namespace

extern "C" {

ws_options *ws_options_create(char *errmsg)
{
    ws_options *opts = nullptr;
    guarded(errmsg, [&] { opts = new ws_options(); });
    return opts;
}

void ws_options_destroy(ws_options *opts)
{
    delete opts;
}

ws_status ws_options_set(ws_options *opts, const char *name, const char *value, char *errmsg)
{
    return guarded(errmsg, [&] {
        if (opts == nullptr)
            throw walship::InputError("ws_options_set called without options");
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
    out->truncate = o.truncate;
    out->messages = o.messages;
    out->origin = o.origin == walship::OriginFilter::None ? WS_ORIGIN_NONE : WS_ORIGIN_ANY;
    out->partition_root = o.partition_root;
    out->has_table_filter = !o.tables.empty() || !o.exclude_tables.empty();
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

ws_encoder *ws_encoder_create(const ws_options *opts, char *errmsg)
{
    ws_encoder *enc = nullptr;
    ws_status status = guarded(errmsg, [&] {
        walship::Options defaults;
        const walship::Options &o = opts != nullptr ? opts->options : defaults;
        auto holder = std::make_unique<ws_encoder>();
        holder->encoder = o.format == walship::EventFormat::Json
                              ? walship::make_debezium_encoder(o)
                              : walship::make_protobuf_encoder(o);
        enc = holder.release();
    });
    return status == WS_OK ? enc : nullptr;
}

void ws_encoder_destroy(ws_encoder *enc)
{
    delete enc;
}

ws_status ws_encode_event(ws_encoder *enc, const ws_change *change, const uint8_t **out,
                          size_t *outlen, char *errmsg)
{
    return encode(enc, change, out, outlen, errmsg, false);
}

ws_status ws_encode_key(ws_encoder *enc, const ws_change *change, const uint8_t **out,
                        size_t *outlen, char *errmsg)
{
    return encode(enc, change, out, outlen, errmsg, true);
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

ws_status ws_event_to_json(const uint8_t *data, size_t len, char **json, char *errmsg)
{
    silence_protobuf_logging();
    return guarded(errmsg, [&] {
        using walship::InputError;
        if (json == nullptr)
            throw InputError("ws_event_to_json called without an output pointer");
        *json = nullptr;
        if (data == nullptr && len > 0)
            throw InputError("invalid walship event: no data");
        if (len > static_cast<size_t>(INT_MAX))
            throw InputError("invalid walship event: " + std::to_string(len) +
                             " bytes is larger than a protobuf message can be");
        walship::v1::ChangeEvent event;
        if (!event.ParseFromArray(data, static_cast<int>(len)))
            throw InputError("invalid walship event: the bytes are not a protobuf "
                             "walship.v1.ChangeEvent");
        /* arbitrary bytes often parse as unknown fields: a real event always has op */
        if (event.op() == walship::v1::OPERATION_UNSPECIFIED)
            throw InputError("invalid walship event: no operation (op) set; the bytes are not a "
                             "walship.v1.ChangeEvent (a varint-framed stream must be split first)");
        if (!walship::v1::Operation_IsValid(event.op()))
            throw InputError("invalid walship event: unknown operation " +
                             std::to_string(static_cast<int>(event.op())));

        google::protobuf::util::JsonPrintOptions print;
        print.always_print_primitive_fields = false;
        print.preserve_proto_field_names = true;
        std::string text;
        auto status = google::protobuf::util::MessageToJsonString(event, &text, print);
        if (!status.ok())
            throw InputError("invalid walship event: " + status.ToString());
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
