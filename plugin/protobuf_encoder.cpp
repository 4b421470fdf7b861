/*
 * protobuf_encoder.cpp: ws_change to walship.v1.ChangeEvent (format=protobuf).
 *
 * The mapping is by value kind, which the C shim chose from the column type:
 * every kind has one Value member, and kinds without a native member (time, timetz,
 * interval, every other type) travel as their PostgreSQL output text.
 *
 * Why the message is rewritten in place instead of Clear()-ed per event: Clear()
 * deletes singular sub-messages (each Column's Value, before, after) and oneof
 * strings, so a cleared message reallocates all of them on the next row. Keeping the
 * message, overwriting every field, shrinking repeated fields with RemoveLast (which
 * keeps the elements for reuse) and parking before/after/message in spare slots
 * while an event has none, lets a steady stream of rows from the same tables encode
 * without touching the heap. Strings are written through mutable_*()->assign()
 * for the same reason: protobuf 3.21's set_*(const char *, size_t) builds a
 * temporary std::string first.
 */
#include "core_error.hpp"
#include "encoder.hpp"

#include "walship/v1/change_event.pb.h"

#include <climits>

namespace walship
{

namespace
{

namespace v1 = ::walship::v1;
using Columns = ::google::protobuf::RepeatedPtrField<v1::Column>;

const char *or_empty(const char *s)
{
    return s != nullptr ? s : "";
}

const char *data_or_empty(const ws_value &value)
{
    return value.data != nullptr ? value.data : "";
}

void fill_value(v1::Value *out, const ws_value &value)
{
    switch (value.kind) {
    case WS_VALUE_NULL:
        out->set_is_null(true);
        break;
    case WS_VALUE_UNCHANGED_TOAST:
        out->set_unchanged_toast(true);
        break;
    case WS_VALUE_INT64:
        out->set_int64_value(value.v.i64);
        break;
    case WS_VALUE_DOUBLE:
        out->set_double_value(value.v.f64);
        break;
    case WS_VALUE_BOOL:
        out->set_bool_value(value.v.b);
        break;
    case WS_VALUE_BYTES:
        out->mutable_bytes_value()->assign(data_or_empty(value), value.len);
        break;
    case WS_VALUE_TIMESTAMP:
        out->set_timestamp_us(value.v.i64);
        break;
    case WS_VALUE_DATE:
        out->set_date_days(value.v.i32);
        break;
    case WS_VALUE_UUID:
        out->mutable_uuid()->assign(reinterpret_cast<const char *>(value.v.uuid),
                                    sizeof(value.v.uuid));
        break;
    case WS_VALUE_NUMERIC:
        out->mutable_numeric()->assign(data_or_empty(value), value.len);
        break;
    case WS_VALUE_JSON:
        out->mutable_json()->assign(data_or_empty(value), value.len);
        break;
    case WS_VALUE_TEXT:
    case WS_VALUE_TIME:
    case WS_VALUE_TIMETZ:
    case WS_VALUE_INTERVAL:
    case WS_VALUE_OTHER:
        out->mutable_string_value()->assign(data_or_empty(value), value.len);
        break;
    }
}

void fill_column(v1::Column *out, const ws_column &column)
{
    out->mutable_name()->assign(column.name);
    out->set_type_oid(column.type_oid);
    out->mutable_type_name()->assign(or_empty(column.type_name));
    fill_value(out->mutable_value(), column.value);
}

/* Overwrites columns with the row's columns (only is_key ones when keys_only). */
void fill_columns(Columns *columns, const ws_row *row, bool keys_only)
{
    int n = 0;
    if (row != nullptr) {
        for (int i = 0; i < row->ncolumns; i++) {
            const ws_column &column = row->columns[i];
            if (keys_only && !column.is_key)
                continue;
            v1::Column *out = n < columns->size() ? columns->Mutable(n) : columns->Add();
            fill_column(out, column);
            n++;
        }
    }
    while (columns->size() > n)
        columns->RemoveLast();
}

/* The one-column keys of events without key columns (see encode_key). */
void fill_text_key(Columns *columns, const char *name, std::string_view text)
{
    v1::Column *out = columns->empty() ? columns->Add() : columns->Mutable(0);
    while (columns->size() > 1)
        columns->RemoveLast();
    out->mutable_name()->assign(name);
    out->set_type_oid(25); /* text */
    out->mutable_type_name()->assign("text");
    out->mutable_value()->mutable_string_value()->assign(text.data(), text.size());
}

/* Serializes into buf (after its prefix room); protobuf cannot exceed 2 GB. */
std::string_view serialize(const google::protobuf::MessageLite &message, EventBuffer &buf,
                           bool framed)
{
    size_t size = message.ByteSizeLong();
    if (size > static_cast<size_t>(INT_MAX))
        throw InputError("event too large: " + std::to_string(size) +
                         " bytes exceeds protobuf's 2 GB message limit");
    std::string &bytes = buf.begin();
    bytes.resize(EventBuffer::kPrefixRoom + size);
    message.SerializeWithCachedSizesToArray(
        reinterpret_cast<uint8_t *>(&bytes[EventBuffer::kPrefixRoom]));
    return buf.finish(framed);
}

class ProtobufEncoder final : public Encoder
{
  public:
    explicit ProtobufEncoder(const Options &options)
        : include_before_(options.include_before), framed_(options.framing == Framing::Varint)
    {
    }

    std::string_view encode_event(const ws_change &change) override
    {
        validate_change(change);
        event_.set_op(static_cast<v1::Operation>(change.op));
        fill_source(change);
        fill_columns(event_.mutable_key(), key_row(change), true);

        bool want_before = include_before_ && change.before != nullptr;
        if (v1::Row *before =
                attach(want_before, &v1::ChangeEvent::has_before, &v1::ChangeEvent::release_before,
                       &v1::ChangeEvent::set_allocated_before, &v1::ChangeEvent::mutable_before,
                       spare_before_))
            fill_columns(before->mutable_columns(), change.before, false);

        bool want_after = change.after != nullptr && change.op != WS_OP_DELETE;
        if (v1::Row *after =
                attach(want_after, &v1::ChangeEvent::has_after, &v1::ChangeEvent::release_after,
                       &v1::ChangeEvent::set_allocated_after, &v1::ChangeEvent::mutable_after,
                       spare_after_))
            fill_columns(after->mutable_columns(), change.after, false);

        if (v1::Message *message =
                attach(change.op == WS_OP_MESSAGE, &v1::ChangeEvent::has_message,
                       &v1::ChangeEvent::release_message, &v1::ChangeEvent::set_allocated_message,
                       &v1::ChangeEvent::mutable_message, spare_message_)) {
            message->mutable_prefix()->assign(or_empty(change.message_prefix));
            message->mutable_content()->assign(
                change.message_content != nullptr ? change.message_content : "",
                change.message_len);
            message->set_transactional(change.message_transactional);
        }

        event_.set_event_count(change.op == WS_OP_COMMIT ? change.event_count : 0);
        std::string_view bytes = serialize(event_, event_buffer_, framed_);
        if (bytes.size() > kRetainedBufferLimit) {
            /* the bytes are in event_buffer_: drop the copies of a huge row's values */
            event_.Clear();
            spare_before_.reset();
            spare_after_.reset();
            spare_message_.reset();
        }
        return bytes;
    }

    /*
     * The key columns as a walship.v1.Row. Changes without key columns that still
     * have a natural key get the one Debezium uses, so that their Kafka partition is
     * stable: a logical message is keyed by its prefix, a transaction boundary by
     * its "xid:commit_lsn" id. TRUNCATE has no key.
     */
    std::string_view encode_key(const ws_change &change) override
    {
        validate_change(change);
        Columns *columns = key_.mutable_columns();
        if (change.op == WS_OP_MESSAGE) {
            fill_text_key(columns, "prefix", or_empty(change.message_prefix));
        } else if (change.op == WS_OP_BEGIN || change.op == WS_OP_COMMIT) {
            transaction_id_ = std::to_string(change.source.xid);
            transaction_id_ += ':';
            transaction_id_ += std::to_string(change.source.commit_lsn);
            fill_text_key(columns, "id", transaction_id_);
        } else {
            fill_columns(columns, key_row(change), true);
        }
        if (columns->empty())
            return std::string_view();
        return serialize(key_, key_buffer_, false);
    }

  private:
    void fill_source(const ws_change &change)
    {
        const ws_source &in = change.source;
        v1::Source *source = event_.mutable_source();
        source->mutable_database()->assign(or_empty(in.database));
        source->mutable_schema()->assign(or_empty(in.schema));
        source->mutable_table()->assign(or_empty(in.table));
        source->set_xid(in.xid);
        source->set_commit_lsn(in.commit_lsn);
        source->set_change_lsn(in.change_lsn);
        source->set_commit_time_us(in.commit_time_us);
        source->mutable_origin()->assign(or_empty(in.origin));
        auto *tables = source->mutable_truncated_tables();
        tables->Clear(); /* keeps the strings for reuse */
        if (change.op == WS_OP_TRUNCATE)
            for (int i = 0; i < change.ntruncated; i++)
                tables->Add()->assign(change.truncated_tables[i]);
    }

    /*
     * Makes an optional sub-message present (reusing the parked one) or absent
     * (parking it); returns it when present.
     */
    template <typename Sub>
    Sub *attach(bool want, bool (v1::ChangeEvent::*has)() const, Sub *(v1::ChangeEvent::*release)(),
                void (v1::ChangeEvent::*set_allocated)(Sub *),
                Sub *(v1::ChangeEvent::*mutable_sub)(), std::unique_ptr<Sub> &spare)
    {
        if (!want) {
            if ((event_.*has)())
                spare.reset((event_.*release)());
            return nullptr;
        }
        if (!(event_.*has)() && spare)
            (event_.*set_allocated)(spare.release());
        return (event_.*mutable_sub)();
    }

    bool include_before_;
    bool framed_;
    v1::ChangeEvent event_;
    std::unique_ptr<v1::Row> spare_before_;
    std::unique_ptr<v1::Row> spare_after_;
    std::unique_ptr<v1::Message> spare_message_;
    v1::Row key_;
    std::string transaction_id_;
    EventBuffer event_buffer_;
    EventBuffer key_buffer_;
};

} // namespace

std::unique_ptr<Encoder> make_protobuf_encoder(const Options &options)
{
    return std::make_unique<ProtobufEncoder>(options);
}

} // namespace walship
