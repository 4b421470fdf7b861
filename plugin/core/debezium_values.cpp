/*
 * debezium_values.cpp: one column value as the Debezium PostgreSQL connector writes it
 * (through Kafka Connect's JsonConverter), for the column's representation, which the
 * table's plan computed once (type_map.cpp).
 */
#include "core_error.hpp"
#include "debezium.hpp"
#include "json_out.hpp"
#include "pg_values.hpp"

#include <charconv>
#include <cstring>
#include <cmath>
#include <string>
#include <string_view>

namespace walship
{
namespace debezium
{

namespace
{

using json::append_int;
using json::append_string;

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
void append_not_null_fallback(OutBuf &out, const ColumnRepr &repr)
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
    case JsonRepr::BitBoolean:
        out += "false";
        break;
    case JsonRepr::NumericString: /* zero at the column's scale */
        out += "\"0";
        if (repr.scale > 0) {
            out += '.';
            out.append(static_cast<size_t>(repr.scale), '0');
        }
        out += '"';
        break;
    case JsonRepr::String:
    case JsonRepr::Enum:
    case JsonRepr::Tsvector:
    case JsonRepr::Bits:
    case JsonRepr::Uuid:
    case JsonRepr::Json:
    case JsonRepr::Xml:
    case JsonRepr::Bytes:
        out += "\"\"";
        break;
    case JsonRepr::Point:
        out += "{\"x\":0.0,\"y\":0.0,\"wkb\":null,\"srid\":null}";
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
void append_unavailable(OutBuf &out, const ColumnRepr &repr)
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

void append_uuid(OutBuf &out, const unsigned char *uuid)
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

} // namespace

void ValueWriter::write(OutBuf &out, const ColumnRepr &repr, bool not_null,
                        std::string_view default_json, const ws_value &value)
{
    if (value.kind == WS_VALUE_NULL) {
        /*
         * In an old row PostgreSQL logs only the replica identity; the other
         * columns arrive as NULL even when declared NOT NULL. JsonConverter
         * rejects null in a required field, so Debezium writes the column's default
         * there, else the type's zero value; so does walship. A NULL in a column with
         * a default becomes the default too (replace.null.with.default).
         */
        if (!default_json.empty() && (not_null || replace_null_with_default))
            out += default_json;
        else if (not_null)
            append_not_null_fallback(out, repr);
        else
            out += "null";
        return;
    }
    if (value.kind == WS_VALUE_UNCHANGED_TOAST) {
        append_unavailable(out, repr);
        return;
    }
    if (value.kind == WS_VALUE_ARRAY) /* the shim sends JSON's arrays as their text */
        throw CoreError(WS_ERR_INTERNAL, "walship JSON encoder: an array came element by element, "
                                         "not as its text form");
    if (repr.is_array)
        write_array(out, repr, value);
    else
        write_scalar(out, repr, value);
}

void ValueWriter::write_scalar(OutBuf &out, const ColumnRepr &repr, const ws_value &value)
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
        if (value.kind == WS_VALUE_TIMESTAMP || value.kind == WS_VALUE_TIMESTAMPTZ) {
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
        if (value.kind == WS_VALUE_TIMESTAMPTZ || value.kind == WS_VALUE_TIMESTAMP) {
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
    case JsonRepr::BitBoolean: /* bit(1): its text is 0 or 1 */
        if (value.data != nullptr && value.len == 1) {
            out += value.data[0] == '1' ? "true" : "false";
            return;
        }
        break;
    case JsonRepr::Bits:
        if (value.data != nullptr)
            return write_bits(out, text_of(value));
        break;
    case JsonRepr::Point:
        if (value.data != nullptr && write_point(out, text_of(value)))
            return;
        break;
    case JsonRepr::String:
    case JsonRepr::Enum:
    case JsonRepr::Tsvector:
    case JsonRepr::Json:
    case JsonRepr::Xml:
        break;
    }
    write_as_string(out, value);
}

/*
 * A point's text "(x,y)" as Debezium's Point: x, y, its well-known binary (little-endian
 * byte order, type 1, x, y) and no SRID. False when the text is not two finite numbers.
 */
bool ValueWriter::write_point(OutBuf &out, std::string_view text)
{
    if (text.size() < 5 || text.front() != '(' || text.back() != ')')
        return false;
    std::string_view inner = text.substr(1, text.size() - 2);
    size_t comma = inner.find(',');
    if (comma == std::string_view::npos)
        return false;
    double xy[2];
    std::string_view parts[2] = {inner.substr(0, comma), inner.substr(comma + 1)};
    for (int i = 0; i < 2; i++)
        if (!pgval::read_number(parts[i], xy[i]))
            return false;
    std::string &wkb = bytes_;
    wkb.assign("\x01\x01\x00\x00\x00", 5);
    for (double d : xy) {
        uint64_t bits;
        std::memcpy(&bits, &d, sizeof(bits));
        for (int b = 0; b < 8; b++)
            wkb += static_cast<char>((bits >> (8 * b)) & 0xFF);
    }
    out += "{\"x\":";
    json::append_double(out, xy[0]);
    out += ",\"y\":";
    json::append_double(out, xy[1]);
    out += ",\"wkb\":";
    json::append_base64(out, wkb.data(), wkb.size());
    out += ",\"srid\":null}";
    return true;
}

/*
 * A bit string as Debezium's Bits: the bits read as one binary number (the last bit is
 * the lowest), its bytes little-endian, as few as hold its highest set bit (no bytes
 * when none is set), base64.
 */
void ValueWriter::write_bits(OutBuf &out, std::string_view bits)
{
    std::string &bytes = bytes_;
    bytes.assign((bits.size() + 7) / 8, '\0');
    size_t used = 0;
    for (size_t i = 0; i < bits.size(); i++) {
        if (bits[bits.size() - 1 - i] != '1')
            continue;
        bytes[i / 8] =
            static_cast<char>(static_cast<unsigned char>(bytes[i / 8]) | (1u << (i % 8)));
        used = i / 8 + 1;
    }
    json::append_base64(out, bytes.data(), used);
}

/*
 * The value as a JSON string: its text when the shim gave one, else its native
 * value in text form. This is the path of every type the map writes as a string
 * and the safety net when a value's kind does not fit its column's type.
 */
void ValueWriter::write_as_string(OutBuf &out, const ws_value &value)
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
    case WS_VALUE_TIMESTAMPTZ:
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

void ValueWriter::write_numeric(OutBuf &out, const ColumnRepr &repr, std::string_view text)
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

void ValueWriter::write_array(OutBuf &out, const ColumnRepr &repr, const ws_value &value)
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

void ValueWriter::write_array_element(OutBuf &out, const ColumnRepr &repr, std::string_view text)
{
    switch (repr.repr) {
    case JsonRepr::Int16:
    case JsonRepr::Int32:
    case JsonRepr::Int64: {
        int64_t v = 0;
        if (pgval::read_number(text, v))
            return append_int(out, v);
        break;
    }
    case JsonRepr::Float32: {
        float v = 0;
        if (pgval::read_number(text, v))
            return json::append_float(out, v);
        break;
    }
    case JsonRepr::Float64: {
        double v = 0;
        if (pgval::read_number(text, v))
            return json::append_double(out, v);
        break;
    }
    case JsonRepr::Date: { /* as a date column's value, infinities as its sentinels */
        int64_t days = 0;
        if (text == "infinity")
            return append_int(out, WS_DATE_POS_INFINITY);
        if (text == "-infinity")
            return append_int(out, WS_DATE_NEG_INFINITY);
        if (pgval::parse_iso_date(text, days))
            return append_int(out, days);
        out += "null"; /* another DateStyle's text: never a string in an int32 array */
        return;
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

} // namespace debezium
} // namespace walship
