/*
 * protobuf_encoder.cpp: ws_change to walship.v1.ChangeEvent (format=protobuf).
 *
 * The mapping is by value kind, which the C shim chose from the column type:
 * every kind has one Value member, and kinds without a native member (time, timetz,
 * interval, every other type) travel as their PostgreSQL output text.
 *
 * The bytes are written by hand rather than through the generated classes. Filling
 * a ChangeEvent and serializing it cost most of the plugin's time per row in the
 * decode benchmark: every event copied each column's name and type name into the
 * message, computed every size, and checked every string (those names included) for
 * UTF-8 on the way out. Here each table's unchanging parts (the Column fields name,
 * type_oid and type_name of every column, and the Source fields database, schema and
 * table) are encoded once and cached by relation OID; an event then costs one size
 * pass and one write pass that copy those cached bytes and append only the values,
 * straight into one reused buffer.
 *
 * The wire format is the contract (plugin/proto/walship/v1/change_event.proto), so
 * the writer follows exactly what the generated code would write, byte for byte:
 * fields in field-number order, minimal varints, proto3 implicit presence (a
 * singular scalar or string that holds its default is left out) except for the
 * members of Value's `kind` oneof, which are written whenever set, zero and empty
 * included, and sub-messages that are set (source, before, after, message, every
 * Value) are written even when empty. The unit tests hold the generated classes
 * against these bytes for every value kind and event shape. The generated classes
 * are still what decode_event parses with; here they only lend their field numbers.
 *
 * Strings are not checked for UTF-8: the generated serializer only logs invalid
 * UTF-8 and writes the bytes anyway, which is what this writer does minus the log.
 */
#include "core_error.hpp"
#include "encoder.hpp"

#include "walship/v1/change_event.pb.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace walship
{

namespace
{

namespace v1 = ::walship::v1;

/* ------------------------------------------------------------------------- */
/* Wire format primitives                                                      */

enum WireType : uint8_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2 };

/*
 * Every field number of walship.v1 is below 16, so every tag is one byte (the
 * writers below rely on it). A larger one fails the build: tags are constants.
 */
constexpr uint8_t tag(int field, WireType type)
{
    return field > 0 && field < 16
               ? static_cast<uint8_t>((field << 3) | type)
               : throw std::logic_error("a field number of two tag bytes: write its varint");
}

namespace event_tag
{
using M = v1::ChangeEvent;
constexpr uint8_t op = tag(M::kOpFieldNumber, kVarint);
constexpr uint8_t source = tag(M::kSourceFieldNumber, kLengthDelimited);
constexpr uint8_t key = tag(M::kKeyFieldNumber, kLengthDelimited);
constexpr uint8_t before = tag(M::kBeforeFieldNumber, kLengthDelimited);
constexpr uint8_t after = tag(M::kAfterFieldNumber, kLengthDelimited);
constexpr uint8_t message = tag(M::kMessageFieldNumber, kLengthDelimited);
constexpr uint8_t event_count = tag(M::kEventCountFieldNumber, kVarint);
} // namespace event_tag

namespace source_tag
{
using M = v1::Source;
constexpr uint8_t database = tag(M::kDatabaseFieldNumber, kLengthDelimited);
constexpr uint8_t schema = tag(M::kSchemaFieldNumber, kLengthDelimited);
constexpr uint8_t table = tag(M::kTableFieldNumber, kLengthDelimited);
constexpr uint8_t xid = tag(M::kXidFieldNumber, kVarint);
constexpr uint8_t commit_lsn = tag(M::kCommitLsnFieldNumber, kVarint);
constexpr uint8_t change_lsn = tag(M::kChangeLsnFieldNumber, kVarint);
constexpr uint8_t commit_time_us = tag(M::kCommitTimeUsFieldNumber, kVarint);
constexpr uint8_t origin = tag(M::kOriginFieldNumber, kLengthDelimited);
constexpr uint8_t truncated_tables = tag(M::kTruncatedTablesFieldNumber, kLengthDelimited);
} // namespace source_tag

namespace value_tag
{
using M = v1::Value;
constexpr uint8_t is_null = tag(M::kIsNullFieldNumber, kVarint);
constexpr uint8_t unchanged_toast = tag(M::kUnchangedToastFieldNumber, kVarint);
constexpr uint8_t int64_value = tag(M::kInt64ValueFieldNumber, kVarint);
constexpr uint8_t double_value = tag(M::kDoubleValueFieldNumber, kFixed64);
constexpr uint8_t bool_value = tag(M::kBoolValueFieldNumber, kVarint);
constexpr uint8_t string_value = tag(M::kStringValueFieldNumber, kLengthDelimited);
constexpr uint8_t bytes_value = tag(M::kBytesValueFieldNumber, kLengthDelimited);
constexpr uint8_t timestamp_us = tag(M::kTimestampUsFieldNumber, kVarint);
constexpr uint8_t date_days = tag(M::kDateDaysFieldNumber, kVarint);
constexpr uint8_t uuid = tag(M::kUuidFieldNumber, kLengthDelimited);
constexpr uint8_t numeric = tag(M::kNumericFieldNumber, kLengthDelimited);
constexpr uint8_t json = tag(M::kJsonFieldNumber, kLengthDelimited);
constexpr uint8_t timestamptz_us = tag(M::kTimestamptzUsFieldNumber, kVarint);
constexpr uint8_t array = tag(M::kArrayFieldNumber, kLengthDelimited);
} // namespace value_tag

namespace array_tag
{
using M = v1::ArrayValue;
constexpr uint8_t elements = tag(M::kElementsFieldNumber, kLengthDelimited);
constexpr uint8_t dims = tag(M::kDimsFieldNumber, kLengthDelimited); /* packed */
constexpr uint8_t lower_bounds = tag(M::kLowerBoundsFieldNumber, kLengthDelimited);
} // namespace array_tag

namespace column_tag
{
using M = v1::Column;
constexpr uint8_t name = tag(M::kNameFieldNumber, kLengthDelimited);
constexpr uint8_t type_oid = tag(M::kTypeOidFieldNumber, kVarint);
constexpr uint8_t type_name = tag(M::kTypeNameFieldNumber, kLengthDelimited);
constexpr uint8_t value = tag(M::kValueFieldNumber, kLengthDelimited);
} // namespace column_tag

constexpr uint8_t kRowColumnsTag = tag(v1::Row::kColumnsFieldNumber, kLengthDelimited);

namespace message_tag
{
using M = v1::Message;
constexpr uint8_t prefix = tag(M::kPrefixFieldNumber, kLengthDelimited);
constexpr uint8_t content = tag(M::kContentFieldNumber, kLengthDelimited);
constexpr uint8_t transactional = tag(M::kTransactionalFieldNumber, kVarint);
} // namespace message_tag

constexpr uint32_t kTextTypeOid = 25;

/* int32 and int64 fields carry negative numbers sign-extended to 64 bits (10 bytes). */
inline uint64_t signed_varint(int64_t v)
{
    return static_cast<uint64_t>(v);
}

inline uint8_t *put_fixed64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        *p++ = static_cast<uint8_t>(v >> (8 * i)); /* little-endian on every host */
    return p;
}

inline uint8_t *put_raw(uint8_t *p, const void *data, size_t len)
{
    if (len > 0)
        std::memcpy(p, data, len);
    return p + len;
}

/* A length-delimited field of len bytes: tag, length, payload. */
inline size_t delimited_size(size_t len)
{
    return 1 + varint_size(len) + len;
}

inline uint8_t *put_delimited(uint8_t *p, uint8_t field_tag, const void *data, size_t len)
{
    *p++ = field_tag;
    p = put_varint(p, len);
    return put_raw(p, data, len);
}

/* A varint field; proto3 leaves it out when it holds 0. */
inline size_t scalar_size(uint64_t v)
{
    return v != 0 ? 1 + varint_size(v) : 0;
}

inline uint8_t *put_scalar(uint8_t *p, uint8_t field_tag, uint64_t v)
{
    if (v == 0)
        return p;
    *p++ = field_tag;
    return put_varint(p, v);
}

/* A string or bytes field; proto3 leaves it out when it is empty. */
inline size_t string_size(size_t len)
{
    return len != 0 ? delimited_size(len) : 0;
}

inline uint8_t *put_string(uint8_t *p, uint8_t field_tag, const char *data, size_t len)
{
    return len != 0 ? put_delimited(p, field_tag, data, len) : p;
}

/* The head of a length-delimited sub-message of `len` bytes (the caller writes the body). */
inline uint8_t *put_sub_head(uint8_t *p, uint8_t field_tag, size_t len)
{
    *p++ = field_tag;
    return put_varint(p, len);
}

inline const char *or_empty(const char *s)
{
    return s != nullptr ? s : "";
}

/*
 * The output buffer, with room for a varint length prefix in front of the body like
 * EventBuffer, but sized up front and never zero-filled: the size pass says how
 * many bytes the write pass fills, every one of them.
 */
class WireBuffer
{
  public:
    static constexpr size_t kPrefixRoom = kVarintPrefixRoom;

    uint8_t *begin(size_t body)
    {
        size_t need = kPrefixRoom + body;
        if (capacity_ > kRetainedBufferLimit) /* let go of a huge event's buffer */
            release();
        if (need > capacity_) {
            /* doubling, so that rows growing a little at a time do not reallocate each time */
            size_t grown =
                std::min(std::max(capacity_ * 2, kInitialCapacity), kRetainedBufferLimit);
            size_t capacity = std::max(need, grown);
            release(); /* never two big buffers at once */
            bytes_.reset(new uint8_t[capacity]);
            capacity_ = capacity;
        }
        body_ = body;
        return bytes_.get() + kPrefixRoom;
    }

    /* The body, with its varint length in front when framed. */
    std::string_view finish(bool framed)
    {
        char *body = reinterpret_cast<char *>(bytes_.get() + kPrefixRoom);
        char *start = framed ? frame_with_varint(body, body_) : body;
        return std::string_view(start, body_ + static_cast<size_t>(body - start));
    }

  private:
    static constexpr size_t kInitialCapacity = 1024;

    void release()
    {
        bytes_.reset();
        capacity_ = 0;
    }

    std::unique_ptr<uint8_t[]> bytes_;
    size_t capacity_ = 0;
    size_t body_ = 0;
};

/* ------------------------------------------------------------------------- */
/* Value: one member of the `kind` oneof, always written (zero and empty too)  */

/* The canonical text of a uuid (8-4-4-4-12 lower-case hex digits), for uuid-as-text. */
constexpr size_t kUuidTextLen = 36;

uint8_t *put_uuid_text(uint8_t *p, const unsigned char (&uuid)[16])
{
    static const char kHex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = static_cast<uint8_t>(kHex[uuid[i] >> 4]);
        *p++ = static_cast<uint8_t>(kHex[uuid[i] & 0xF]);
    }
    return p;
}

/* A packed repeated int32: the varints of its numbers (negative ones sign-extended). */
size_t packed_size(const int32_t *numbers, int n)
{
    size_t size = 0;
    for (int i = 0; i < n; i++)
        size += varint_size(signed_varint(numbers[i]));
    return size;
}

uint8_t *put_packed(uint8_t *p, uint8_t field_tag, const int32_t *numbers, int n, size_t size)
{
    p = put_sub_head(p, field_tag, size);
    for (int i = 0; i < n; i++)
        p = put_varint(p, signed_varint(numbers[i]));
    return p;
}

/* lower_bounds is written only when a dimension does not start at PostgreSQL's default 1. */
bool default_lower_bounds(const ws_array &array)
{
    for (int d = 0; d < array.ndims; d++)
        if (array.lower_bounds[d] != 1)
            return false;
    return true;
}

size_t value_size(const ws_value &value, bool uuid_text);
uint8_t *put_value(uint8_t *p, const ws_value &value, bool uuid_text);

/* The bytes of an ArrayValue: its elements, then dims and lower_bounds (packed). */
size_t array_body_size(const ws_array &array, bool uuid_text)
{
    size_t size = 0;
    for (int e = 0; e < array.nelements; e++) {
        size_t element = value_size(array.elements[e], uuid_text);
        size += 1 + varint_size(element) + element; /* a sub-message, written even if empty */
    }
    if (array.ndims > 0)
        size += delimited_size(packed_size(array.dims, array.ndims));
    if (!default_lower_bounds(array))
        size += delimited_size(packed_size(array.lower_bounds, array.ndims));
    return size;
}

uint8_t *put_array_body(uint8_t *p, const ws_array &array, bool uuid_text)
{
    for (int e = 0; e < array.nelements; e++) {
        const ws_value &element = array.elements[e];
        p = put_sub_head(p, array_tag::elements, value_size(element, uuid_text));
        p = put_value(p, element, uuid_text);
    }
    if (array.ndims > 0)
        p = put_packed(p, array_tag::dims, array.dims, array.ndims,
                       packed_size(array.dims, array.ndims));
    if (!default_lower_bounds(array))
        p = put_packed(p, array_tag::lower_bounds, array.lower_bounds, array.ndims,
                       packed_size(array.lower_bounds, array.ndims));
    return p;
}

size_t value_size(const ws_value &value, bool uuid_text)
{
    switch (value.kind) {
    case WS_VALUE_NULL:
    case WS_VALUE_UNCHANGED_TOAST:
    case WS_VALUE_BOOL:
        return 2;
    case WS_VALUE_INT64:
    case WS_VALUE_TIMESTAMP:
    case WS_VALUE_TIMESTAMPTZ:
        return 1 + varint_size(signed_varint(value.v.i64));
    case WS_VALUE_DATE:
        return 1 + varint_size(signed_varint(value.v.i32));
    case WS_VALUE_DOUBLE:
        return 9;
    case WS_VALUE_UUID:
        return delimited_size(uuid_text ? kUuidTextLen : sizeof(value.v.uuid));
    case WS_VALUE_ARRAY:
        return delimited_size(array_body_size(*value.v.array, uuid_text));
    case WS_VALUE_TEXT:
    case WS_VALUE_BYTES:
    case WS_VALUE_NUMERIC:
    case WS_VALUE_JSON:
    case WS_VALUE_TIME:
    case WS_VALUE_TIMETZ:
    case WS_VALUE_INTERVAL:
    case WS_VALUE_OTHER:
        return delimited_size(value.len);
    }
    throw std::logic_error("walship protobuf encoder: unknown value kind"); /* validated before */
}

uint8_t *put_value(uint8_t *p, const ws_value &value, bool uuid_text)
{
    switch (value.kind) {
    case WS_VALUE_NULL:
        *p++ = value_tag::is_null;
        *p++ = 1;
        return p;
    case WS_VALUE_UNCHANGED_TOAST:
        *p++ = value_tag::unchanged_toast;
        *p++ = 1;
        return p;
    case WS_VALUE_BOOL:
        *p++ = value_tag::bool_value;
        *p++ = value.v.b ? 1 : 0;
        return p;
    case WS_VALUE_INT64:
        *p++ = value_tag::int64_value;
        return put_varint(p, signed_varint(value.v.i64));
    case WS_VALUE_TIMESTAMP:
        *p++ = value_tag::timestamp_us;
        return put_varint(p, signed_varint(value.v.i64));
    case WS_VALUE_TIMESTAMPTZ:
        *p++ = value_tag::timestamptz_us;
        return put_varint(p, signed_varint(value.v.i64));
    case WS_VALUE_DATE:
        *p++ = value_tag::date_days;
        return put_varint(p, signed_varint(value.v.i32));
    case WS_VALUE_DOUBLE: {
        uint64_t bits;
        std::memcpy(&bits, &value.v.f64, sizeof(bits)); /* NaN payloads and -0.0 as they are */
        *p++ = value_tag::double_value;
        return put_fixed64(p, bits);
    }
    case WS_VALUE_UUID:
        if (uuid_text) {
            p = put_sub_head(p, value_tag::string_value, kUuidTextLen);
            return put_uuid_text(p, value.v.uuid);
        }
        return put_delimited(p, value_tag::uuid, value.v.uuid, sizeof(value.v.uuid));
    case WS_VALUE_ARRAY: {
        const ws_array &array = *value.v.array;
        p = put_sub_head(p, value_tag::array, array_body_size(array, uuid_text));
        return put_array_body(p, array, uuid_text);
    }
    case WS_VALUE_BYTES:
        return put_delimited(p, value_tag::bytes_value, value.data, value.len);
    case WS_VALUE_NUMERIC:
        return put_delimited(p, value_tag::numeric, value.data, value.len);
    case WS_VALUE_JSON:
        return put_delimited(p, value_tag::json, value.data, value.len);
    case WS_VALUE_TEXT:
    case WS_VALUE_TIME:
    case WS_VALUE_TIMETZ:
    case WS_VALUE_INTERVAL:
    case WS_VALUE_OTHER:
        return put_delimited(p, value_tag::string_value, value.data, value.len);
    }
    throw std::logic_error("walship protobuf encoder: unknown value kind");
}

/* ------------------------------------------------------------------------- */
/* Per-table parts, encoded once per table version (ProtobufPlan)              */

/*
 * Fields 1-3 of every Column of one row shape (name, type_oid, type_name), encoded once
 * and kept back to back in one buffer, with each column's key flag.
 */
class ColumnHeads
{
  public:
    /* The heads of the table's columns, or of those `subset` lists (indexes into them). */
    void build(const Table &table, const std::vector<int> *subset)
    {
        clear();
        size_t n = subset != nullptr ? subset->size() : table.columns.size();
        for (size_t i = 0; i < n; i++) {
            const TableColumn &c =
                table.columns[subset != nullptr ? static_cast<size_t>((*subset)[i]) : i];
            add(c.name, c.type_oid, c.type_name, c.is_key);
        }
    }

    /* The heads a row's own columns describe (callers without table handles). */
    void build(const ws_row *row)
    {
        clear();
        for (int i = 0; row != nullptr && i < row->ncolumns; i++) {
            const ws_column &c = row->columns[i];
            add(c.name, c.type_oid, or_empty(c.type_name), c.is_key);
        }
    }

    /* Column i's encoded fields 1-3. */
    std::string_view head(int i) const
    {
        const Head &h = heads_[static_cast<size_t>(i)];
        return std::string_view(bytes_.data() + h.offset, h.size);
    }

    bool is_key(int i) const
    {
        return heads_[static_cast<size_t>(i)].is_key;
    }

  private:
    struct Head {
        size_t offset; /* into bytes_ */
        size_t size;
        bool is_key;
    };

    void clear()
    {
        heads_.clear();
        bytes_.clear();
    }

    void add(std::string_view name, uint32_t type_oid, std::string_view type_name, bool is_key)
    {
        Head h;
        h.offset = bytes_.size();
        h.size = string_size(name.size()) + scalar_size(type_oid) + string_size(type_name.size());
        h.is_key = is_key;
        bytes_.resize(h.offset + h.size);
        auto *p = reinterpret_cast<uint8_t *>(&bytes_[h.offset]);
        p = put_string(p, column_tag::name, name.data(), name.size());
        p = put_scalar(p, column_tag::type_oid, type_oid);
        put_string(p, column_tag::type_name, type_name.data(), type_name.size());
        heads_.push_back(h);
    }

    std::string bytes_;
    std::vector<Head> heads_;
};

/* Source fields 1-3 (database, schema, table). */
std::string encode_source_head(std::string_view database, std::string_view schema,
                               std::string_view table)
{
    std::string bytes(string_size(database.size()) + string_size(schema.size()) +
                          string_size(table.size()),
                      '\0');
    auto *p = reinterpret_cast<uint8_t *>(&bytes[0]);
    p = put_string(p, source_tag::database, database.data(), database.size());
    p = put_string(p, source_tag::schema, schema.data(), schema.size());
    put_string(p, source_tag::table, table.data(), table.size());
    return bytes;
}

/* Everything one table version's events share. Partitions published as their root share it. */
class ProtobufPlan final : public TablePlan
{
  public:
    ProtobufPlan(const Table &table, std::string_view database)
        : TablePlan(table), source_head(encode_source_head(database, table.schema, table.table))
    {
        after.build(table, nullptr);
        before.build(table, &table.before); /* the replica identity, or all with FULL */
    }

    /* For a caller without handles: the heads the change's rows describe themselves. */
    ProtobufPlan(const Table &table, const ws_change &change) : TablePlan(table)
    {
        after.build(change.after);
        before.build(change.before);
    }

    std::string source_head;
    ColumnHeads after;
    ColumnHeads before;
};

/*
 * The source head of an event without a table handle (transaction and message events,
 * callers without handles), kept while database, schema and table stay the same.
 */
class SourceHead
{
  public:
    const std::string &for_source(const ws_source &source)
    {
        std::string_view database = or_empty(source.database);
        std::string_view schema = or_empty(source.schema);
        std::string_view table = or_empty(source.table);
        if (!valid_ || database != database_ || schema != schema_ || table != table_) {
            valid_ = false; /* until rebuilt completely: an allocation may fail halfway */
            database_.assign(database);
            schema_.assign(schema);
            table_.assign(table);
            bytes_ = encode_source_head(database_, schema_, table_);
            valid_ = true;
        }
        return bytes_;
    }

  private:
    bool valid_ = false;
    std::string database_;
    std::string schema_;
    std::string table_;
    std::string bytes_;
};

/* ------------------------------------------------------------------------- */
/* Rows                                                                        */

/*
 * One row of an event between the size pass and the write pass: its columns' heads
 * and the sizes of each column's Value and whole Column, computed once in plan()
 * and reused when writing. The same row gives the key (its key columns) and
 * the before or after Row (all of them).
 */
class PlannedRow
{
  public:
    void plan(const ws_row *row, const ColumnHeads *heads, bool uuid_text)
    {
        row_ = row;
        uuid_text_ = uuid_text;
        heads_ = heads;
        all_size_ = 0;
        key_size_ = 0;
        int n = row != nullptr ? row->ncolumns : 0;
        sizes_.resize(static_cast<size_t>(n)); /* keeps its capacity: no allocation per row */
        for (int i = 0; i < n; i++) {
            const ws_column &c = row->columns[i];
            Sizes &s = sizes_[static_cast<size_t>(i)];
            s.value = value_size(c.value, uuid_text);
            s.column = heads->head(i).size() + 1 + varint_size(s.value) + s.value;
            size_t field = 1 + varint_size(s.column) + s.column;
            all_size_ += field;
            if (heads->is_key(i))
                key_size_ += field;
        }
    }

    /* Bytes of the columns as repeated Column fields: all of them or the key columns. */
    size_t size(bool keys_only) const
    {
        return keys_only ? key_size_ : all_size_;
    }

    uint8_t *put(uint8_t *p, uint8_t field_tag, bool keys_only) const
    {
        int n = row_ != nullptr ? row_->ncolumns : 0;
        for (int i = 0; i < n; i++) {
            if (keys_only && !heads_->is_key(i))
                continue;
            const Sizes &s = sizes_[static_cast<size_t>(i)];
            std::string_view head = heads_->head(i);
            p = put_sub_head(p, field_tag, s.column);
            p = put_raw(p, head.data(), head.size());
            p = put_sub_head(p, column_tag::value, s.value);
            p = put_value(p, row_->columns[i].value, uuid_text_);
        }
        return p;
    }

  private:
    struct Sizes {
        size_t value;
        size_t column;
    };

    const ws_row *row_ = nullptr;
    const ColumnHeads *heads_ = nullptr;
    bool uuid_text_ = false;
    std::vector<Sizes> sizes_;
    size_t all_size_ = 0;
    size_t key_size_ = 0;
};

/* A Row with one text column: the keys of events without key columns (see encode_key). */
class TextKey
{
  public:
    explicit TextKey(const char *name)
    {
        Table table;
        table.columns.resize(1);
        table.columns[0].name = name;
        table.columns[0].type_oid = kTextTypeOid;
        table.columns[0].type_name = "text";
        ColumnHeads heads;
        heads.build(table, nullptr);
        head_ = std::string(heads.head(0));
    }

    size_t size(std::string_view text) const
    {
        return delimited_size(column_size(text));
    }

    uint8_t *put(uint8_t *p, std::string_view text) const
    {
        p = put_sub_head(p, kRowColumnsTag, column_size(text));
        p = put_raw(p, head_.data(), head_.size());
        p = put_sub_head(p, column_tag::value, delimited_size(text.size()));
        return put_delimited(p, value_tag::string_value, text.data(), text.size());
    }

  private:
    size_t column_size(std::string_view text) const
    {
        size_t value = delimited_size(text.size()); /* a oneof member: written even if empty */
        return head_.size() + 1 + varint_size(value) + value;
    }

    std::string head_; /* its Column fields 1-3 */
};

/* Protobuf parsers reject messages of 2 GB and more. */
void check_message_size(size_t size)
{
    if (size > static_cast<size_t>(INT_MAX))
        throw LimitError("event too large: " + std::to_string(size) +
                         " bytes exceeds protobuf's 2 GB message limit");
}

/* The write pass must land exactly where the size pass said: anything else is a bug here. */
void check_written(const uint8_t *start, const uint8_t *end, size_t planned)
{
    if (static_cast<size_t>(end - start) != planned)
        throw std::logic_error("walship protobuf encoder wrote " + std::to_string(end - start) +
                               " bytes, planned " + std::to_string(planned));
}

/* ------------------------------------------------------------------------- */
/* The encoder                                                                 */

class ProtobufEncoder final : public Encoder
{
  public:
    ProtobufEncoder(const Options &options, std::string database)
        : include_before_(options.include_before), framed_(options.framing == Framing::Varint),
          uuid_as_text_(options.uuid_as_text), database_(std::move(database)),
          prefix_key_("prefix"), id_key_("id")
    {
    }

    std::unique_ptr<TablePlan> plan_table(const Table &table) const override
    {
        return std::make_unique<ProtobufPlan>(table, database_);
    }

    Encoded encode(const ws_change &change, const TablePlan *table_plan, bool with_key) override
    {
        validate_change(change, table_plan != nullptr ? &table_plan->table() : nullptr);
        const ProtobufPlan *plan = static_cast<const ProtobufPlan *>(table_plan);
        if (plan == nullptr &&
            (change.before != nullptr || change.after != nullptr || change.op == WS_OP_TRUNCATE)) {
            /* a caller without handles: plan the change's own columns, for this event only */
            scratch_plan_ = std::make_unique<ProtobufPlan>(scratch_table_, change);
            plan = scratch_plan_.get();
        }
        Encoded out;
        out.value = encode_event(change, plan);
        if (with_key)
            out.key = encode_key(change);
        return out;
    }

  private:
    std::string_view encode_event(const ws_change &change, const ProtobufPlan *plan)
    {
        const ws_source &in = change.source;

        /* size pass */
        const std::string &source_head =
            change.table != nullptr ? plan->source_head : source_head_.for_source(in);
        const char *origin = or_empty(in.origin);
        size_t origin_len = std::strlen(origin);
        bool truncate = change.op == WS_OP_TRUNCATE;
        size_t source_size = source_head.size() + scalar_size(in.xid) + scalar_size(in.commit_lsn) +
                             scalar_size(in.change_lsn) +
                             scalar_size(signed_varint(in.commit_time_us)) +
                             string_size(origin_len);
        for (int i = 0; truncate && i < change.ntruncated; i++)
            source_size += delimited_size(std::strlen(change.truncated_tables[i]));

        /* the key columns are those of the new row, or of the old one for DELETE */
        const ws_row *key_source = key_row(change);
        bool want_before = include_before_ && change.before != nullptr;
        bool want_after = change.after != nullptr && change.op != WS_OP_DELETE;
        bool plan_before = want_before || (key_source != nullptr && key_source == change.before);
        bool plan_after = want_after || (key_source != nullptr && key_source == change.after);
        before_.plan(plan_before ? change.before : nullptr, plan_before ? &plan->before : nullptr,
                     uuid_as_text_);
        after_.plan(plan_after ? change.after : nullptr, plan_after ? &plan->after : nullptr,
                    uuid_as_text_);
        key_ = key_source == nullptr ? nullptr : key_source == change.after ? &after_ : &before_;
        size_t key_size = key_ != nullptr ? key_->size(true) : 0;

        bool is_message = change.op == WS_OP_MESSAGE;
        const char *prefix = or_empty(change.message_prefix);
        size_t prefix_len = is_message ? std::strlen(prefix) : 0;
        size_t message_size = string_size(prefix_len) +
                              string_size(is_message ? change.message_len : 0) +
                              scalar_size(change.message_transactional ? 1 : 0);
        uint64_t event_count = change.op == WS_OP_COMMIT ? change.event_count : 0;

        size_t total = scalar_size(static_cast<uint64_t>(change.op)) + delimited_size(source_size) +
                       key_size + (want_before ? delimited_size(before_.size(false)) : 0) +
                       (want_after ? delimited_size(after_.size(false)) : 0) +
                       (is_message ? delimited_size(message_size) : 0) + scalar_size(event_count);
        check_message_size(total);

        /* write pass, in field-number order as the generated code writes */
        uint8_t *start = event_buffer_.begin(total);
        uint8_t *p = put_scalar(start, event_tag::op, static_cast<uint64_t>(change.op));

        p = put_sub_head(p, event_tag::source, source_size);
        p = put_raw(p, source_head.data(), source_head.size());
        p = put_scalar(p, source_tag::xid, in.xid);
        p = put_scalar(p, source_tag::commit_lsn, in.commit_lsn);
        p = put_scalar(p, source_tag::change_lsn, in.change_lsn);
        p = put_scalar(p, source_tag::commit_time_us, signed_varint(in.commit_time_us));
        p = put_string(p, source_tag::origin, origin, origin_len);
        for (int i = 0; truncate && i < change.ntruncated; i++) {
            /* repeated strings keep empty elements */
            const char *name = change.truncated_tables[i];
            p = put_delimited(p, source_tag::truncated_tables, name, std::strlen(name));
        }

        if (key_size > 0)
            p = key_->put(p, event_tag::key, true);
        if (want_before) {
            p = put_sub_head(p, event_tag::before, before_.size(false));
            p = before_.put(p, kRowColumnsTag, false);
        }
        if (want_after) {
            p = put_sub_head(p, event_tag::after, after_.size(false));
            p = after_.put(p, kRowColumnsTag, false);
        }
        if (is_message) {
            p = put_sub_head(p, event_tag::message, message_size);
            p = put_string(p, message_tag::prefix, prefix, prefix_len);
            p = put_string(p, message_tag::content, change.message_content, change.message_len);
            p = put_scalar(p, message_tag::transactional, change.message_transactional ? 1 : 0);
        }
        p = put_scalar(p, event_tag::event_count, event_count);
        check_written(start, p, total);
        return event_buffer_.finish(framed_);
    }

    /*
     * The key columns as a walship.v1.Row, from the row planned for the event. Changes
     * without key columns that still have a natural key get the one Debezium uses, so
     * that their Kafka partition is stable: a logical message is keyed by its prefix, a
     * transaction boundary by its "xid:commit_lsn" id. TRUNCATE has no key.
     */
    std::string_view encode_key(const ws_change &change)
    {
        if (change.op == WS_OP_MESSAGE)
            return text_key(prefix_key_, or_empty(change.message_prefix));
        if (change.op == WS_OP_BEGIN || change.op == WS_OP_COMMIT) {
            char id[32]; /* a 10-digit xid, a colon, a 20-digit LSN */
            char *end = std::to_chars(id, id + 10, change.source.xid).ptr;
            *end++ = ':';
            end = std::to_chars(end, id + sizeof(id), change.source.commit_lsn).ptr;
            return text_key(id_key_, std::string_view(id, static_cast<size_t>(end - id)));
        }
        if (key_ == nullptr)
            return std::string_view();
        size_t total = key_->size(true);
        if (total == 0) /* every Column has bytes, so none means no key columns */
            return std::string_view();
        check_message_size(total);
        uint8_t *start = key_buffer_.begin(total);
        check_written(start, key_->put(start, kRowColumnsTag, true), total);
        return key_buffer_.finish(false);
    }

    std::string_view text_key(const TextKey &key, std::string_view text)
    {
        size_t total = key.size(text);
        check_message_size(total);
        uint8_t *start = key_buffer_.begin(total);
        check_written(start, key.put(start, text), total);
        return key_buffer_.finish(false);
    }

    bool include_before_;
    bool framed_;
    bool uuid_as_text_;
    std::string database_;
    SourceHead source_head_;
    Table scratch_table_; /* empty: a scratch plan reads its heads from the rows */
    std::unique_ptr<ProtobufPlan> scratch_plan_;
    PlannedRow before_;
    PlannedRow after_;
    const PlannedRow *key_ = nullptr; /* the row the key columns come from, in this event */
    TextKey prefix_key_;
    TextKey id_key_;
    WireBuffer event_buffer_;
    WireBuffer key_buffer_;
};

} // namespace

std::unique_ptr<Encoder> make_protobuf_encoder(const Options &options, std::string database)
{
    return std::make_unique<ProtobufEncoder>(options, std::move(database));
}

} // namespace walship
